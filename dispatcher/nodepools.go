package dispatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	karpv1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/jobfleet/jobfleet/jobtype"
)

// NodeClass says what the rendered NodePools launch nodes with.
type NodeClass struct {
	// KWOK renders a KWOKNodeClass per pool, for Karpenter's KWOK provider
	// (simulated nodes), instead of an EC2NodeClass.
	KWOK bool
	// Cluster is the EKS cluster's name: the EC2NodeClass finds subnets and
	// security groups by the karpenter.sh/discovery tag with this value.
	Cluster string
	// Role is the IAM role (name) of the nodes.
	Role string
}

// Validate reports a NodeClass that cannot render.
func (nc NodeClass) Validate() error {
	if nc.KWOK {
		return nil
	}
	var errs []error
	if nc.Cluster == "" {
		errs = append(errs, errors.New("the cluster name is required: subnets and security groups are found by their karpenter.sh/discovery tag"))
	}
	if nc.Role == "" {
		errs = append(errs, errors.New("the node role is required: the IAM role Karpenter's nodes run as"))
	}
	return errors.Join(errs...)
}

// NodePools are the Karpenter objects of a registry's pools.
type NodePools struct {
	NodePools []*karpv1.NodePool
	// NodeClasses are EC2NodeClasses, or KWOKNodeClasses, one per pool.
	NodeClasses []*unstructured.Unstructured
}

// The node classes' API groups, and how much longer than a pool's longest
// attempt a draining node waits for its pods.
const (
	nodeClassGroupAWS  = "karpenter.k8s.aws"
	nodeClassGroupKWOK = "karpenter.kwok.sh"
	nodeTerminationPad = 5 * time.Minute
)

// RenderNodePools builds the NodePools and node classes of every pool in
// the registry: the placement the dispatcher's pod templates ask for
// (nodeSelector, spread), provided. Each pool gets one NodePool named
// pool.NodePool, or, for a spot/on-demand split, two (NodePool-spot and
// NodePool-on-demand) sharing the values of jobtype.CapacitySpreadLabel in
// the split's ratio. Every NodePool consolidates only empty nodes (a batch
// job cannot move), expires nodes no sooner than the pool's longest
// attempt, and gives a draining node that long to finish its jobs; a GPU
// pool's budgets never replace a drifted node, and its node class has a
// large, fast root volume for multi-GB images.
func RenderNodePools(reg *jobtype.Registry, nc NodeClass) (*NodePools, error) {
	if err := nc.Validate(); err != nil {
		return nil, err
	}
	out := &NodePools{}
	for _, pool := range reg.Pools() {
		class := nodeClass(pool, nc)
		out.NodeClasses = append(out.NodeClasses, class)
		spot, onDemand := pool.Split()
		if spot == 0 {
			out.NodePools = append(out.NodePools, nodePool(reg, pool, nc, pool.NodePool, pool.CapacityTypes, nil, pool.Limits))
			continue
		}
		values := func(from, n int) []string {
			var v []string
			for i := from; i < from+n; i++ {
				v = append(v, strconv.Itoa(i))
			}
			return v
		}
		out.NodePools = append(out.NodePools,
			nodePool(reg, pool, nc, pool.NodePool+"-spot", []string{karpv1.CapacityTypeSpot}, values(1, spot), shareLimits(pool.Limits, pool.SpotPercent)),
			nodePool(reg, pool, nc, pool.NodePool+"-on-demand", []string{karpv1.CapacityTypeOnDemand}, values(spot+1, onDemand), shareLimits(pool.Limits, 100-pool.SpotPercent)))
	}
	return out, nil
}

func nodePool(reg *jobtype.Registry, pool *jobtype.Pool, nc NodeClass, name string, capacity, spread []string, limits map[string]resource.Quantity) *karpv1.NodePool {
	req := func(key string, values ...string) karpv1.NodeSelectorRequirementWithMinValues {
		return karpv1.NodeSelectorRequirementWithMinValues{NodeSelectorRequirement: corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}}
	}
	requirements := []karpv1.NodeSelectorRequirementWithMinValues{
		req(karpv1.CapacityTypeLabelKey, capacity...),
		req(corev1.LabelArchStable, pool.Archs...),
		req(corev1.LabelOSStable, "linux"),
	}
	if len(pool.InstanceTypes) > 0 {
		requirements = append(requirements, req(corev1.LabelInstanceTypeStable, pool.InstanceTypes...))
	}
	if len(pool.InstanceFamilies) > 0 {
		requirements = append(requirements, req(labelInstanceFamily, pool.InstanceFamilies...))
	}
	if len(spread) > 0 {
		requirements = append(requirements, req(jobtype.CapacitySpreadLabel, spread...))
	}
	var taints []corev1.Taint
	for _, tol := range tolerations(pool) {
		taints = append(taints, corev1.Taint{Key: tol.Key, Value: tol.Value, Effect: tol.Effect})
	}
	// Empty nodes go at once. A drifted node (a new AMI, a changed node
	// class) is replaced only once empty: Karpenter would evict the jobs
	// on it, and they would redo the work since their last checkpoint.
	budgets := []karpv1.Budget{
		{Nodes: "100%", Reasons: []karpv1.DisruptionReason{karpv1.DisruptionReasonEmpty}},
		{Nodes: "0", Reasons: []karpv1.DisruptionReason{karpv1.DisruptionReasonDrifted}},
	}
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelPool: pool.Name}
	np := &karpv1.NodePool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "karpenter.sh/v1", Kind: "NodePool"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: karpv1.NodePoolSpec{
			Template: karpv1.NodeClaimTemplate{
				ObjectMeta: karpv1.ObjectMeta{Labels: map[string]string{LabelPool: pool.Name}},
				Spec: karpv1.NodeClaimTemplateSpec{
					Requirements: requirements,
					Taints:       taints,
					NodeClassRef: nodeClassRef(pool, nc),
					ExpireAfter:  karpv1.MustParseNillableDuration(duration(pool.ExpireAfter)),
					// An expired node drains: its jobs are evicted, checkpoint
					// and rerun elsewhere (an eviction spends no retry), and
					// jobs that may not be disrupted get their longest
					// attempt to finish.
					TerminationGracePeriod: &metav1.Duration{Duration: reg.LongestAttempt(pool.Name) + nodeTerminationPad},
				},
			},
			Disruption: karpv1.Disruption{
				ConsolidationPolicy: karpv1.ConsolidationPolicyWhenEmpty,
				ConsolidateAfter:    karpv1.MustParseNillableDuration(duration(pool.ConsolidateAfter)),
				Budgets:             budgets,
			},
		},
	}
	if len(limits) > 0 {
		np.Spec.Limits = karpv1.Limits{}
		for name, q := range limits {
			np.Spec.Limits[corev1.ResourceName(name)] = q
		}
	}
	return np
}

// labelInstanceFamily is the AWS provider's instance family label.
const labelInstanceFamily = "karpenter.k8s.aws/instance-family"

// shareLimits gives one NodePool of a split its percent of the pool's
// limits, rounded up.
func shareLimits(limits map[string]resource.Quantity, percent int) map[string]resource.Quantity {
	if len(limits) == 0 {
		return nil
	}
	out := map[string]resource.Quantity{}
	for name, q := range limits {
		milli := (q.MilliValue()*int64(percent) + 99) / 100
		share := resource.NewMilliQuantity(milli, q.Format)
		if milli%1000 == 0 {
			share = resource.NewQuantity(milli/1000, q.Format)
		}
		out[name] = *share
	}
	return out
}

func nodeClassRef(pool *jobtype.Pool, nc NodeClass) *karpv1.NodeClassReference {
	if nc.KWOK {
		return &karpv1.NodeClassReference{Group: nodeClassGroupKWOK, Kind: "KWOKNodeClass", Name: pool.NodePool}
	}
	return &karpv1.NodeClassReference{Group: nodeClassGroupAWS, Kind: "EC2NodeClass", Name: pool.NodePool}
}

// nodeClass is a pool's EC2NodeClass: the AMI alias, the cluster's subnets
// and security groups, the nodes' role, an encrypted gp3 root volume, and
// IMDSv2 only, reachable from the node and not from its pods.
func nodeClass(pool *jobtype.Pool, nc NodeClass) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetName(pool.NodePool)
	u.SetLabels(map[string]string{LabelManagedBy: ManagedBy, LabelPool: pool.Name})
	if nc.KWOK {
		u.SetAPIVersion(nodeClassGroupKWOK + "/v1alpha1")
		u.SetKind("KWOKNodeClass")
		return u
	}
	u.SetAPIVersion(nodeClassGroupAWS + "/v1")
	u.SetKind("EC2NodeClass")
	discovery := map[string]any{"tags": map[string]any{"karpenter.sh/discovery": nc.Cluster}}
	volume := map[string]any{
		"volumeSize": resource.NewQuantity(pool.RootVolume.Size, resource.BinarySI).String(), "volumeType": "gp3",
		"iops": int64(pool.RootVolume.IOPS), "throughput": int64(pool.RootVolume.Throughput),
		"encrypted": true, "deleteOnTermination": true,
	}
	// Bottlerocket keeps its OS on a small first volume; images and pods'
	// volumes go on the second.
	devices := []any{map[string]any{"deviceName": "/dev/xvda", "rootVolume": true, "ebs": volume}}
	if family, _, _ := strings.Cut(pool.AMI, "@"); family == "bottlerocket" {
		devices = []any{
			map[string]any{"deviceName": "/dev/xvda", "ebs": map[string]any{"volumeSize": "4Gi", "volumeType": "gp3", "encrypted": true, "deleteOnTermination": true}},
			map[string]any{"deviceName": "/dev/xvdb", "ebs": volume},
		}
	}
	u.Object["spec"] = map[string]any{
		"role":                       nc.Role,
		"amiSelectorTerms":           []any{map[string]any{"alias": pool.AMI}},
		"subnetSelectorTerms":        []any{discovery},
		"securityGroupSelectorTerms": []any{discovery},
		"blockDeviceMappings":        devices,
		"metadataOptions": map[string]any{
			"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled", "httpPutResponseHopLimit": int64(1), "httpTokens": "required",
		},
		"tags": map[string]any{LabelManagedBy: ManagedBy, LabelPool: pool.Name},
	}
	return u
}

// duration formats a duration as Karpenter's CRDs accept it: whole
// seconds, in h, m and s.
func duration(d time.Duration) string {
	return d.Round(time.Second).String()
}

// Objects are the rendered objects as unstructured maps, node classes
// first, without status or empty fields, ready to apply or print.
func (n *NodePools) Objects() ([]*unstructured.Unstructured, error) {
	out := slices.Clone(n.NodeClasses)
	for _, np := range n.NodePools {
		// Through JSON, which Karpenter's durations marshal themselves to.
		data, err := json.Marshal(np)
		if err != nil {
			return nil, fmt.Errorf("NodePool %s: %w", np.Name, err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("NodePool %s: %w", np.Name, err)
		}
		delete(m, "status")
		if meta, ok := m["metadata"].(map[string]any); ok {
			delete(meta, "creationTimestamp")
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

// WriteYAML writes the objects as a YAML stream.
func (n *NodePools) WriteYAML(w io.Writer) error {
	objs, err := n.Objects()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString("# Rendered by `jobfleet nodepools` from the job type registry; edit the registry, not this.\n")
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	_, err = w.Write(buf.Bytes())
	return err
}
