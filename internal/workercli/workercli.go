// Package workercli is what a job pod runs: `jobfleet worker -- <command>`
// and the init container's `jobfleet install DIR`. Both the full jobfleet
// binary and the small worker build (cmd/jobfleet-worker), which the init
// container copies into every job pod, wire their commands to it.
package workercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/worker"
)

// Help describes the environment the worker reads, for `--help`.
func Help() string {
	return "The worker is configured by these environment variables, which jobfleet's pod template sets:\n\n" +
		contract.WorkerEnvHelp() +
		"\nAWS settings come from the SDK's environment (AWS_REGION, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3, ...)."
}

// RunWorker runs the job command's jobs until the queue is idle, MaxJobs
// ran, or ctx ends (SIGTERM), configured by the JOBFLEET_* environment.
func RunWorker(ctx context.Context, command []string, log zerolog.Logger, stdout, stderr io.Writer) error {
	if len(command) > 0 && command[0] == "--" {
		command = command[1:]
	}
	if len(command) == 0 {
		return errors.New("no command: jobfleet worker -- <command> [args...]")
	}
	cfg, err := worker.FromEnv(os.LookupEnv)
	if err != nil {
		return err
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr
	// Validate before reaching for AWS, so a bad setting is named first.
	if err := cfg.WithDefaults().Validate(); err != nil {
		return err
	}
	clients, err := awsclient.Load(ctx, 10)
	if err != nil {
		return err
	}
	w, err := worker.New(cfg, clients.SQS, clients.S3, worker.Command(command[0], command[1:]...), worker.WithLogger(log), worker.WithAnnouncements(clients.SNS, clients.SFN))
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// Install copies the running binary into dir as dir/jobfleet, atomically:
// the init container of every job pod runs it to put the worker into a
// volume the job's own image mounts.
func Install(dir string, log zerolog.Logger) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the jobfleet binary: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	target := filepath.Join(dir, "jobfleet")
	tmp, err := os.CreateTemp(dir, ".jobfleet-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("copying the jobfleet binary: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	log.Info().Str("path", target).Msg("installed jobfleet")
	return nil
}
