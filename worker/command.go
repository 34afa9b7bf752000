//go:build unix

package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/jobfleet/jobfleet/internal/contract"
)

func runCommand(ctx context.Context, job *Job, name string, args []string) error {
	cmd, cleanup, err := prepareCommand(job, name, args)
	if err != nil {
		return err
	}
	defer cleanup()
	// The wrapped command learns it is wrapped, so that a Go program that
	// calls Run itself (and expects to receive its own job) fails loudly
	// instead of finding the queue empty.
	cmd.Env = append(append(os.Environ(), contract.EnvWrapped+"=1"), job.env...)
	cmd.Stdout, cmd.Stderr = job.stdout, job.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: starting %s: %w", ErrSkipRetry, name, err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-exited:
			return
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(job.stopGrace())
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	err = cmd.Wait()
	close(exited)
	<-stopped
	// Whatever the command left behind in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		job.rusagePeak = maxrssBytes(ru)
	}
	if err == nil {
		return nil
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return fmt.Errorf("waiting for %s: %w", name, err)
	}
	status, _ := exitErr.Sys().(syscall.WaitStatus)
	if status.Signaled() {
		job.wasSignaled = status.Signal() == syscall.SIGKILL
		return &ExitError{Code: -1, Signal: status.Signal()}
	}
	return &ExitError{Code: status.ExitStatus()}
}
