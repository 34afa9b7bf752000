package main

import (
	"context"
	"errors"

	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/jobtype"
)

// NodePoolsCmd renders the Karpenter NodePools and node classes of the
// registry's pools.
type NodePoolsCmd struct {
	Registry string `name:"registry" env:"JOBFLEET_REGISTRY" required:"" type:"existingfile" placeholder:"FILE" help:"Job types and pools (YAML), the file the dispatcher reads."`
	Cluster  string `name:"cluster" env:"JOBFLEET_CLUSTER" placeholder:"NAME" help:"EKS cluster name: the EC2NodeClasses find subnets and security groups tagged karpenter.sh/discovery=NAME."`
	NodeRole string `name:"node-role" env:"JOBFLEET_NODE_ROLE" placeholder:"ROLE" help:"IAM role (name) of the nodes Karpenter launches."`
	KWOK     bool   `name:"kwok" env:"JOBFLEET_KWOK" help:"Render KWOKNodeClasses, for Karpenter's KWOK provider (simulated nodes), instead of EC2NodeClasses."`
}

// Help is shown under the flags.
func (c *NodePoolsCmd) Help() string {
	return `Writes a YAML stream to standard output, for kubectl apply -f - or the Helm chart's
karpenter.manifests value: an EC2NodeClass and one NodePool per pool, two for a pool
with spotPercent (NAME-spot and NAME-on-demand). The dispatcher's pod templates ask
for exactly what these provide; render them again whenever the pools change.`
}

// Validate checks the flags before anything is read.
func (c *NodePoolsCmd) Validate() error {
	if c.KWOK {
		return nil
	}
	var errs []error
	if c.Cluster == "" {
		errs = append(errs, errors.New("--cluster: required (or --kwok): the EC2NodeClasses find subnets and security groups by the cluster's karpenter.sh/discovery tag"))
	}
	if c.NodeRole == "" {
		errs = append(errs, errors.New("--node-role: required (or --kwok): the IAM role Karpenter's nodes run as"))
	}
	return errors.Join(errs...)
}

// Run renders the NodePools.
func (c *NodePoolsCmd) Run(_ context.Context, g *Globals) error {
	reg, err := jobtype.Load(c.Registry)
	if err != nil {
		return err
	}
	rendered, err := dispatcher.RenderNodePools(reg, dispatcher.NodeClass{KWOK: c.KWOK, Cluster: c.Cluster, Role: c.NodeRole})
	if err != nil {
		return err
	}
	return rendered.WriteYAML(g.stdout)
}
