package worker_test

import (
	"cmp"
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/worker"
)

// sizedBy is how the dispatcher sized the tests' jobs: the model "m-1"'s
// type group, whose raise above 1.3 would give them a larger class.
var sizedBy = jobfleet.SizedBy{Source: "type", Level: "type", Model: "m-1", ResizeAbove: 1.3, PredictedBytes: 700 << 20, RequestBytes: 700 << 20}

// sized does what the dispatcher does with a job it sized into a class of
// memory bytes: it records the size with the run's attempt and forwards
// the job to the class queue.
func (b *bundle) sized(t *testing.T, job *jobfleet.Job, run string, attempt int, memory int64, by jobfleet.SizedBy) {
	t.Helper()
	if err := b.store.Sized(t.Context(), job.ID, run, attempt, contract.Sizing{Class: "c-test-cpu", Memory: memory, By: &by}, time.Now()); err != nil {
		t.Fatal(err)
	}
	body, err := jobfleet.Encode(job)
	if err != nil {
		t.Fatal(err)
	}
	b.send(t, b.class, queue.ForwardMessage(string(body), job.Type, run, attempt))
}

// raise publishes the dispatcher's raise of the tests' group under model.
func (b *bundle) raise(t *testing.T, model string, raise float64) {
	t.Helper()
	b.raiseGroup(t, model, contract.RaiseGroup(sizedBy.Level, sizedBy.Group, "test"), raise, time.Now())
}

// raiseGroup publishes, at the time given, the raise of one group.
func (b *bundle) raiseGroup(t *testing.T, model, group string, raise float64, at time.Time) {
	t.Helper()
	if err := b.store.WriteRaises(t.Context(), &contract.Raises{Model: model, At: at, Groups: map[string]float64{contract.RaiseKey(group): raise}}); err != nil {
		t.Fatal(err)
	}
}

// counting is a handler that counts the jobs it ran.
func counting(n *atomic.Int32) worker.Handler {
	return worker.HandlerFunc(func(context.Context, *worker.Job) error { n.Add(1); return nil })
}

// TestRaisedWhileWaitingGoesBackOnce: a job whose group's raise rose past
// the one that gives it a larger class while it waited is sent back to
// intake to be sized again, before it runs and without a run record or a
// retry spent, nor one of the attempts a run gets (here, one); sized
// again, it runs, even if the raise rose again, and its run record says
// what it was first given.
func TestRaisedWhileWaitingGoesBackOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.MemoryLimit = 1 << 30
	cfg.MaxTotalAttempts, cfg.MaxAttempts = 1, 1
	job := &jobfleet.Job{Version: jobfleet.Version, ID: "raised-1", Type: "test"}
	run := b.startRun(t, job)
	b.sized(t, job, run, 1, 1<<30, sizedBy)
	b.raise(t, "m-1", 1.35)

	var ran atomic.Int32
	if err := b.runHandler(t, t.Context(), cfg, counting(&ran)); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("the job ran %d times, want none: its group was raised past its class", n)
	}
	back := b.sentIn(t, b.intake, 1)[0]
	want := jobfleet.Attempt{Attempt: 1, Reason: jobfleet.ReasonResized, AllocatedBytes: 1 << 30}
	if back.Attempt != 2 || len(back.History) != 1 || back.History[0].Reason != want.Reason || back.History[0].AllocatedBytes != want.AllocatedBytes {
		t.Fatalf("sent back attempt %d with history %+v, want attempt 2 after %+v", back.Attempt, back.History, want)
	}
	if spent := back.History.RetriesSpent(); spent != 0 {
		t.Errorf("%d retries spent, want none", spent)
	}
	b.assertEmpty(t, b.records, "records")
	b.assertEmpty(t, b.class, "class")
	cur, _, err := b.store.ReadRun(t.Context(), job.ID)
	if err != nil || cur.Status != jobfleet.StatusQueued || cur.Attempt != 2 || len(cur.Attempts) != 1 || cur.Attempts[0].Outcome != jobfleet.OutcomeResized || cur.Attempts[0].AllocatedBytes != 1<<30 {
		t.Fatalf("job state %+v (%v), want attempt 2 queued after attempt 1 resized from 1Gi", cur, err)
	}

	// Sized again into 2Gi, and raised further meanwhile: it runs.
	b.raise(t, "m-1", 3)
	again := sizedBy
	again.ResizeAbove = 2.6
	b.sized(t, job, run, 2, 2<<30, again)
	cfg.MemoryLimit = 2 << 30
	if err := b.runHandler(t, t.Context(), cfg, counting(&ran)); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("the job ran %d times, want once: a run goes back once", n)
	}
	rec := b.recordsOf(t, 1)[0]
	if rec.Attempt != 2 || rec.Outcome != jobfleet.OutcomeSucceeded || rec.AllocatedBytes != 2<<30 || rec.ResizedFromBytes != 1<<30 {
		t.Errorf("run record %+v, want attempt 2 succeeded in 2Gi, resized from 1Gi", rec)
	}
	b.assertEmpty(t, b.intake, "intake")
}

// TestKeepsItsSize: a job runs with the size it was given when its group's
// raise has not passed the one that gives it a larger class (another
// group's has), when the raise is of another model than the one that
// sized it, when none was published lately or what was published cannot
// be read, when the dispatcher did not publish its raise (no
// resize_above), and when the sizing its state shows is for another class
// than the worker's.
func TestKeepsItsSize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		by      jobfleet.SizedBy
		publish func(t *testing.T, b *bundle)
		log     string
		memory  int64 // the worker's class, when not the job's 1Gi
	}{
		{name: "not past", by: sizedBy, publish: func(t *testing.T, b *bundle) { b.raise(t, "m-1", 1.3) }},
		{name: "another group", by: sizedBy, publish: func(t *testing.T, b *bundle) {
			b.raiseGroup(t, "m-1", contract.RaiseGroup(sizedBy.Level, "test, user=ana", "test"), 2, time.Now())
		}},
		{name: "another model", by: sizedBy, publish: func(t *testing.T, b *bundle) { b.raise(t, "m-2", 2) }},
		{name: "published long ago", by: sizedBy, log: "was last published too long ago", publish: func(t *testing.T, b *bundle) {
			b.raiseGroup(t, "m-1", contract.RaiseGroup(sizedBy.Level, sizedBy.Group, "test"), 2, time.Now().Add(-contract.MaxRaisesAge-time.Minute))
		}},
		{name: "another class", by: sizedBy, memory: 2 << 30, publish: func(t *testing.T, b *bundle) { b.raise(t, "m-1", 2) }},
		{name: "none published", by: sizedBy, publish: func(*testing.T, *bundle) {}},
		{name: "unreadable", by: sizedBy, log: "the dispatcher's raise after misses could not be read", publish: func(t *testing.T, b *bundle) {
			if _, err := b.store.S3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.store.RaisesKey()), Body: strings.NewReader("{not json")}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "not published", by: jobfleet.SizedBy{Source: "type", Level: "type", RequestBytes: 700 << 20}, publish: func(t *testing.T, b *bundle) { b.raise(t, "m-1", 4) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			job := &jobfleet.Job{Version: jobfleet.Version, ID: "keeps-1", Type: "test"}
			run := b.startRun(t, job)
			b.sized(t, job, run, 1, 1<<30, tt.by)
			tt.publish(t, b)
			var ran atomic.Int32
			var log testenv.Buffer
			cfg := b.cfg
			cfg.MemoryLimit = cmp.Or(tt.memory, 1<<30)
			w, err := worker.New(cfg, b.sqs.Client, testenv.NewS3Client(b.s3.Endpoint), counting(&ran),
				worker.WithLogger(zerolog.New(io.MultiWriter(&log, zerolog.NewTestWriter(t)))))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Run(t.Context()); err != nil {
				t.Fatalf("worker: %v", err)
			}
			if n := ran.Load(); n != 1 {
				t.Fatalf("the job ran %d times, want once with its size", n)
			}
			if rec := b.recordsOf(t, 1)[0]; rec.Attempt != 1 || rec.ResizedFromBytes != 0 {
				t.Errorf("run record %+v, want attempt 1, not resized", rec)
			}
			b.assertEmpty(t, b.intake, "intake")
			if tt.log != "" && !strings.Contains(log.String(), tt.log) {
				t.Errorf("the worker's log does not say %q", tt.log)
			}
		})
	}
}

// TestSentBackWithSQSDown: SQS becomes unreachable once the worker
// recorded that the job goes back: it cannot send it, and the message,
// back on the class queue, is finished by the next worker from the claim,
// which sends the job back without running it.
func TestSentBackWithSQSDown(t *testing.T) {
	t.Parallel()
	f := setupFaults(t)
	cfg := f.cfg
	cfg.MemoryLimit = 1 << 30
	cfg.VisibilityTimeout = 6 * time.Second
	job := &jobfleet.Job{Version: jobfleet.Version, ID: "raised-down", Type: "test"}
	run := f.startRun(t, job)
	f.sized(t, job, run, 1, 1<<30, sizedBy)
	f.raise(t, "m-1", 2)
	cfg.Hooks.State = func(_ string, _ int, s worker.State) {
		if s == worker.StateRecorded {
			f.sqsProxy.Down()
		}
	}
	var ran atomic.Int32
	if err := f.runProxied(t, t.Context(), cfg, counting(&ran)); err == nil {
		t.Fatal("the worker that could not send the job back returned no error")
	}
	f.sqsProxy.Up()
	if visible, inFlight := f.sqs.Depth(t, f.intake); visible+inFlight != 0 {
		t.Fatalf("intake holds %d messages while SQS was down, want none", visible+inFlight)
	}

	cfg.Hooks.State = nil
	cfg.IdleTimeout = 20 * time.Second
	if err := f.runHandler(t, t.Context(), cfg, counting(&ran)); err != nil {
		t.Fatalf("the worker finishing it: %v", err)
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("the job ran %d times, want none", n)
	}
	if back := f.sentIn(t, f.intake, 1)[0]; back.Attempt != 2 || len(back.History) != 1 || back.History[0].Reason != jobfleet.ReasonResized {
		t.Errorf("sent back attempt %d with history %+v, want attempt 2 after a resize", back.Attempt, back.History)
	}
	f.assertEmpty(t, f.intake, "intake")
	f.assertEmpty(t, f.records, "records")
	f.assertEmpty(t, f.class, "class")
}

// TestKeepsItsSizeWithS3Down: S3 becomes unreachable as the worker is
// about to read the published raise: the job keeps its size, and runs
// once S3 is back, once.
func TestKeepsItsSizeWithS3Down(t *testing.T) {
	t.Parallel()
	f := setupFaults(t)
	cfg := f.cfg
	cfg.MemoryLimit = 1 << 30
	job := &jobfleet.Job{Version: jobfleet.Version, ID: "raised-s3down", Type: "test"}
	run := f.startRun(t, job)
	f.sized(t, job, run, 1, 1<<30, sizedBy)
	f.raise(t, "m-1", 2) // raised past its class: with S3 up, it would go back
	cfg.Hooks.State = func(_ string, _ int, s worker.State) {
		if s == worker.StateClaimed {
			f.s3Proxy.Down()
			time.AfterFunc(3*time.Second, f.s3Proxy.Up)
		}
	}
	var ran atomic.Int32
	if err := f.runProxied(t, t.Context(), cfg, counting(&ran)); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("the job ran %d times, want once with the size it was given", n)
	}
	if rec := f.recordsOf(t, 1)[0]; rec.Attempt != 1 || rec.Outcome != jobfleet.OutcomeSucceeded || rec.ResizedFromBytes != 0 {
		t.Errorf("run record %+v, want attempt 1 succeeded, not resized", rec)
	}
	f.assertEmpty(t, f.intake, "intake")
	f.assertEmpty(t, f.class, "class")
}
