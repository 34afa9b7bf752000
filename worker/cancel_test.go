package worker_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/worker"
)

// TestCancelledBeforeReceive: a job cancelled while its message waits in
// the class queue is dropped by the worker that receives it: the command
// never starts, nothing is claimed, recorded, retried or dead-lettered.
func TestCancelledBeforeReceive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	job := b.publish(t, &jobfleet.Job{ID: "cancel-queued"})
	if _, err := b.store.Cancel(t.Context(), job.ID, "not needed", time.Now()); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "count.log")
	if err := b.run(t, t.Context(), b.cfg, "count", "10", "10", logFile); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(logFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cancelled job ran: %v", err)
	}
	for name, url := range map[string]string{"class": b.class, "intake": b.intake, "dead-letter": b.dead, "records": b.records} {
		if visible, inFlight := b.sqs.Depth(t, url); visible+inFlight != 0 {
			t.Errorf("the %s queue holds %d messages", name, visible+inFlight)
		}
	}
	cur, _, err := b.store.ReadRun(t.Context(), job.ID)
	if err != nil || cur.Status != jobfleet.StatusCancelled || len(cur.Attempts) != 0 {
		t.Errorf("state %+v, %v", cur, err)
	}
}

// TestCancelWhileRunning: the worker notices a cancel within its poll,
// stops the command with SIGTERM, records the attempt as cancelled and
// neither reruns nor dead-letters the job.
func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.CancelPoll = 200 * time.Millisecond
	job := b.publish(t, &jobfleet.Job{ID: "cancel-running"})
	logFile := filepath.Join(t.TempDir(), "count.log")
	done := make(chan error, 1)
	go func() { done <- b.run(t, t.Context(), cfg, "count", "100000", "20", logFile) }()
	deadline := time.Now().Add(time.Minute)
	for !jobStarted(logFile) {
		if time.Now().After(deadline) {
			t.Fatalf("the job did not start:\n%s", b.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cur, _, err := b.store.ReadRun(t.Context(), job.ID)
	if err != nil || cur.Status != jobfleet.StatusRunning || len(cur.Attempts) != 1 || cur.Attempts[0].Node != "node-a" || cur.Attempts[0].CapacityType != jobfleet.CapacitySpot {
		t.Fatalf("running state %+v, %v", cur, err)
	}
	cancelled := time.Now()
	if _, err := b.store.Cancel(t.Context(), job.ID, "wrong data", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("the worker finished %s after the cancel", time.Since(cancelled).Round(time.Millisecond))
	if data, _ := os.ReadFile(logFile); !strings.Contains(string(data), "stop ") {
		t.Errorf("the job did not get SIGTERM: %s", data)
	}
	cur, _, err = b.store.ReadRun(t.Context(), job.ID)
	if err != nil || cur.Status != jobfleet.StatusCancelled || cur.Reason != "wrong data" || len(cur.Attempts) != 1 || cur.Attempts[0].Outcome != jobfleet.OutcomeCancelled {
		t.Errorf("state %+v, %v", cur, err)
	}
	recs := b.recordsOf(t, 1)
	if recs[0].Outcome != jobfleet.OutcomeCancelled {
		t.Errorf("record outcome %s", recs[0].Outcome)
	}
	for name, url := range map[string]string{"class": b.class, "intake": b.intake, "dead-letter": b.dead} {
		if visible, inFlight := b.sqs.Depth(t, url); visible+inFlight != 0 {
			t.Errorf("the %s queue holds %d messages", name, visible+inFlight)
		}
	}
	claim, _, err := b.store.ReadClaim(t.Context(), job.ID, cur.Run, 1)
	if err != nil || claim.State != contract.ClaimEnded || claim.Next != contract.NextDone {
		t.Errorf("claim %+v, %v", claim, err)
	}
}

// TestOutputs: a job's key/value outputs and output files land in its
// state; outputs jobfleet cannot take fail the job without a retry.
func TestOutputs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := b.publish(t, &jobfleet.Job{ID: "outputs-good"})
	bad := b.publish(t, &jobfleet.Job{ID: "outputs-bad"})
	fifo := b.publish(t, &jobfleet.Job{ID: "outputs-fifo"})
	h := worker.HandlerFunc(func(ctx context.Context, job *worker.Job) error {
		switch job.Message.ID {
		case bad.ID:
			return os.WriteFile(job.OutputsFile, []byte(`{"not a key!": 1}`), 0o644)
		case fifo.ID:
			// A file nobody writes to would block a reader forever.
			return syscall.Mkfifo(job.OutputsFile, 0o644)
		}
		if err := os.MkdirAll(filepath.Join(job.OutputsDir, "model"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(job.OutputsDir, "model", "weights.bin"), []byte("weights"), 0o644); err != nil {
			return err
		}
		return os.WriteFile(job.OutputsFile, []byte(`{"accuracy": 0.931, "model": "s3://models/m1", "better": true}`), 0o644)
	})
	cfg := b.cfg
	cfg.MaxJobs = 3
	if err := b.runHandler(t, t.Context(), cfg, h); err != nil {
		t.Fatal(err)
	}
	cur, _, err := b.store.ReadRun(t.Context(), good.ID)
	if err != nil || cur.Status != jobfleet.StatusSucceeded {
		t.Fatalf("state %+v, %v", cur, err)
	}
	if want := map[string]string{"accuracy": "0.931", "model": "s3://models/m1", "better": "true"}; !maps.Equal(cur.Outputs, want) {
		t.Errorf("outputs %v, want %v", cur.Outputs, want)
	}
	dir := t.TempDir()
	if err := b.store.Download(t.Context(), b.s3.Client, b.store.OutputsPrefix(good.ID, cur.Run), dir); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "model", "weights.bin")); err != nil || string(data) != "weights" {
		t.Errorf("the output file: %q, %v", data, err)
	}
	if want := b.store.URI(b.store.OutputsPrefix(good.ID, cur.Run)) + "/"; cur.OutputsURI != want {
		t.Errorf("outputs uri %q, want %q", cur.OutputsURI, want)
	}
	cur, _, err = b.store.ReadRun(t.Context(), bad.ID)
	if err != nil || cur.Status != jobfleet.StatusFailed || !strings.Contains(cur.Reason, `"not a key!"`) || len(cur.Attempts) != 1 {
		t.Errorf("bad outputs: state %+v, %v", cur, err)
	}
	cur, _, err = b.store.ReadRun(t.Context(), fifo.ID)
	if err != nil || cur.Status != jobfleet.StatusFailed || !strings.Contains(cur.Reason, "not a regular file") {
		t.Errorf("outputs file a FIFO: state %+v, %v", cur, err)
	}
	if visible, _ := b.sqs.Depth(t, b.intake); visible != 0 {
		t.Errorf("a job with bad outputs was retried")
	}
}

// jobStarted reports whether the test job has written its start line.
func jobStarted(logFile string) bool {
	data, _ := os.ReadFile(logFile)
	return strings.HasPrefix(string(data), "start ")
}
