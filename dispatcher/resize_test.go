package dispatcher

import (
	"context"
	"maps"
	"math"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/predictor"
	"github.com/jobfleet/jobfleet/worker"
)

// TestRaisedWhileWaitingIsSizedAgain: a job sized into 2Gi waits in its
// class queue while OOM kills in its group raise the group past the raise
// that gives it a larger class; the leader publishes the raise, the worker
// that takes the job sends it back without running it, the dispatcher
// sizes it again into 4Gi, and there it runs once, its run record saying
// what it was first given; through the real SQS emulator, S3 and a real
// worker.
func TestRaisedWhileWaitingIsSizedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recordsURL := b.sqs.CreateQueue(t, "records-", nil)
	models := &swappableModels{}
	model := constantModelAt(map[string]float64{"export": 1.5 * gib}, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
	models.m.Store(model)
	cfg := b.cfg
	cfg.RaisesInterval = 100 * time.Millisecond
	d, stop := b.start(t, cfg, WithModels(models), WithRecords(b.s3.Client,
		RecordsConfig{URL: recordsURL, Bucket: cfg.Bucket, Prefix: "jobfleet", FlushSize: 10, FlushEvery: 200 * time.Millisecond, RaiseReadEvery: 100 * time.Millisecond},
		RetrainConfig{}))
	defer stop()

	job := &jobfleet.Job{Version: 1, ID: "waits", Type: "export", Features: map[string]float64{"rows": 1}}
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	small := b.prefix + "-export-cpu-2gi"
	var by *jobfleet.SizedBy
	testenv.Eventually(t, 30*time.Second, "the job to be sized", func() bool {
		cur, _, err := b.store.ReadRun(t.Context(), job.ID)
		if err != nil || cur.Status != jobfleet.StatusSized {
			return false
		}
		by = cur.SizedBy
		return cur.Class == small
	})
	if by.Model != modelID(model) || math.Abs(by.ResizeAbove-2.0/1.5) > 1e-9 {
		t.Fatalf("sized %+v, want by model %s, to be sized again above a raise of %v", by, modelID(model), 2.0/1.5)
	}

	// Ten OOM kills in its group: 1.5Gi * e^(10 * 0.05 * 0.9) = 2.35Gi.
	sendRecords(t, b, recordsURL, "killed", 10)
	var raises *contract.Raises
	testenv.Eventually(t, 90*time.Second, "the leader to publish the group's raise", func() bool {
		var err error
		raises, err = b.store.ReadRaises(t.Context())
		return err == nil && len(raises.Groups) == 1
	})
	if raises.Model != by.Model {
		t.Fatalf("published the raise of model %s, want %s", raises.Model, by.Model)
	}
	if got := raises.Groups[contract.RaiseKey(contract.RaiseGroup(by.Level, by.Group, "export"))]; math.Abs(got-math.Exp(0.45)) > 1e-9 {
		t.Fatalf("published raise %v for the job's group, want %v (%+v)", got, math.Exp(0.45), raises.Groups)
	}
	// Unchanged, it is written again now and then, so that workers can
	// tell a leader that stopped publishing.
	testenv.Eventually(t, 30*time.Second, "the unchanged raise to be written again", func() bool {
		again, err := b.store.ReadRaises(t.Context())
		return err == nil && again.At.After(raises.At) && maps.Equal(again.Groups, raises.Groups)
	})

	var ran atomic.Int32
	work := func(class string, memory int64) {
		t.Helper()
		wcfg := worker.Config{
			QueueURL: b.classURL(t, class), IntakeURL: b.intake, DeadLetterURL: b.dead, RecordsURL: recordsURL,
			Bucket: cfg.Bucket, Prefix: "jobfleet", JobType: "export", MemoryLimit: memory,
			CheckpointDir: filepath.Join(t.TempDir(), "checkpoint"), WorkDir: t.TempDir(), Cgroup: worker.CgroupOff,
			ReasonFile: filepath.Join(t.TempDir(), "reason"), IdleTimeout: 5 * time.Second, VisibilityTimeout: 30 * time.Second,
		}
		h := worker.HandlerFunc(func(context.Context, *worker.Job) error { ran.Add(1); return nil })
		w, err := worker.New(wcfg, b.sqs.Client, b.s3.Client, h, worker.WithLogger(zerolog.New(zerolog.NewTestWriter(t))))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Run(t.Context()); err != nil {
			t.Fatalf("worker of %s: %v", class, err)
		}
	}
	work(small, 2*gib)
	if n := ran.Load(); n != 0 {
		t.Fatalf("the job ran %d times in 2Gi, want none: it was sent back", n)
	}
	large := b.prefix + "-export-cpu-4gi"
	testenv.Eventually(t, 30*time.Second, "the job to be sized again", func() bool {
		cur, _, err := b.store.ReadRun(t.Context(), job.ID)
		return err == nil && cur.Attempt == 2 && cur.Status == jobfleet.StatusSized
	})
	cur, _, err := b.store.ReadRun(t.Context(), job.ID)
	if err != nil || cur.Class != large || len(cur.Attempts) != 1 || cur.Attempts[0].Outcome != jobfleet.OutcomeResized || cur.SizedBy.Raise != raises.Groups[contract.RaiseKey(contract.RaiseGroup(by.Level, by.Group, "export"))] {
		t.Fatalf("job state %+v (%v), want attempt 2 sized into %s with the raise, after attempt 1 resized", cur, err, large)
	}
	work(large, 4*gib)
	if n := ran.Load(); n != 1 {
		t.Fatalf("the job ran %d times, want once", n)
	}
	testenv.Eventually(t, 30*time.Second, "the job to succeed", func() bool {
		cur, _, err := b.store.ReadRun(t.Context(), job.ID)
		return err == nil && cur.Status == jobfleet.StatusSucceeded
	})
	// Its record reached the dispatcher and was stored, with what the job
	// was first given.
	testenv.Eventually(t, 90*time.Second, "the job's run record to be stored", func() bool {
		return testutil.ToFloat64(d.metrics.records.WithLabelValues("stored")) >= 11
	})
	ds, _, err := predictor.LoadRecords(t.Context(), b.s3.Client, "s3://"+cfg.Bucket+"/"+RecordsPrefix("jobfleet")+"/", 0, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var resized []float64
	for _, s := range ds.Samples {
		if s.ResizedFrom > 0 {
			resized = append(resized, s.ResizedFrom, s.Allocated)
		}
	}
	if len(resized) != 2 || resized[0] != 2*gib || resized[1] != 4*gib {
		t.Errorf("stored records of resized runs (first size, allocated): %v, want one of 2Gi then 4Gi", resized)
	}
	for _, class := range []string{small, large} {
		if visible, inFlight := b.sqs.Depth(t, b.classURL(t, class)); visible+inFlight != 0 {
			t.Errorf("class %s still holds %d messages", class, visible+inFlight)
		}
	}
}

// TestRaiseLearnsFromTheFirstSize: the raise after misses counts a run
// that was sized again before it started by the size it was first given,
// whether read from its record as it lands or replayed from the stored
// records at a retraining: the raise learns from the sizes it gives, and
// sizing again only adds to them.
func TestRaiseLearnsFromTheFirstSize(t *testing.T) {
	t.Parallel()
	d := &Dispatcher{cfg: Config{Registry: registry(t)}}
	for _, tt := range []struct {
		name        string
		resizedFrom int64
		peak        int64
		missed      bool
	}{
		{name: "not resized, fits", peak: 3 * gib},
		{name: "resized, above its first size", resizedFrom: 2 * gib, peak: 3 * gib, missed: true},
		{name: "resized, within its first size", resizedFrom: 2 * gib, peak: gib},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &jobfleet.RunRecord{
				JobID: "j", Type: "export", Attempt: 2, Outcome: jobfleet.OutcomeSucceeded, Features: map[string]float64{"rows": 1},
				AllocatedBytes: 4 * gib, PeakBytes: tt.peak, PredictedBytes: 2 * gib, ResizedFromBytes: tt.resizedFrom,
				StartedAt: time.Now().Add(-time.Minute), EndedAt: time.Now(),
			}
			run, ok := d.raiseRun(rec)
			if !ok || run.Missed != tt.missed {
				t.Errorf("as it lands: counted %v, missed %v, want counted, missed %v", ok, run.Missed, tt.missed)
			}
			prev := constantModelAt(map[string]float64{"export": 1.5 * gib}, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
			replayed := d.raiseRuns(prev, predictor.RecordsDataset([]*jobfleet.RunRecord{rec}))
			if len(replayed) != 1 || replayed[0].Missed != tt.missed {
				t.Errorf("replayed: %+v, want one run, missed %v", replayed, tt.missed)
			}
		})
	}
}

// TestSensorKeepsTheFirstSizeOfAResizedRun: when the pod of the attempt
// that follows a resize dies of an OOM kill, the record the leader's
// sensor writes for it carries the class the run was first given, as the
// worker's own records do.
func TestSensorKeepsTheFirstSizeOfAResizedRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, c, stop := b.sensorClaim(t, "resized-oomer")
	defer stop()
	// The run's history, as the attempt was claimed: an attempt sent
	// back from 512Mi to be sized again.
	cur, etag, err := b.store.ReadClaim(t.Context(), c.JobID, c.Run, c.Attempt)
	if err != nil {
		t.Fatal(err)
	}
	cur.History = jobfleet.History{{Attempt: 0, Reason: jobfleet.ReasonResized, AllocatedBytes: 512 << 20}}
	if _, err := b.store.Update(t.Context(), cur, etag); err != nil {
		t.Fatal(err)
	}
	b.oomKill(t, client, "p-1")
	var ended *contract.Claim
	testenv.Eventually(t, time.Minute, "the sensor to end the attempt", func() bool {
		ended, _, err = b.store.ReadClaim(t.Context(), c.JobID, c.Run, c.Attempt)
		return err == nil && ended.State == contract.ClaimEnded
	})
	if ended.Record == nil || ended.Record.Outcome != jobfleet.OutcomeOOM || ended.Record.ResizedFromBytes != 512<<20 {
		t.Errorf("the OOM kill's record: %+v; want an OOM kill resized from 512Mi", ended.Record)
	}
}
