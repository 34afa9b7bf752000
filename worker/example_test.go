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

// A job written in Go: it resumes from its checkpoint directory and saves
// progress there; when the pod is stopped, ctx ends and the worker uploads
// the directory and requeues the job.
func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := worker.Config{
		QueueURL:      os.Getenv("JOBFLEET_QUEUE"),
		IntakeURL:     os.Getenv("JOBFLEET_INTAKE"),
		DeadLetterURL: os.Getenv("JOBFLEET_DEAD_LETTER"),
		RecordsURL:    os.Getenv("JOBFLEET_RECORDS"),
		Bucket:        os.Getenv("JOBFLEET_BUCKET"),
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
