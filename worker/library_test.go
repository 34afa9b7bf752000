package worker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

// TestLibraryMode runs a Go program that calls worker.Run, as the pod of a
// job type in library mode runs it: directly, with the worker's
// environment. Run under `jobfleet worker --` instead (a type left in
// command mode), the program refuses to run, and the attempt is recorded
// as failed, never as a success of a job that did not run.
func TestLibraryMode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	libjob := testenv.Build(t, "./worker/testdata/libjob")
	jobfleetBin := testenv.Build(t, "./cmd/jobfleet")
	out := filepath.Join(t.TempDir(), "ran")
	env := contract.WorkerEnv{
		Queue: b.class, Intake: b.intake, DeadLetter: b.dead, Records: b.records, Bucket: b.bucket, Prefix: "jobs",
		CheckpointDir: filepath.Join(t.TempDir(), "ckpt"), IdleTimeout: 3 * time.Second, Cgroup: "off",
		ReasonFile: filepath.Join(t.TempDir(), "none"),
	}
	environ := append(append(append(os.Environ(), b.sqs.Env()...), b.s3.Env()...), env.Strings()...)
	environ = append(environ, "LIBJOB_OUT="+out)

	b.publish(t, &jobfleet.Job{ID: "direct"})
	direct := exec.Command(libjob)
	direct.Env = environ
	if output, err := direct.CombinedOutput(); err != nil {
		t.Fatalf("the program in library mode: %v\n%s", err, output)
	}
	if data, _ := os.ReadFile(out); strings.TrimSpace(string(data)) != "direct" {
		t.Fatalf("the handler ran for %q, want the job", data)
	}
	if rec := b.recordsOf(t, 1)[0]; rec.Outcome != jobfleet.OutcomeSucceeded {
		t.Errorf("run record = %+v", rec)
	}

	b.publish(t, &jobfleet.Job{ID: "wrapped"})
	wrapped := exec.Command(jobfleetBin, "--log-format", "json", "worker", "--", libjob)
	wrapped.Env = environ
	output, err := wrapped.CombinedOutput()
	if err != nil {
		t.Fatalf("jobfleet worker: %v\n%s", err, output)
	}
	if !strings.Contains(string(output), "runs under `jobfleet worker --`; give its job type mode: library") {
		t.Errorf("the wrapped program did not say why it refused:\n%s", output)
	}
	rec := b.recordsOf(t, 1)[0]
	if rec.JobID != "wrapped" || rec.Outcome == jobfleet.OutcomeSucceeded {
		t.Errorf("run record = %+v, want the wrapped attempt failed", rec)
	}
	if data, _ := os.ReadFile(out); strings.Contains(string(data), "wrapped") {
		t.Error("the handler ran under the wrapper")
	}
}
