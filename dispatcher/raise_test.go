package dispatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/predictor"
)

// swappableModels is a model source whose model a test replaces, as the
// reloader does when a retraining writes a new one.
type swappableModels struct {
	m atomic.Pointer[predictor.Model]
}

func (s *swappableModels) Model() *predictor.Model { return s.m.Load() }

// TestOOMKillsRaiseTheirGroupUntilTheNextModel: run records of OOM kills
// that reach the dispatcher raise the sizes of their group's next jobs
// above the model's, through the real SQS emulator and S3, and records of
// runs that fit bring them back down; the forwarded job carries the class
// the model alone gives it; records of runs the model did not size so
// (reruns sized by their OOM history, other outcomes) move nothing; a new
// model that carries no raise (here, one stored by hand) starts again from
// its own sizes, and runs the old one sized differently do not raise it.
// (A retraining carries half the raise: TestRunRecordsAreStoredAndRetrainFromThem.)
func TestOOMKillsRaiseTheirGroupUntilTheNextModel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recordsURL := b.sqs.CreateQueue(t, "records-", nil)
	models := &swappableModels{}
	models.m.Store(constantModel(map[string]float64{"export": 1.5 * gib}))
	d, stop := b.start(t, b.cfg, WithModels(models), WithRecords(b.s3.Client,
		RecordsConfig{URL: recordsURL, Bucket: b.cfg.Bucket, Prefix: "jobfleet", FlushSize: 10, FlushEvery: 200 * time.Millisecond, RaiseReadEvery: 100 * time.Millisecond},
		RetrainConfig{}))
	defer stop()

	alone := strconv.FormatInt(2*gib, 10) // the model's 1.5Gi, in its class
	// dispatch publishes one export job and checks the class it lands
	// in, and the model's size its forwarded message carries; it returns
	// how the job's state says it was sized.
	dispatch := func(id, want string) *jobfleet.SizedBy {
		t.Helper()
		job := &jobfleet.Job{Version: 1, ID: id, Type: "export", Features: map[string]float64{"rows": 1}}
		if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), job); err != nil {
			t.Fatal(err)
		}
		var landed string
		var msg sqstypes.Message
		testenv.Eventually(t, 30*time.Second, "job "+id+" to land in a class queue", func() bool {
			for _, size := range []string{"2gi", "4gi"} {
				class := b.prefix + "-export-cpu-" + size
				out, err := b.sqs.Client.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(class)})
				if err != nil {
					continue
				}
				got, err := b.sqs.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: out.QueueUrl, MessageAttributeNames: []string{"All"}})
				if err != nil || len(got.Messages) == 0 {
					continue
				}
				msg, landed = got.Messages[0], class
				if _, err := b.sqs.Client.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: out.QueueUrl, ReceiptHandle: msg.ReceiptHandle}); err != nil {
					t.Fatal(err)
				}
				return true
			}
			return false
		})
		if got, err := jobfleet.Decode([]byte(aws.ToString(msg.Body))); err != nil || got.ID != id {
			t.Fatalf("class %s holds %v (%v), want job %s", landed, got, err, id)
		}
		if landed != b.prefix+"-export-cpu-"+want {
			t.Errorf("job %s landed in %s, want the %s class", id, landed, want)
		}
		if got := aws.ToString(msg.MessageAttributes[AttrPredicted].StringValue); got != alone {
			t.Errorf("job %s carries the model's class %s, want %s", id, got, alone)
		}
		cur, _, err := b.store.ReadRun(t.Context(), id)
		if err != nil || cur.SizedBy == nil || cur.SizedBy.Source != string(predictor.SourceType) {
			t.Fatalf("job %s's state %+v (%v): want it sized by the type's estimator", id, cur, err)
		}
		return cur.SizedBy
	}
	stored, read := 0.0, 0.0
	// send sends n run records of export runs, allocated 2Gi and sized
	// from the model's class predicted, with that outcome and peak, and
	// waits until the dispatcher stored them and its raise read them
	// back, of attempts not read before: new.
	send := func(prefix string, n int, outcome jobfleet.Outcome, peak, predicted int64, new bool) {
		t.Helper()
		for i := range n {
			rec := jobfleet.RunRecord{
				JobID: fmt.Sprintf("%s-%d", prefix, i), Type: "export", Attempt: 1, Outcome: outcome,
				AllocatedBytes: 2 * gib, PeakBytes: peak, PredictedBytes: predicted, Features: map[string]float64{"rows": 1},
				StartedAt: time.Now().UTC().Add(-time.Minute), EndedAt: time.Now().UTC(),
			}
			data, _ := json.Marshal(rec)
			if _, err := b.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(recordsURL), MessageBody: aws.String(string(data))}); err != nil {
				t.Fatal(err)
			}
		}
		stored += float64(n)
		// Under a loaded machine a hundred records take a while.
		testenv.Eventually(t, 90*time.Second, "the records to be stored", func() bool {
			return testutil.ToFloat64(d.metrics.records.WithLabelValues("stored")) >= stored
		})
		if got := testutil.ToFloat64(d.metrics.records.WithLabelValues("stored")); got != stored {
			t.Fatalf("%v records stored, want %v", got, stored)
		}
		readBack(t, d)
		if new {
			read += float64(n)
		}
		if got := testutil.ToFloat64(d.metrics.raiseRecords); got != read {
			t.Errorf("the raise read %v records, want %v", got, read)
		}
	}

	// The model's 1.5Gi rounds up to the 2Gi class.
	if by := dispatch("first", "2gi"); by.Raise != 0 || by.PredictedBytes != 1.5*gib || by.RequestBytes != 1.5*gib {
		t.Errorf("first job sized %+v, want the model's 1.5Gi, not raised", by)
	}
	// Kills of reruns sized by their OOM history (no model class) tell
	// nothing of the model's sizes.
	send("rerun", 10, jobfleet.OutcomeOOM, 2*gib, 0, true)
	if got := testutil.ToFloat64(d.metrics.raisedGroups); got != 0 {
		t.Errorf("raised groups %v after reruns' kills, want 0", got)
	}
	dispatch("not-raised", "2gi")
	// Ten OOM kills since: 1.5Gi * e^(10 * 0.05 * 0.9) = 2.35Gi, in 4Gi
	// (twenty would be 3.69Gi).
	send("killed", 10, jobfleet.OutcomeOOM, 2*gib, 2*gib, true)
	// The same records delivered again count once.
	send("killed", 10, jobfleet.OutcomeOOM, 2*gib, 2*gib, false)
	if got := testutil.ToFloat64(d.metrics.raisedGroups); got != 1 {
		t.Errorf("raised groups %v, want 1", got)
	}
	// The job's state says why: the model's 1.5Gi, raised.
	if by := dispatch("after-kills", "4gi"); math.Abs(by.Raise-math.Exp(0.45)) > 1e-9 || by.PredictedBytes != 1.5*gib ||
		by.RequestBytes != (int64(math.Ceil(1.5*gib*by.Raise))+mib-1)/mib*mib {
		t.Errorf("after the kills, sized %+v, want the model's 1.5Gi raised x%.4f", by, math.Exp(0.45))
	}
	// Nor do runs that failed, or succeeded without a peak: a hundred
	// fits would have brought it down to 2Gi.
	send("failed", 100, jobfleet.OutcomeFailed, gib, 2*gib, true)
	send("no-peak", 100, jobfleet.OutcomeSucceeded, 0, 2*gib, true)
	dispatch("after-failures", "4gi")
	// Runs that fit bring it down by 0.05 * 0.1 each: after 60, 1.5Gi *
	// e^(0.45 - 0.3) = 1.74Gi, in 2Gi again.
	send("fit", 60, jobfleet.OutcomeSucceeded, gib, 2*gib, true)
	dispatch("after-fits", "2gi")

	// A new model has learned from those runs: its sizes stand. Kills of
	// runs the old one sized, in another class, do not raise it.
	models.m.Store(constantModelAt(map[string]float64{"export": 3 * gib}, time.Now(), time.Now()))
	alone = strconv.FormatInt(4*gib, 10)
	// The runs stored before it was trained are not read again for it.
	readBack(t, d)
	if got := testutil.ToFloat64(d.metrics.raiseRecords); got != read {
		t.Errorf("the raise read %v records once the new model loaded, want %v: none again", got, read)
	}
	dispatch("new-model", "4gi")
	if got := testutil.ToFloat64(d.metrics.raisedGroups); got != 0 {
		t.Errorf("raised groups %v once the new model sized a job, want 0", got)
	}
	send("old-model", 20, jobfleet.OutcomeOOM, 2*gib, 2*gib, true)
	dispatch("old-model-records", "4gi")
	if got := testutil.ToFloat64(d.metrics.raisedGroups); got != 0 {
		t.Errorf("raised groups %v after the new model, want 0", got)
	}
}

// readBack waits until d's raise after misses has read back every run
// record stored before it was called.
func readBack(t *testing.T, d *Dispatcher) {
	t.Helper()
	// Ready first: a raise reader says, as it starts, that it has read
	// until then, before its first read.
	testenv.Eventually(t, 90*time.Second, "the dispatcher to be ready", d.ready.Load)
	since := float64(time.Now().UnixNano()) / 1e9
	testenv.Eventually(t, 90*time.Second, "the raise to read back the stored records", func() bool {
		return testutil.ToFloat64(d.metrics.raiseReadUntil) >= since
	})
}

// exportJob is the job the tests' records describe: an export of one row.
var exportJob = predictor.Job{Type: "export", Pool: "cpu", Features: map[string]float64{"rows": 1}}

// sendRecords sends n run records of export runs that the model sized at
// 2Gi and were OOM-killed, with ids prefix-0 to prefix-n-1.
func sendRecords(t *testing.T, b *bundle, url, prefix string, n int) {
	t.Helper()
	for i := range n {
		rec := jobfleet.RunRecord{
			JobID: fmt.Sprintf("%s-%d", prefix, i), Type: "export", Attempt: 1, Outcome: jobfleet.OutcomeOOM,
			AllocatedBytes: 2 * gib, PeakBytes: 2 * gib, PredictedBytes: 2 * gib, Features: exportJob.Features,
			StartedAt: time.Now().UTC().Add(-time.Minute), EndedAt: time.Now().UTC(),
		}
		data, _ := json.Marshal(rec)
		if _, err := b.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(string(data))}); err != nil {
			t.Fatal(err)
		}
	}
}

// raiseOf is the raise d sizes an export job with now.
func raiseOf(d *Dispatcher) float64 { return max(d.model().Predict(exportJob).Raise, 1) }

// TestRaiseReadsEveryReplicasRecords: the raise after misses learns from
// the runs every replica stored, not only its own share; a replica that
// starts raises as the others do from its first job, from the runs stored
// since its model's runs were read; through the real SQS emulator and S3.
func TestRaiseReadsEveryReplicasRecords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	read := time.Now() // the model's runs were read before the kills
	replicaVia := func(records string, m *predictor.Model, s3api RecordsS3API) (*Dispatcher, func()) {
		return b.start(t, b.cfg, WithModels(staticModels{m}), WithRecords(s3api,
			RecordsConfig{URL: records, Bucket: b.cfg.Bucket, Prefix: "jobfleet", FlushSize: 10, FlushEvery: 200 * time.Millisecond, RaiseReadEvery: 100 * time.Millisecond},
			RetrainConfig{}))
	}
	replica := func(records string, m *predictor.Model) (*Dispatcher, func()) {
		return replicaVia(records, m, b.s3.Client)
	}
	model := constantModelAt(map[string]float64{"export": 1.5 * gib}, read, read)
	// One replica consumes every record; the other none.
	recordsURL := b.sqs.CreateQueue(t, "records-", nil)
	consumer, stopConsumer := replica(recordsURL, model)
	other, stopOther := replica(b.sqs.CreateQueue(t, "records-", nil), model)
	defer stopOther()

	// Ten kills, and one in a file named before the model's runs were
	// read that landed after (the model did not learn from it):
	// 1.5Gi * e^(11 * 0.05 * 0.9) on both.
	sendRecords(t, b, recordsURL, "killed", 10)
	testenv.Eventually(t, 30*time.Second, "the records to be stored", func() bool {
		return testutil.ToFloat64(consumer.metrics.records.WithLabelValues("stored")) == 10
	})
	landedLate, _ := json.Marshal(jobfleet.RunRecord{
		JobID: "landed-late", Type: "export", Attempt: 1, Outcome: jobfleet.OutcomeOOM,
		AllocatedBytes: 2 * gib, PeakBytes: 2 * gib, PredictedBytes: 2 * gib, Features: exportJob.Features,
		StartedAt: read.UTC().Add(-time.Minute), EndedAt: read.UTC().Add(-2 * time.Second),
	})
	if _, err := b.s3.Client.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(b.cfg.Bucket), Key: aws.String(recordsName("jobfleet", read.Add(-time.Second)) + "-late.jsonl"), Body: bytes.NewReader(landedLate),
	}); err != nil {
		t.Fatal(err)
	}
	readBack(t, consumer)
	readBack(t, other)
	want := math.Exp(11 * 0.05 * 0.9)
	for name, d := range map[string]*Dispatcher{"the replica that stored them": consumer, "the other replica": other} {
		if got := raiseOf(d); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s raises export jobs x%.4f, want x%.4f", name, got, want)
		}
	}
	if got := testutil.ToFloat64(other.metrics.records.WithLabelValues("stored")); got != 0 {
		t.Fatalf("the other replica stored %v records, want none", got)
	}
	stopConsumer()

	// A replica that starts now: from the moment it dispatches, it
	// raises as the others do, and it waits to dispatch while it cannot
	// read the records (up to a minute). So does one whose model was
	// trained after the kills from runs read before them.
	later := constantModelAt(map[string]float64{"export": 1.5 * gib}, time.Now(), read)
	for name, m := range map[string]*predictor.Model{"a restarted replica": model, "a replica with a model trained since": later} {
		proxy := testenv.NewProxy(t, b.s3.Endpoint)
		proxy.Down()
		d, stop := replicaVia(recordsURL, m, testenv.NewS3Client(proxy.Endpoint))
		testenv.Eventually(t, 30*time.Second, name+" to try reading the records", func() bool { return proxy.Dropped.Load() > 0 })
		if d.Ready() {
			t.Errorf("%s dispatches before it could read the records", name)
		}
		proxy.Up()
		testenv.Eventually(t, 30*time.Second, name+" to dispatch", d.Ready)
		if got := raiseOf(d); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s raises export jobs x%.4f as it starts dispatching, want x%.4f", name, got, want)
		}
		if got := testutil.ToFloat64(d.metrics.raiseRecords); got != 11 {
			t.Errorf("%s read %v records back, want 11", name, got)
		}
		stop()
	}

	// With a model whose runs were read after them, they raise nothing:
	// the model learned from them. So with a model that only says when it
	// was trained.
	for name, m := range map[string]*predictor.Model{
		"runs read after the kills": constantModelAt(map[string]float64{"export": 1.5 * gib}, time.Now(), time.Now()),
		"trained after the kills":   constantModelAt(map[string]float64{"export": 1.5 * gib}, time.Now(), time.Time{}),
	} {
		d, stop := replica(recordsURL, m)
		testenv.Eventually(t, 30*time.Second, "a replica with a model of "+name+" to dispatch", d.Ready)
		if got := raiseOf(d); got != 1 {
			t.Errorf("with a model of %s, export jobs are raised x%.4f, want not at all", name, got)
		}
		stop()
	}
}

// TestRaiseReadsRecordsStoredWhileS3WasDown: records another replica
// stored while this one could not reach S3, for longer than a file may
// land late, raise its sizes once it can; a record stored twice (in two
// replicas' files) counts once; a file that lands late is read.
func TestRaiseReadsRecordsStoredWhileS3WasDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	proxy := testenv.NewProxy(t, b.s3.Endpoint)
	trained := time.Now().Add(-5 * time.Minute)
	models := staticModels{constantModelAt(map[string]float64{"export": 1.5 * gib}, trained, trained)}
	const lateness = 2 * time.Second
	d, stop := b.start(t, b.cfg, WithModels(models), WithRecords(testenv.NewS3Client(proxy.Endpoint),
		RecordsConfig{URL: b.sqs.CreateQueue(t, "records-", nil), Bucket: b.cfg.Bucket, Prefix: "jobfleet", RaiseReadEvery: 100 * time.Millisecond},
		RetrainConfig{}), func(d *Dispatcher) { d.raiseLateness, d.raiseMaxFile = lateness, 8<<10 })
	defer stop()
	readBack(t, d)

	proxy.Down()
	down := testutil.ToFloat64(d.metrics.raiseReadUntil)
	// Another replica stores ten kills, twice, in two files.
	var lines bytes.Buffer
	for i := range 10 {
		rec := jobfleet.RunRecord{
			JobID: fmt.Sprintf("killed-%d", i), Type: "export", Attempt: 1, Outcome: jobfleet.OutcomeOOM,
			AllocatedBytes: 2 * gib, PeakBytes: 2 * gib, PredictedBytes: 2 * gib, Features: exportJob.Features,
			StartedAt: time.Now().UTC().Add(-time.Minute), EndedAt: time.Now().UTC(),
		}
		data, _ := json.Marshal(rec)
		lines.Write(append(data, '\n'))
	}
	stored := time.Now()
	put := func(key string, body []byte) {
		t.Helper()
		if _, err := b.s3.Client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	put(recordsName("jobfleet", stored)+"-a.jsonl", lines.Bytes())
	put(recordsName("jobfleet", stored)+"-b.jsonl", lines.Bytes())
	// The raise keeps trying while S3 stays down past the lateness.
	dropped := int64(-1)
	testenv.Eventually(t, 30*time.Second, "the raise to try S3 while it is down, past the lateness", func() bool {
		if time.Since(stored) < 2*lateness {
			return false
		}
		if dropped < 0 {
			dropped = proxy.Dropped.Load()
			return false
		}
		return proxy.Dropped.Load() > dropped
	})
	if got := raiseOf(d); got != 1 {
		t.Errorf("raised x%.4f while S3 was down, want not yet", got)
	}
	if got := testutil.ToFloat64(d.metrics.raiseReadUntil); got != down {
		t.Errorf("the raise says it read until %v while S3 was down, want still %v", got, down)
	}

	proxy.Up()
	readBack(t, d)
	if got, want := raiseOf(d), math.Exp(10*0.05*0.9); math.Abs(got-want) > 1e-9 {
		t.Errorf("once S3 is back, export jobs are raised x%.4f, want x%.4f: each kill once", got, want)
	}
	if got := testutil.ToFloat64(d.metrics.raiseRecords); got != 10 {
		t.Errorf("the raise read %v records, want 10", got)
	}

	// A file that lands late, named before the time the raise last
	// read until (a replica whose write was retried), is read too.
	late := bytes.Replace(bytes.SplitAfter(lines.Bytes(), []byte("\n"))[0], []byte("killed-0"), []byte("late-0"), 1)
	put(recordsName("jobfleet", time.Now().Add(-lateness/2))+"-late.jsonl", late)
	readBack(t, d)
	if got := testutil.ToFloat64(d.metrics.raiseRecords); got != 11 {
		t.Errorf("the raise read %v records after a late file, want 11", got)
	}

	// A file larger than the raise reads is skipped, and does not hold
	// up the files after it.
	var big bytes.Buffer
	for range 40 {
		big.Write(bytes.ReplaceAll(late, []byte("late-0"), []byte("big-0")))
	}
	put(recordsName("jobfleet", time.Now())+"-big.jsonl", big.Bytes())
	put(recordsName("jobfleet", time.Now())+"-after.jsonl", bytes.ReplaceAll(late, []byte("late-0"), []byte("after-0")))
	readBack(t, d)
	if got := testutil.ToFloat64(d.metrics.raiseRecords); got != 12 {
		t.Errorf("the raise read %v records, want 12: none of a file too large, one of the file after it", got)
	}
}

// TestRetrainCarriesHalfTheLiveRaise: a retraining carries into the model
// it trains half, in log space, of the raise the replicas hold when it
// runs, from the same records: two replicas' files whose kills and fits
// interleave in time, and runs no model sized, which tell nothing to
// either; through the real SQS emulator and S3. Also when the model being
// replaced read a feature the retraining leaves out (the registry no
// longer lists it): the replay reads the runs as the replicas did, with
// every feature the records carry.
func TestRetrainCarriesHalfTheLiveRaise(t *testing.T) {
	t.Parallel()
	read := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name     string
		prev     *predictor.Model
		job      predictor.Job
		features []string
	}{
		{name: "same features", prev: constantModelAt(map[string]float64{"export": 1.5 * gib}, read, read), job: exportJob},
		{
			// Sized 1.5Gi with cols = 0 and 200Mi without it.
			name: "a feature retraining leaves out", prev: linearModelAt("export", []string{"rows", "cols"}, []float64{math.Log(1.5 * gib), 0, 2}, read),
			job:      predictor.Job{Type: "export", Pool: "cpu", Features: map[string]float64{"rows": 1, "cols": 0}},
			features: []string{"rows", "renamed"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testRetrainCarry(t, tc.prev, tc.job, tc.features, read)
		})
	}
}

func testRetrainCarry(t *testing.T, prev *predictor.Model, job predictor.Job, features []string, read time.Time) {
	b := setup(t)
	modelURL := "s3://" + b.cfg.Bucket + "/models/carry.json"
	if err := predictor.Save(t.Context(), b.s3.Client, modelURL, prev); err != nil {
		t.Fatal(err)
	}
	d, stop := b.start(t, b.cfg, WithModels(staticModels{prev}), WithRecords(b.s3.Client,
		RecordsConfig{URL: b.sqs.CreateQueue(t, "records-", nil), Bucket: b.cfg.Bucket, Prefix: "jobfleet", RaiseReadEvery: 100 * time.Millisecond},
		RetrainConfig{}))
	defer stop()

	record := func(id string, ended time.Time, outcome jobfleet.Outcome, predicted int64) []byte {
		rec := jobfleet.RunRecord{
			JobID: id, Type: "export", Attempt: 1, Outcome: outcome, AllocatedBytes: 2 * gib, PeakBytes: gib,
			PredictedBytes: predicted, Features: job.Features, StartedAt: ended.Add(-time.Minute).UTC(), EndedAt: ended.UTC(),
		}
		if outcome == jobfleet.OutcomeOOM {
			rec.PeakBytes = 2 * gib
		}
		data, _ := json.Marshal(rec)
		return append(data, '\n')
	}
	at := func(m int) time.Time { return read.Add(time.Duration(m) * time.Minute) }
	// Replica a: a kill, a fit, a kill; replica b: two kills in between,
	// and the runs the model was trained on, which no model sized (they
	// are what the retraining learns from).
	var a, bFile bytes.Buffer
	a.Write(record("a-1", at(1), jobfleet.OutcomeOOM, 2*gib))
	a.Write(record("a-3", at(3), jobfleet.OutcomeSucceeded, 2*gib))
	a.Write(record("a-5", at(5), jobfleet.OutcomeOOM, 2*gib))
	bFile.Write(record("b-2", at(2), jobfleet.OutcomeOOM, 2*gib))
	bFile.Write(record("b-4", at(4), jobfleet.OutcomeOOM, 2*gib))
	for i := range 40 {
		bFile.Write(record(fmt.Sprintf("history-%d", i), at(-30-i), jobfleet.OutcomeSucceeded, 0))
	}
	for name, body := range map[string][]byte{"-a.jsonl": a.Bytes(), "-b.jsonl": bFile.Bytes()} {
		if _, err := b.s3.Client.PutObject(t.Context(), &s3.PutObjectInput{
			Bucket: aws.String(b.cfg.Bucket), Key: aws.String(recordsName("jobfleet", time.Now()) + name), Body: bytes.NewReader(body),
		}); err != nil {
			t.Fatal(err)
		}
	}
	readBack(t, d)
	// Four kills and a fit: 0.05 * (4 * 0.9 - 0.1).
	live := max(d.model().Predict(job).Raise, 1)
	if want := math.Exp(0.175); math.Abs(live-want) > 1e-9 {
		t.Fatalf("the replica raises export jobs x%.4f, want x%.4f", live, want)
	}

	retrain := RetrainConfig{Model: modelURL, Options: predictor.Options{Features: features, Tuning: predictor.Tuning{MinRuns: 20}}}
	if err := d.retrain(t.Context(), b.s3.Client, RecordsConfig{Bucket: b.cfg.Bucket, Prefix: "jobfleet"}, retrain); err != nil {
		t.Fatal(err)
	}
	next, err := predictor.Load(t.Context(), b.s3.Client, modelURL)
	if err != nil {
		t.Fatal(err)
	}
	carried := max(online.New(0, nil).Predict(next, job).Raise, 1)
	if want := math.Exp(math.Log(live) / 2); math.Abs(carried-want) > 1e-9 {
		t.Errorf("the retrained model starts export jobs at x%.4f, want x%.4f: half the replica's x%.4f in log space", carried, want, live)
	}
}
