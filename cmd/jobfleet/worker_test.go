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
	if err := jobfleet.NewPublisher(sqs.Client, class).Publish(t.Context(), &jobfleet.Job{Version: 1, ID: "cli-1", Type: "count"}); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "count.log")
	cmd := exec.Command(bin, "worker", "--log-format", "json", "--job-type", "count",
		"--checkpoint-dir", filepath.Join(t.TempDir(), "ckpt"), "--checkpoint-interval", "1s",
		"--grace-period", "10s", "--upload-grace", "4s", "--cgroup", "off", "--reason-file", filepath.Join(t.TempDir(), "none"),
		"--", testjob, "count", "1000000", "2", logFile)
	cmd.Env = append(os.Environ(), sqs.Env()...)
	cmd.Env = append(cmd.Env, s3.Env()...)
	cmd.Env = append(cmd.Env, "JOBFLEET_QUEUE="+class, "JOBFLEET_INTAKE="+intake, "JOBFLEET_DEAD_LETTER="+dead,
		"JOBFLEET_RECORDS="+records, "JOBFLEET_BUCKET="+bucket, "JOBFLEET_NODE_NAME=node-7")
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
	rerun, err := jobfleet.Decode([]byte(aws.ToString(msgs[0].Body)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rerun.History) != 1 || rerun.History[0].Reason != jobfleet.ReasonEvicted || rerun.History[0].Node != "node-7" || rerun.Checkpoint == "" {
		t.Errorf("rerun = %+v", rerun)
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
