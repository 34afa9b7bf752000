// Command libjob is a job image's program in library mode for the worker's
// tests: a Go program that runs its jobs with worker.Run, configured by the
// environment jobfleet's pod template writes. Its handler writes the job's
// id to the file in $LIBJOB_OUT.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jobfleet/jobfleet/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := worker.FromEnv(os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	h := worker.HandlerFunc(func(_ context.Context, job *worker.Job) error {
		f, err := os.OpenFile(os.Getenv("LIBJOB_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = fmt.Fprintln(f, job.Message.ID)
		return err
	})
	if err := worker.Run(ctx, cfg, h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
