package dispatcher

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/predictor"
)

// TestRunRecordsAreStoredAndRetrainFromThem sends run records as workers
// do: the dispatcher stores them in S3 by day, reports each type's
// coverage, dead-letters a malformed one, and retrains a model from them
// that the predictor package loads.
func TestRunRecordsAreStoredAndRetrainFromThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store := testenv.StartS3(t)
	bucket := store.CreateBucket(t)
	modelKey := "models/memory.json"
	now := time.Now().UTC()
	var bodies []string
	for i := range 60 {
		peak := int64(900 << 20)
		if i%10 == 0 {
			peak = 1200 << 20 // did not fit its 1Gi
		}
		rec := jobfleet.RunRecord{
			JobID: "r-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Type: "export", Attempt: 1, Outcome: jobfleet.OutcomeSucceeded,
			Labels: map[string]string{"team": []string{"search", "ads", ""}[i%3]}, DurationSecs: 60,
			AllocatedBytes: 1 << 30, PeakBytes: peak, Features: map[string]float64{"rows": float64(i * 1000), "tenant": float64(i % 2)},
			StartedAt: now.Add(-time.Duration(60-i) * time.Minute), EndedAt: now.Add(-time.Duration(59-i) * time.Minute),
		}
		data, _ := json.Marshal(rec)
		bodies = append(bodies, string(data))
	}
	bodies = append(bodies, `{"job_id":"broken"`)
	d := storeRecords(t, b, store, bucket, bodies, 20)

	// Every valid record is stored once, under today's partition.
	list, err := store.Client.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("jobfleet/records/dt=" + now.Format("2006-01-02") + "/")})
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, obj := range list.Contents {
		out, err := store.Client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: obj.Key})
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(out.Body)
		if err != nil {
			t.Fatalf("%s is not gzip: %v", aws.ToString(obj.Key), err)
		}
		data, _ := io.ReadAll(zr)
		out.Body.Close()
		stored += bytes.Count(data, []byte("\n"))
	}
	if stored != 60 {
		t.Errorf("%d records stored, want 60", stored)
	}
	sized, fit := testutil.ToFloat64(d.metrics.sized.WithLabelValues("export")), testutil.ToFloat64(d.metrics.fit.WithLabelValues("export"))
	if sized != 60 || fit != 54 {
		t.Errorf("sized runs %v, within allocation %v; want 60 and 54 (one run in ten outgrew its allocation)", sized, fit)
	}
	// Cost and waste attributed by the team label: 20 one-minute runs each.
	for _, team := range []string{"search", "ads", "none"} {
		if got := testutil.ToFloat64(d.metrics.attemptSeconds.WithLabelValues("export", team, "succeeded")); got != 20*60 {
			t.Errorf("team %s: %v attempt seconds, want %v", team, got, 20*60)
		}
		if got := testutil.ToFloat64(d.metrics.allocatedByteSeconds.WithLabelValues("export", team)); got != 20*60*(1<<30) {
			t.Errorf("team %s: %v allocated byte-seconds", team, got)
		}
	}
	// Unused: 124 MiB below the 1 GiB for the runs that fit, none for the
	// six that outgrew it; the outgrown ones are i%10 == 0, two per team.
	if got, want := testutil.ToFloat64(d.metrics.unusedByteSeconds.WithLabelValues("export", "search")), float64(18*60*(124<<20)); got != want {
		t.Errorf("search: %v unused byte-seconds, want %v", got, want)
	}
	dead := b.sqs.Receive(t, b.dead, 1, true)
	if reason := aws.ToString(dead[0].MessageAttributes[jobfleet.AttrError].StringValue); !strings.HasPrefix(reason, "malformed run record") {
		t.Errorf("dead letter reason %q", reason)
	}

	// Retraining reads them back into a model, which says when it read
	// them: the raise after misses reads the records stored since.
	retrain := RetrainConfig{Model: "s3://" + bucket + "/" + modelKey, Options: predictor.Options{Tuning: predictor.Tuning{MinRuns: 20}}}
	before := time.Now()
	if err := d.retrain(t.Context(), store.Client, RecordsConfig{Bucket: bucket, Prefix: "jobfleet"}, retrain); err != nil {
		t.Fatal(err)
	}
	model, err := predictor.Load(t.Context(), store.Client, retrain.Model)
	if err != nil {
		t.Fatal(err)
	}
	if until := model.RunsUntil(); until.Before(before) || until.After(model.TrainedAt()) {
		t.Errorf("the retrained model read its runs until %v, want between %v and its training at %v", until, before, model.TrainedAt())
	}
	exportJob := predictor.Job{Type: "export", Features: map[string]float64{"rows": 1000}}
	if p := model.Predict(exportJob); model.Runs() != 60 || p.Source != predictor.SourceType {
		t.Errorf("retrained model: %d runs, an export job sized by %s", model.Runs(), p.Level)
	}

	// With the group strategy, the next retraining reads the model it
	// replaces: when half the jobs sized since then were OOM-killed, the
	// margin grows, and half the raise those kills put on the jobs' group
	// carries into the new model.
	retrain.Options = predictor.Options{Strategy: predictor.StrategyGroups}
	if err := d.retrain(t.Context(), store.Client, RecordsConfig{Bucket: bucket, Prefix: "jobfleet"}, retrain); err != nil {
		t.Fatal(err)
	}
	first, err := predictor.Load(t.Context(), store.Client, retrain.Model)
	if err != nil || first.Strategy() != predictor.StrategyGroups {
		t.Fatalf("group model: %v, %v", first, err)
	}
	var later bytes.Buffer
	// What the first model's size gave them, in its class.
	predicted := int64(d.classMemory(exportJob, first.Predict(exportJob).Memory))
	for i := range 20 {
		rec := jobfleet.RunRecord{
			JobID: fmt.Sprintf("later-%d", i), Type: "export", Attempt: 1, Outcome: jobfleet.OutcomeSucceeded,
			AllocatedBytes: 1 << 30, PeakBytes: 900 << 20, PredictedBytes: predicted, Features: map[string]float64{"rows": 1000},
			StartedAt: time.Now().UTC().Add(-20 * time.Second), EndedAt: time.Now().UTC(), // after the model they measure
		}
		if i%2 == 0 {
			rec.Outcome, rec.PeakBytes = jobfleet.OutcomeOOM, 1<<30
		}
		data, _ := json.Marshal(rec)
		later.Write(append(data, '\n'))
	}
	key := "jobfleet/records/dt=" + time.Now().UTC().Format("2006-01-02") + "/later.jsonl"
	if _, err := store.Client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(later.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if err := d.retrain(t.Context(), store.Client, RecordsConfig{Bucket: bucket, Prefix: "jobfleet"}, retrain); err != nil {
		t.Fatal(err)
	}
	second, err := predictor.Load(t.Context(), store.Client, retrain.Model)
	if err != nil || second.Strategy() != predictor.StrategyGroups {
		t.Fatalf("group model: %v, %v", second, err)
	}
	if m1, m2 := first.Predict(exportJob).Margin, second.Predict(exportJob).Margin; m2 <= m1 {
		t.Errorf("margin %v after half the jobs were OOM-killed, want above the replaced model's %v", m2, m1)
	}
	// Ten kills and ten fits raised the group by 0.05 * (10 * 0.9 - 10 *
	// 0.1) in log space; the new model carries half of it, and a replica
	// that loads it starts its jobs there.
	if raises, want := second.Raises(), math.Exp(0.2); len(raises) != 1 || math.Abs(slices.Collect(maps.Values(raises))[0]-want) > 1e-9 {
		t.Errorf("the new model carries the raises %v, want one group at x%.4f", raises, want)
	}
	if p := d.raiser.Predict(second, exportJob); math.Abs(p.Raise-math.Exp(0.2)) > 1e-9 {
		t.Errorf("a job of the group under the new model raised x%v, want x%.4f", p.Raise, math.Exp(0.2))
	}

	// Features named for retraining that no record carries do not stop it:
	// the model reads the named ones the records carry, and only those.
	retrain.Options.Features = []string{"entities", "rows"}
	if err := d.retrain(t.Context(), store.Client, RecordsConfig{Bucket: bucket, Prefix: "jobfleet"}, retrain); err != nil {
		t.Fatal(err)
	}
	third, err := predictor.Load(t.Context(), store.Client, retrain.Model)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(third.Features(), []string{"rows"}) {
		t.Errorf("retrained with features %v, want [rows]: the named ones the records carry", third.Features())
	}

	// Left to choose (auto), a retraining over runs whose features seldom
	// repeat replaces the group model with estimators, and counts it.
	retrain.Options = predictor.Options{Tuning: predictor.Tuning{MinRuns: 20}}
	if err := d.retrain(t.Context(), store.Client, RecordsConfig{Bucket: bucket, Prefix: "jobfleet"}, retrain); err != nil {
		t.Fatal(err)
	}
	fourth, err := predictor.Load(t.Context(), store.Client, retrain.Model)
	if err != nil {
		t.Fatal(err)
	}
	if from, _, ok := fourth.Switched(); !ok || from != predictor.StrategyGroups || fourth.Strategy() != predictor.StrategyEstimators {
		t.Errorf("auto after a group model: %s, switched from %q (%v)", fourth.Strategy(), from, ok)
	}
	if got := testutil.ToFloat64(d.metrics.strategySwitches.WithLabelValues(predictor.StrategyGroups, predictor.StrategyEstimators)); got != 1 {
		t.Errorf("strategy switches counted %v, want 1", got)
	}
}

// TestRunRecordDeliveredTwiceTrainsOnce: SQS delivers at least once, and a
// record whose message was not deleted after its store comes back. Stored
// twice, the attempt is one run to retraining, to the coverage metrics and
// to the raise after misses.
func TestRunRecordDeliveredTwiceTrainsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store := testenv.StartS3(t)
	bucket := store.CreateBucket(t)
	now := time.Now().UTC()
	var bodies []string
	for i := range 30 {
		rec := jobfleet.RunRecord{
			JobID: fmt.Sprintf("twice-%d", i), Type: "export", Attempt: 1, Outcome: jobfleet.OutcomeSucceeded, DurationSecs: 60,
			AllocatedBytes: 1 << 30, PeakBytes: 900 << 20, Features: map[string]float64{"rows": float64(i * 1000)},
			StartedAt: now.Add(-time.Duration(31-i) * time.Minute), EndedAt: now.Add(-time.Duration(30-i) * time.Minute),
		}
		data, _ := json.Marshal(rec)
		bodies = append(bodies, string(data))
	}
	bodies = append(bodies, bodies[7]) // delivered again
	d := storeRecords(t, b, store, bucket, bodies, 10)
	if stored, dup := testutil.ToFloat64(d.metrics.records.WithLabelValues("stored")), testutil.ToFloat64(d.metrics.records.WithLabelValues("duplicate")); stored != 31 || dup != 1 {
		t.Errorf("stored %v records, %v of them duplicates; want all 31, one", stored, dup)
	}
	if sized, fit := testutil.ToFloat64(d.metrics.sized.WithLabelValues("export")), testutil.ToFloat64(d.metrics.fit.WithLabelValues("export")); sized != 30 || fit != 30 {
		t.Errorf("coverage metrics count %v sized runs and %v that fit, want the 30 attempts once each", sized, fit)
	}

	retrain := RetrainConfig{Model: "s3://" + bucket + "/models/memory.json", Options: predictor.Options{Tuning: predictor.Tuning{MinRuns: 20}}}
	if err := d.retrain(t.Context(), store.Client, RecordsConfig{Bucket: bucket, Prefix: "jobfleet"}, retrain); err != nil {
		t.Fatal(err)
	}
	model, err := predictor.Load(t.Context(), store.Client, retrain.Model)
	if err != nil {
		t.Fatal(err)
	}
	if model.Runs() != 30 {
		t.Errorf("retrained on %d runs, want the 30 attempts once each", model.Runs())
	}
}

// storeRecords sends bodies to a new records queue and runs a dispatcher
// that stores them in bucket, flushing every flushSize records, until the
// queue is empty. It returns the stopped dispatcher.
func storeRecords(t *testing.T, b *bundle, store *testenv.S3, bucket string, bodies []string, flushSize int) *Dispatcher {
	t.Helper()
	recordsURL := b.sqs.CreateQueue(t, "records-", nil)
	for _, body := range bodies {
		if _, err := b.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(recordsURL), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := New(b.cfg, b.sqs.Client, b.s3.Client, b.kube.Dynamic, WithRegisterer(prometheus.NewRegistry()), WithRecords(store.Client,
		RecordsConfig{URL: recordsURL, Bucket: bucket, Prefix: "jobfleet", FlushSize: flushSize, FlushEvery: time.Second},
		RetrainConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testenv.Eventually(t, 30*time.Second, "the records queue to empty", func() bool {
		visible, inFlight := b.sqs.Depth(t, recordsURL)
		return visible+inFlight == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return d
}

// TestModelReloadsAreCounted: every check of the model file is counted
// by result, where the reloader reports it.
func TestModelReloadsAreCounted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d, err := New(b.cfg, b.sqs.Client, b.s3.Client, nil, WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "model.json")
	if err := predictor.Save(t.Context(), nil, file, constantModel(map[string]float64{"export": gib})); err != nil {
		t.Fatal(err)
	}
	r := predictor.NewReloader(file, nil, time.Hour, zerolog.Nop(), nil)
	check := func() {
		changed, err := r.Check(t.Context())
		d.ObserveModelReload(changed, err)
	}
	check()
	check()
	if err := os.WriteFile(file, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	check()
	for result, want := range map[string]float64{"loaded": 1, "unchanged": 1, "rejected": 1} {
		if got := testutil.ToFloat64(d.metrics.modelReloads.WithLabelValues(result)); got != want {
			t.Errorf("model reloads{%s} = %v, want %v", result, got, want)
		}
	}
}
