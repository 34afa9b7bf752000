package worker_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/jobfleet/jobfleet/worker"
)

// A job written in Go, the image's program of a job type with
// `mode: library`: it resumes from its checkpoint directory and saves
// progress there; when the pod is stopped, ctx ends and the worker uploads
// the directory and requeues the job. Its configuration is the environment
// jobfleet's pod template gives it.
func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := worker.FromEnv(os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	train := worker.HandlerFunc(func(ctx context.Context, job *worker.Job) error {
		epochFile := filepath.Join(job.CheckpointDir, "epoch")
		epoch := 0
		if data, err := os.ReadFile(epochFile); err == nil {
			fmt.Sscan(string(data), &epoch)
		}
		for ; epoch < 20; epoch++ {
			if ctx.Err() != nil {
				return ctx.Err() // stopping: the checkpoint is already saved
			}
			// ... train one epoch ...
			tmp := epochFile + ".tmp"
			if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d", epoch+1), 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp, epochFile); err != nil {
				return err
			}
		}
		return nil
	})
	if err := worker.Run(ctx, cfg, train); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Command wraps any program: `jobfleet worker -- python train.py` does the
// same from a pod's entrypoint.
func ExampleCommand() {
	h := worker.Command("python", "train.py", "--epochs", "20")
	_ = h
}
