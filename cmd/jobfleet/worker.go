package main

import (
	"context"

	"github.com/jobfleet/jobfleet/internal/workercli"
)

// WorkerCmd is the entrypoint of every job pod. It is configured by the
// JOBFLEET_* environment that the dispatcher's pod template writes (and
// `jobfleet local`'s executor), read by one function, contract.ParseWorkerEnv.
type WorkerCmd struct {
	Command []string `arg:"" passthrough:"" name:"command" help:"The job's command and its arguments, after --."`
}

// Help lists the environment the worker reads.
func (c *WorkerCmd) Help() string { return workercli.Help() }

// Run runs jobs until the queue is idle, MaxJobs ran, or SIGTERM.
func (c *WorkerCmd) Run(ctx context.Context, g *Globals) error {
	return workercli.RunWorker(ctx, c.Command, g.log, g.stdout, g.stderr)
}
