package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/rs/zerolog"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/cgroup"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/worker"
)

func TestMaxRuntimeCountsAsFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.MaxRuntime = 300 * time.Millisecond
	b.publish(t, &jobfleet.Job{ID: "slow-1"})
	if err := b.run(t, t.Context(), cfg, "sleep", "60000"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	h := b.sentIn(t, b.intake, 1)[0].History
	if len(h) != 1 || h[0].Reason != jobfleet.ReasonFailed || !strings.Contains(h[0].Error, "maximum runtime exceeded") {
		t.Fatalf("rerun history = %+v", h)
	}
	b.assertEmpty(t, b.class, "class")
}

func TestWrongTypeIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.JobType = "export"
	b.publish(t, &jobfleet.Job{ID: "wrong-1", Type: "train"})
	if err := b.run(t, t.Context(), cfg, "sleep", "1"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	msgs := b.sqs.Receive(t, b.dead, 1, true)
	if reason := aws.ToString(msgs[0].MessageAttributes[jobfleet.AttrError].StringValue); !strings.Contains(reason, `job type "train" arrived on the class queue of type "export"`) {
		t.Errorf("reason = %q", reason)
	}
	if got := aws.ToString(msgs[0].MessageAttributes[jobfleet.AttrType].StringValue); got != "train" {
		t.Errorf("the dead letter lost its attributes: type %q", got)
	}
	b.assertEmpty(t, b.class, "class")
}

// writeClaim stores a claim as a worker would have.
func (b *bundle) writeClaim(t *testing.T, c *contract.Claim) {
	t.Helper()
	c.QueueURL = b.class
	if _, _, _, err := b.store.Claim(t.Context(), c, c.RenewedAt, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func TestRedeliveryAfterWorkerDiedRunsTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run := b.publishRun(t, &jobfleet.Job{ID: "orphan-1"})
	// A worker received the message, claimed it, and died: its lease ran
	// out.
	out, err := b.sqs.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(b.class), VisibilityTimeout: 1, WaitTimeSeconds: 2})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receiving: %v, %d messages", err, len(out.Messages))
	}
	b.writeClaim(t, &contract.Claim{JobID: "orphan-1", Type: "test", Run: run, Attempt: 1, Holder: "dead", MessageID: aws.ToString(out.Messages[0].MessageId), RenewedAt: time.Now().Add(-time.Hour)})

	// Its message reappears after the visibility timeout, and a new
	// worker takes the attempt over.
	cfg := b.cfg
	cfg.IdleTimeout = 5 * time.Second
	if err := b.run(t, t.Context(), cfg, "sleep", "1"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if recs := b.recordsOf(t, 1); recs[0].Outcome != jobfleet.OutcomeSucceeded {
		t.Errorf("run record = %+v", recs[0])
	}
	b.assertEmpty(t, b.class, "class")
}

func TestAttemptHeldByALiveWorkerIsLeftToIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run := b.publishRun(t, &jobfleet.Job{ID: "held-1"})
	// A worker holds the attempt and renews its lease, but lost touch with
	// SQS: its message reappears.
	out, err := b.sqs.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(b.class), VisibilityTimeout: 1, WaitTimeSeconds: 2})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receiving: %v, %d messages", err, len(out.Messages))
	}
	b.writeClaim(t, &contract.Claim{JobID: "held-1", Type: "test", Run: run, Attempt: 1, Holder: "alive", MessageID: aws.ToString(out.Messages[0].MessageId), RenewedAt: time.Now()})
	cfg := b.cfg
	cfg.IdleTimeout = 5 * time.Second
	ran := false
	if err := b.runHandler(t, t.Context(), cfg, worker.HandlerFunc(func(context.Context, *worker.Job) error { ran = true; return nil })); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if ran {
		t.Fatal("a second worker ran an attempt whose holder is alive")
	}
	c, _, err := b.store.ReadClaim(t.Context(), "held-1", run, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Holder != "alive" || c.State != contract.ClaimRunning || c.ReceiptHandle == "" {
		t.Errorf("claim = %+v, want it still the live holder's, with the new receipt handle", c)
	}
	if visible, inFlight := b.sqs.Depth(t, b.class); visible != 0 || inFlight != 1 {
		t.Errorf("class queue: %d visible, %d in flight; want the message kept hidden for its holder", visible, inFlight)
	}
}

func TestEndedAttemptIsCompletedNotRunAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The attempt ended and recorded a rerun, but its worker died before
	// sending it: its message comes back. A duplicate of that message
	// (another message id) arrives too.
	job := &jobfleet.Job{ID: "done-1"}
	run := b.publishRun(t, job)
	out, err := b.sqs.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(b.class), VisibilityTimeout: 30, WaitTimeSeconds: 2})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receiving: %v", err)
	}
	own := out.Messages[0]
	b.writeClaim(t, &contract.Claim{JobID: "done-1", Type: "test", Run: run, Attempt: 1, Holder: "gone", MessageID: aws.ToString(own.MessageId), RenewedAt: time.Now()})
	c, etag, err := b.store.ReadClaim(t.Context(), "done-1", run, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.State, c.Outcome, c.Next = contract.ClaimEnded, jobfleet.OutcomeInterrupted, contract.NextRerun
	c.History = jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}}
	c.Record = &jobfleet.RunRecord{JobID: "done-1", Type: "test", Run: run, Attempt: 1, Outcome: jobfleet.OutcomeInterrupted, EndedAt: time.Now()}
	if _, err := b.store.Update(t.Context(), c, etag); err != nil {
		t.Fatal(err)
	}
	b.send(t, b.class, queue.ForwardMessage(aws.ToString(own.Body), "test", run, 1)) // the duplicate
	ran := false
	h := worker.HandlerFunc(func(context.Context, *worker.Job) error { ran = true; return nil })
	if err := b.runHandler(t, t.Context(), b.cfg, h); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if visible, _ := b.sqs.Depth(t, b.intake); visible != 0 {
		t.Fatalf("the duplicate of an ended attempt sent %d reruns, want none", visible)
	}
	// Now the holder's own message comes back.
	if _, err := b.sqs.Client.ChangeMessageVisibility(t.Context(), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(b.class), ReceiptHandle: own.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	if err := b.runHandler(t, t.Context(), b.cfg, h); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if ran {
		t.Error("an ended attempt ran again")
	}
	rerun := b.sentIn(t, b.intake, 1)[0]
	if rerun.Attempt != 2 || rerun.Run != run || len(rerun.History) != 1 {
		t.Errorf("the rerun its holder left unsent = %+v", rerun)
	}
	if recs := b.recordsOf(t, 1); recs[0].Outcome != jobfleet.OutcomeInterrupted {
		t.Errorf("the run record its holder left unsent = %+v", recs[0])
	}
	b.assertEmpty(t, b.class, "class")
	b.assertEmpty(t, b.intake, "intake")
}

// endAttempt records that attempt n of a run ended in a rerun, as its
// worker would have.
func (b *bundle) endAttempt(t *testing.T, job *jobfleet.Job, run string, n int) {
	t.Helper()
	b.writeClaim(t, &contract.Claim{JobID: job.ID, Type: job.Type, Run: run, Attempt: n, Holder: "earlier", MessageID: fmt.Sprint("earlier-", n), RenewedAt: time.Now()})
	c, etag, err := b.store.ReadClaim(t.Context(), job.ID, run, n)
	if err != nil {
		t.Fatal(err)
	}
	c.State, c.Outcome, c.Next = contract.ClaimEnded, jobfleet.OutcomeInterrupted, contract.NextRerun
	c.History = append(c.History, jobfleet.Attempt{Attempt: n, Reason: jobfleet.ReasonInterrupted})
	if _, err := b.store.Update(t.Context(), c, etag); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptCheckpointStartsOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client := testenv.NewS3Client(b.s3.Endpoint)
	manifests := map[string]string{
		"corrupt-1": `{"version":1,"generation":1,"files":[{"path":"progress","size":3,"sha256":"` + strings.Repeat("0", 64) + `"}]}`,
		"corrupt-2": `not json`,
		"corrupt-3": `{"version":1,"generation":1,"files":[{"path":"../../etc/passwd","size":1,"sha256":"00"}]}`,
	}
	for id, body := range manifests {
		// A second attempt of a run whose checkpoint is corrupt.
		job := &jobfleet.Job{Version: jobfleet.Version, ID: id, Type: "test"}
		run := b.startRun(t, job)
		b.endAttempt(t, job, run, 1)
		key := b.store.CheckpointPrefix(id, run) + "/manifest.json"
		if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
		body, _ := jobfleet.Encode(job)
		b.send(t, b.class, queue.ForwardMessage(string(body), job.Type, run, 2))
	}
	cfg := b.cfg
	cfg.MaxJobs = 3
	var mu sync.Mutex
	resumed := map[string]bool{}
	err := b.runHandler(t, t.Context(), cfg, worker.HandlerFunc(func(_ context.Context, job *worker.Job) error {
		mu.Lock()
		defer mu.Unlock()
		resumed[job.Message.ID] = job.Resumed
		return nil
	}))
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	if len(resumed) != 3 || resumed["corrupt-1"] || resumed["corrupt-2"] || resumed["corrupt-3"] {
		t.Errorf("resumed = %v, want three fresh starts", resumed)
	}
	b.recordsOf(t, 3)
	b.assertEmpty(t, b.class, "class")
}

func TestEvictionWithoutAnnotationIsRecordedAsEvicted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, &jobfleet.Job{ID: "evict-1"})
	ctx, stop := context.WithCancel(t.Context())
	err := b.runHandler(t, ctx, b.cfg, worker.HandlerFunc(func(jctx context.Context, job *worker.Job) error {
		stop() // the pod is drained while the job runs
		<-jctx.Done()
		if cause := context.Cause(jctx); cause != worker.ErrStopping {
			t.Errorf("cause = %v, want ErrStopping", cause)
		}
		return jctx.Err()
	}))
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	if h := b.sentIn(t, b.intake, 1)[0].History; len(h) != 1 || h[0].Reason != jobfleet.ReasonEvicted || h[0].Checkpoint != "" {
		t.Errorf("rerun history = %+v, want one eviction without a checkpoint", h)
	}
	b.assertEmpty(t, b.class, "class")
}

// TestContainerPeakIsResetBetweenJobs runs `jobfleet worker` as a pod's
// container does, alone in a memory cgroup of its own, for two jobs: a
// first that allocates 256 MiB and a second that allocates 16. Each job's
// peak is its own: the second is not charged with the first's.
func TestContainerPeakIsResetBetweenJobs(t *testing.T) {
	t.Parallel()
	requireJobCgroups(t)
	b := setup(t)
	bin := testenv.Build(t, "./cmd/jobfleet")
	dir, err := os.MkdirTemp(cgroup.DefaultParent(), "container-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	b.publish(t, &jobfleet.Job{ID: "big", Params: json.RawMessage(`{"mib":256}`)})
	env := contract.WorkerEnv{
		Queue: b.class, Intake: b.intake, DeadLetter: b.dead, Records: b.records, Bucket: b.bucket, Prefix: "jobs",
		CheckpointDir: filepath.Join(t.TempDir(), "ckpt"), IdleTimeout: 30 * time.Second, MaxJobs: 2, Cgroup: "container",
		ReasonFile: filepath.Join(t.TempDir(), "none"),
	}
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(dir, "cgroup.procs"),
		bin, "--log-format", "json", "worker", "--", b.testjob, "alloc-params", "200")
	cmd.Env = append(append(append(os.Environ(), b.sqs.Env()...), b.s3.Env()...), env.Strings()...)
	cmd.Env = append(cmd.Env, "TMPDIR="+t.TempDir())
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The second job only once the first ended, so it runs second.
	testenv.Eventually(t, 30*time.Second, "the first job's record", func() bool {
		visible, _ := b.sqs.Depth(t, b.records)
		return visible == 1
	})
	b.publish(t, &jobfleet.Job{ID: "small", Params: json.RawMessage(`{"mib":16}`)})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the worker: %v\n%s", err, out.String())
	}
	peaks := map[string]jobfleet.RunRecord{}
	for _, r := range b.recordsOf(t, 2) {
		peaks[r.JobID] = r
	}
	big, small := peaks["big"], peaks["small"]
	if big.PeakSource != worker.SourceCgroupV1 && big.PeakSource != worker.SourceCgroupV2 {
		t.Fatalf("measured by %q, want the container's cgroup", big.PeakSource)
	}
	if big.PeakBytes < 256*mib {
		t.Errorf("the first job's peak %d MiB, want at least the 256 it allocated", big.PeakBytes/mib)
	}
	if small.PeakBytes >= 128*mib {
		t.Errorf("the second job's peak %d MiB (%s): it carries the first job's 256", small.PeakBytes/mib, small.PeakSource)
	}
	t.Logf("peaks: first %d MiB, second %d MiB, by %s", big.PeakBytes/mib, small.PeakBytes/mib, big.PeakSource)
}

// countingSQS passes calls to the real emulator and counts visibility
// extensions.
type countingSQS struct {
	worker.SQSAPI
	extensions atomic.Int32
}

func (c *countingSQS) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	out, err := c.SQSAPI.ChangeMessageVisibility(ctx, in, opts...)
	if err == nil && in.VisibilityTimeout > 0 {
		c.extensions.Add(1)
	}
	return out, err
}

// TestLeaseExtendsBeforeExpiry drives the worker's clock by hand: every
// third of the visibility timeout, the message's visibility is extended, so
// it never expires however long the job runs.
func TestLeaseExtendsBeforeExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.VisibilityTimeout = 30 * time.Second
	cfg.MaxRuntime = 24 * time.Hour
	clk := clocktesting.NewFakeClock(time.Now())
	counting := &countingSQS{SQSAPI: b.sqs.Client}
	b.publish(t, &jobfleet.Job{ID: "lease-1"})

	h := worker.HandlerFunc(func(ctx context.Context, job *worker.Job) error {
		// An hour of fake time: 360 extensions.
		for i := 1; i <= 360; i++ {
			clk.Step(10 * time.Second)
			testenv.Eventually(t, 10*time.Second, "an extension", func() bool { return counting.extensions.Load() >= int32(i) })
		}
		return nil
	})
	w, err := worker.New(cfg, counting, testenv.NewS3Client(b.s3.Endpoint), h, worker.WithClock(clk), worker.WithLogger(zerolog.New(zerolog.NewTestWriter(t))))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(t.Context()); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if got := counting.extensions.Load(); got != 360 {
		t.Errorf("%d extensions over an hour of 30s visibility, want 360", got)
	}
	b.recordsOf(t, 1)
	b.assertEmpty(t, b.class, "class")
}

// TestCheckpointDirIsAMountPoint: in a pod the checkpoint directory is an
// emptyDir volume's mount point, which cannot be removed: the worker
// empties it instead, and the job runs (here a tmpfs mounted for the test).
func TestCheckpointDirIsAMountPoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	if err := os.MkdirAll(cfg.CheckpointDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", cfg.CheckpointDir, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mounting a tmpfs as a pod's volume (the test needs root, as the memory tests do): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(cfg.CheckpointDir, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(cfg.CheckpointDir, "left-over"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.publish(t, &jobfleet.Job{ID: "mounted"})
	var files []os.DirEntry
	err := b.runHandler(t, t.Context(), cfg, worker.HandlerFunc(func(_ context.Context, j *worker.Job) error {
		files, _ = os.ReadDir(j.CheckpointDir)
		return nil
	}))
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	if len(files) != 0 {
		t.Errorf("the job found %d files in its checkpoint directory, want it emptied", len(files))
	}
	if rec := b.recordsOf(t, 1)[0]; rec.Outcome != jobfleet.OutcomeSucceeded {
		t.Errorf("run record = %+v", rec)
	}
}
