package main

import (
	"context"
	"errors"
	"os"

	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/worker"
)

// WorkerCmd is the entrypoint of every job pod. It is configured by the
// JOBFLEET_* environment that the dispatcher's pod template writes (and
// `jobfleet local`'s executor), read by one function, contract.ParseWorkerEnv.
type WorkerCmd struct {
	Command []string `arg:"" passthrough:"" name:"command" help:"The job's command and its arguments, after --."`
}

// Help lists the environment the worker reads.
func (c *WorkerCmd) Help() string {
	return "The worker is configured by these environment variables, which jobfleet's pod template sets:\n\n" +
		contract.WorkerEnvHelp() +
		"\nAWS settings come from the SDK's environment (AWS_REGION, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3, ...)."
}

// Run runs jobs until the queue is idle, MaxJobs ran, or SIGTERM.
func (c *WorkerCmd) Run(ctx context.Context, g *Globals) error {
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return errors.New("no command: jobfleet worker -- <command> [args...]")
	}
	cfg, err := worker.FromEnv(os.LookupEnv)
	if err != nil {
		return err
	}
	cfg.Stdout, cfg.Stderr = g.stdout, g.stderr
	// Validate before reaching for AWS, so a bad setting is named first.
	if err := cfg.WithDefaults().Validate(); err != nil {
		return err
	}
	clients, err := awsclient.Load(ctx, 10)
	if err != nil {
		return err
	}
	w, err := worker.New(cfg, clients.SQS, clients.S3, worker.Command(c.Command[0], c.Command[1:]...), worker.WithLogger(g.log))
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
