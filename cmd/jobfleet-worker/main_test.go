package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestWorkerBuildRunsAJob runs the small worker build as a job pod does:
// installed into a directory by `install`, then `worker -- <command>` with
// the pod template's environment. The job runs and its record arrives.
func TestWorkerBuildRunsAJob(t *testing.T) {
	t.Parallel()
	sqs, s3 := testenv.StartSQS(t), testenv.StartS3(t)
	bucket := s3.CreateBucket(t)
	class, intake := sqs.CreateQueue(t, "class-", nil), sqs.CreateQueue(t, "intake-", nil)
	dead, records := sqs.CreateQueue(t, "dead-", nil), sqs.CreateQueue(t, "records-", nil)
	bin := testenv.Build(t, "./cmd/jobfleet-worker")
	dir := t.TempDir()
	if out, err := exec.Command(bin, "install", dir).CombinedOutput(); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	installed := filepath.Join(dir, "jobfleet")

	store := contract.Store{S3: s3.Client, Bucket: bucket}
	job := &jobfleet.Job{Version: 1, ID: "small-1", Type: "echo"}
	body, _ := jobfleet.Encode(job)
	if _, _, err := store.StartRun(t.Context(), job, string(body), "run-1", time.Time{}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if f := queue.Send(t.Context(), sqs.Client, class, []queue.Message{queue.ForwardMessage(string(body), job.Type, "run-1", 1)}, queue.Retry{}); len(f) > 0 {
		t.Fatal(f[0].Err)
	}
	env := contract.WorkerEnv{
		Queue: class, Intake: intake, DeadLetter: dead, Records: records, Bucket: bucket, JobType: "echo",
		CheckpointDir: filepath.Join(t.TempDir(), "ckpt"), Cgroup: "off", IdleTimeout: 3 * time.Second,
		ReasonFile: filepath.Join(t.TempDir(), "none"),
	}
	cmd := exec.Command(installed, "--log-format", "json", "worker", "--", "/bin/sh", "-c", `echo "ran $JOBFLEET_JOB_ID"`)
	cmd.Env = append(append(append(os.Environ(), sqs.Env()...), s3.Env()...), env.Strings()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("worker: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ran small-1") {
		t.Errorf("the job did not run:\n%s", out)
	}
	msgs := sqs.Receive(t, records, 1, true)
	rec, err := jobfleet.DecodeRunRecord([]byte(*msgs[0].Body))
	if err != nil || rec.Outcome != jobfleet.OutcomeSucceeded {
		t.Errorf("run record %+v, %v", rec, err)
	}
}
