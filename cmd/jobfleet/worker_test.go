package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

// TestWorkerCommandSIGTERM runs the real jobfleet binary as a pod would and
// stops it with SIGTERM: the job is checkpointed and requeued, and the
// worker exits 0 within the grace period.
func TestWorkerCommandSIGTERM(t *testing.T) {
	t.Parallel()
	sqs, s3 := testenv.StartSQS(t), testenv.StartS3(t)
	bucket := s3.CreateBucket(t)
	class, intake := sqs.CreateQueue(t, "class-", nil), sqs.CreateQueue(t, "intake-", nil)
	dead, records := sqs.CreateQueue(t, "dead-", nil), sqs.CreateQueue(t, "records-", nil)
	bin, testjob := testenv.Build(t, "./cmd/jobfleet"), testenv.Build(t, "./internal/testenv/testjob")
	// The dispatcher accepted the job: its run is recorded and attempt 1
	// waits in the class queue.
	store := contract.Store{S3: s3.Client, Bucket: bucket}
	job := &jobfleet.Job{Version: 1, ID: "cli-1", Type: "count"}
	body, _ := jobfleet.Encode(job)
	if _, _, err := store.StartRun(t.Context(), job, string(body), "run-1", time.Time{}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if f := queue.Send(t.Context(), sqs.Client, class, []queue.Message{queue.ForwardMessage(string(body), job.Type, "run-1", 1)}, queue.Retry{}); len(f) > 0 {
		t.Fatal(f[0].Err)
	}
	logFile := filepath.Join(t.TempDir(), "count.log")
	// The environment a pod template gives the worker.
	env := contract.WorkerEnv{
		Queue: class, Intake: intake, DeadLetter: dead, Records: records, Bucket: bucket, JobType: "count",
		CheckpointDir: filepath.Join(t.TempDir(), "ckpt"), CheckpointInterval: time.Second,
		GracePeriod: 10 * time.Second, UploadGrace: 4 * time.Second, Cgroup: "off",
		ReasonFile: filepath.Join(t.TempDir(), "none"), Node: "node-7",
	}
	cmd := exec.Command(bin, "--log-format", "json", "worker", "--", testjob, "count", "1000000", "2", logFile)
	cmd.Env = append(os.Environ(), sqs.Env()...)
	cmd.Env = append(cmd.Env, s3.Env()...)
	cmd.Env = append(cmd.Env, env.Strings()...)
	cmd.Env = append(cmd.Env, "TMPDIR="+t.TempDir())
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the job to listen for SIGTERM, then stop the worker as the
	// kubelet would.
	deadline := time.Now().Add(30 * time.Second)
	for !jobStarted(logFile) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the job did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the worker exited with %v:\n%s", err, out.String())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the worker took %v to stop, longer than its grace period", took)
	}
	msgs := sqs.Receive(t, intake, 1, true)
	if _, err := jobfleet.Decode([]byte(aws.ToString(msgs[0].Body))); err != nil {
		t.Fatal(err)
	}
	run, attempt, _, _ := queue.RunAttempt(msgs[0].MessageAttributes)
	ended, _, err := store.ReadClaim(t.Context(), job.ID, run, 1)
	if err != nil || attempt != 2 {
		t.Fatalf("rerun of run %q attempt %d; claim of attempt 1: %v", run, attempt, err)
	}
	if h := ended.History; len(h) != 1 || h[0].Reason != jobfleet.ReasonEvicted || h[0].Node != "node-7" || h[0].Checkpoint == "" {
		t.Errorf("history = %+v", h)
	}
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), "stop ") {
		t.Errorf("the job did not get SIGTERM: %s", data)
	}
	if visible, inFlight := sqs.Depth(t, class); visible+inFlight != 0 {
		t.Errorf("the class queue still holds the job")
	}
}

// jobStarted reports whether the test job has written its start line.
func jobStarted(logFile string) bool {
	data, _ := os.ReadFile(logFile)
	return strings.HasPrefix(string(data), "start ")
}
