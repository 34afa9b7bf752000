package worker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/worker"
)

// faultBundle is a bundle whose worker reaches S3 and SQS through proxies
// the test can cut.
type faultBundle struct {
	*bundle
	s3Proxy, sqsProxy *testenv.Proxy
}

func setupFaults(t *testing.T) *faultBundle {
	t.Helper()
	b := setup(t)
	return &faultBundle{bundle: b, s3Proxy: testenv.NewProxy(t, b.s3.Endpoint), sqsProxy: testenv.NewProxy(t, b.sqs.Endpoint)}
}

// runProxied runs a worker whose clients go through the proxies.
func (f *faultBundle) runProxied(t *testing.T, ctx context.Context, cfg worker.Config, h worker.Handler) error {
	t.Helper()
	w, err := worker.New(cfg, testenv.NewSQSClient(f.sqsProxy.Endpoint), testenv.NewS3Client(f.s3Proxy.Endpoint), h, worker.WithLogger(zerolog.New(zerolog.NewTestWriter(t))))
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	return w.Run(ctx)
}

// TestSIGTERMWithS3DownRunsOnce: S3 becomes unreachable while a job runs
// and the pod is stopped. The worker cannot record the outcome, so it must
// not requeue the job: the attempt is taken over from its message, and the
// job succeeds exactly once.
func TestSIGTERMWithS3DownRunsOnce(t *testing.T) {
	t.Parallel()
	f := setupFaults(t)
	c := counter{log: filepath.Join(t.TempDir(), "count.log")}
	cfg := f.cfg
	cfg.CheckpointInterval = time.Second
	cfg.GracePeriod, cfg.UploadGrace = 6*time.Second, 3*time.Second
	cfg.VisibilityTimeout = 6 * time.Second
	job := &jobfleet.Job{ID: "s3down-1"}
	run := f.publishRun(t, job)

	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- f.runProxied(t, ctx, cfg, worker.Command(f.testjob, c.args(3000, 2*time.Millisecond)...))
	}()
	testenv.Eventually(t, 30*time.Second, "a periodic checkpoint", func() bool { return f.checkpointProgress(t, job.ID, run) > 0 })
	f.s3Proxy.Down()
	stop()
	<-done
	if visible, inFlight := f.sqs.Depth(t, f.intake); visible+inFlight != 0 {
		t.Fatalf("the worker requeued the job although it could not record the outcome")
	}
	f.s3Proxy.Up()

	// The message comes back once the stopped worker's lease expires, and
	// the attempt is taken over and finished.
	cfg.IdleTimeout = 20 * time.Second
	if err := f.run(t, t.Context(), cfg, c.args(3000, time.Millisecond)...); err != nil {
		t.Fatalf("the worker taking over: %v", err)
	}
	recs := f.recordsOf(t, 1)
	if recs[0].Outcome != jobfleet.OutcomeSucceeded || recs[0].Attempt != 1 || !recs[0].Resumed {
		t.Errorf("run record = %+v, want attempt 1 resumed and succeeded", recs[0])
	}
	if n := strings.Count(strings.Join(c.lines(t), " "), "done"); n != 1 {
		t.Errorf("the job finished %d times, want once: %v", n, c.lines(t))
	}
	f.assertEmpty(t, f.intake, "intake")
	f.assertEmpty(t, f.records, "records")
	f.assertEmpty(t, f.class, "class")
}

// TestSIGTERMWhileClaimingWithS3Down: a worker that cannot claim because
// S3 is unreachable stops at SIGTERM at once and hands its message back.
func TestSIGTERMWhileClaimingWithS3Down(t *testing.T) {
	t.Parallel()
	f := setupFaults(t)
	f.publish(t, &jobfleet.Job{ID: "claim-1"})
	f.s3Proxy.Down()
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	ran := false
	go func() {
		done <- f.runProxied(t, ctx, f.cfg, worker.HandlerFunc(func(context.Context, *worker.Job) error { ran = true; return nil }))
	}()
	testenv.Eventually(t, 30*time.Second, "the worker to hold the message", func() bool {
		visible, inFlight := f.sqs.Depth(t, f.class)
		return visible == 0 && inFlight == 1
	})
	time.Sleep(time.Second) // let it fail to claim a few times
	stopped := time.Now()
	stop()
	if err := <-done; err != nil {
		t.Errorf("a worker stopped while claiming: %v", err)
	}
	if took := time.Since(stopped); took > 3*time.Second {
		t.Errorf("the worker took %v to stop while claiming", took)
	}
	if ran {
		t.Error("the job ran without a claim")
	}
	if visible, _ := f.sqs.Depth(t, f.class); visible != 1 {
		t.Errorf("the message was not handed back: %d visible", visible)
	}
}

// TestLostHoldStopsTheJob: a worker that can renew neither its message's
// visibility nor its claim for most of a visibility timeout stops its job
// and records nothing: another worker may take the attempt over.
func TestLostHoldStopsTheJob(t *testing.T) {
	t.Parallel()
	f := setupFaults(t)
	cfg := f.cfg
	cfg.VisibilityTimeout = 3 * time.Second
	f.publish(t, &jobfleet.Job{ID: "lost-1"})
	var cause error
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- f.runProxied(t, t.Context(), cfg, worker.HandlerFunc(func(ctx context.Context, _ *worker.Job) error {
			close(started)
			<-ctx.Done()
			cause = context.Cause(ctx)
			return ctx.Err()
		}))
	}()
	<-started
	f.s3Proxy.Down()
	f.sqsProxy.Down()
	err := <-done
	if !errors.Is(err, worker.ErrLostAttempt) || !errors.Is(cause, worker.ErrLostAttempt) {
		t.Fatalf("worker error %v, handler cause %v; want both ErrLostAttempt", err, cause)
	}
	f.s3Proxy.Up()
	f.sqsProxy.Up()
	f.assertEmpty(t, f.intake, "intake")
	f.assertEmpty(t, f.records, "records")
}

// TestLateStopNoticeShortensTheStop: the interruption controller announced
// that the pod goes in 4 seconds, although its grace period is 40: the
// worker plans its stop for the announced deadline, and the final
// checkpoint and the requeue make it in time.
func TestLateStopNoticeShortensTheStop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.Pod, cfg.PodNamespace = "late-pod", "jobs"
	cfg.GracePeriod, cfg.UploadGrace = 40*time.Second, 20*time.Second
	job := &jobfleet.Job{ID: "late-1"}
	run := b.publishRun(t, job)
	ctx, stop := context.WithCancel(t.Context())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.runHandler(t, ctx, cfg, worker.HandlerFunc(func(jctx context.Context, j *worker.Job) error {
			close(started)
			<-jctx.Done()
			// Save progress, as a job that got SIGTERM does, and stop.
			if err := os.WriteFile(filepath.Join(j.CheckpointDir, "progress"), []byte("7"), 0o644); err != nil {
				return err
			}
			return jctx.Err()
		}))
	}()
	<-started
	notice := &contract.StopNotice{Kind: "spot-interruption", Deadline: time.Now().Add(4 * time.Second), InstanceType: "m7i.large", Zone: "us-east-1b", CapacityType: "spot"}
	if err := b.store.WriteStopNotice(t.Context(), "jobs", "late-pod", notice); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("worker: %v", err)
	}
	if took := time.Since(stopped); took > 4*time.Second {
		t.Errorf("the worker took %v to stop; the pod was to be killed after 4s", took)
	}
	rerun := b.sentIn(t, b.intake, 1)[0]
	h := rerun.History
	if len(h) != 1 || h[0].Reason != jobfleet.ReasonInterrupted || h[0].InstanceType != "m7i.large" || h[0].Zone != "us-east-1b" || h[0].Checkpoint == "" {
		t.Errorf("history = %+v, want an interruption on m7i.large in us-east-1b with a checkpoint", h)
	}
	if got := b.checkpointProgress(t, job.ID, run); got != 7 {
		t.Errorf("final checkpoint holds %d, want the progress saved at the stop", got)
	}
}

// TestPanicFailsTheAttempt: a Go handler that panics fails its attempt,
// which spends a retry; the worker goes on.
func TestPanicFailsTheAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, &jobfleet.Job{ID: "panic-1"})
	err := b.runHandler(t, t.Context(), b.cfg, worker.HandlerFunc(func(context.Context, *worker.Job) error {
		panic("the handler broke")
	}))
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	rec := b.recordsOf(t, 1)[0]
	if rec.Outcome != jobfleet.OutcomeFailed || !strings.Contains(rec.Error, "panic: the handler broke") {
		t.Errorf("run record = %+v, want a failure naming the panic", rec)
	}
	if h := b.sentIn(t, b.intake, 1)[0].History; len(h) != 1 || h.RetriesSpent() != 1 {
		t.Errorf("history = %+v, want one failed attempt", h)
	}
}

// TestReusedIDStartsFromNothing: a job id whose run ended is used again:
// the new run starts empty, not from the old run's checkpoint.
func TestReusedIDStartsFromNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.publishRun(t, &jobfleet.Job{ID: "nightly"})
	write := worker.HandlerFunc(func(_ context.Context, j *worker.Job) error {
		return os.WriteFile(filepath.Join(j.CheckpointDir, "state"), []byte("run one"), 0o644)
	})
	cfg := b.cfg
	cfg.CheckpointInterval = time.Second
	if err := b.runHandler(t, t.Context(), cfg, worker.HandlerFunc(func(ctx context.Context, j *worker.Job) error {
		if err := write(ctx, j); err != nil {
			return err
		}
		stop := time.Now().Add(5 * time.Second)
		for b.checkpointProgress(t, "nightly", first) == -1 && time.Now().Before(stop) {
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	b.recordsOf(t, 1)
	second := b.publishRun(t, &jobfleet.Job{ID: "nightly"})
	if second == first {
		t.Fatal("the same run twice")
	}
	var resumed bool
	var files []os.DirEntry
	if err := b.runHandler(t, t.Context(), b.cfg, worker.HandlerFunc(func(_ context.Context, j *worker.Job) error {
		resumed = j.Resumed
		files, _ = os.ReadDir(j.CheckpointDir)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if resumed || len(files) != 0 {
		t.Errorf("the new run resumed = %v with %d files, want an empty start", resumed, len(files))
	}
}

// TestForgedAttemptIsDeadLettered: a message on a class queue that claims
// to be attempt 3 of a run jobfleet's records do not show never runs.
func TestForgedAttemptIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run := b.startRun(t, &jobfleet.Job{Version: 1, ID: "forged", Type: "test"})
	body, _ := jobfleet.Encode(&jobfleet.Job{Version: 1, ID: "forged", Type: "test"})
	b.send(t, b.class, queue.ForwardMessage(string(body), "test", run, 3))
	ran := false
	if err := b.runHandler(t, t.Context(), b.cfg, worker.HandlerFunc(func(context.Context, *worker.Job) error { ran = true; return nil })); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatal("a forged attempt ran")
	}
	msgs := b.sqs.Receive(t, b.dead, 1, true)
	if reason := aws.ToString(msgs[0].MessageAttributes[jobfleet.AttrError].StringValue); !strings.Contains(reason, "not a rerun jobfleet made") {
		t.Errorf("dead letter reason %q", reason)
	}
}
