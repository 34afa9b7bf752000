package dispatcher

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/predictor"
)

// TestLabelsKeyTheirOwnGroups follows job labels from the run records the
// dispatcher stores to the sizes it gives, through the real SQS emulator
// and S3: retrained with the registry's per-type groupBy and features,
// the model sizes two users of one type by their own runs, whatever the
// feature the type does not read, and OOM kills of one user's jobs raise
// that user's next jobs (on either shard), not the other's.
func TestLabelsKeyTheirOwnGroups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recordsURL := b.sqs.CreateQueue(t, "records-", nil)
	models := &swappableModels{}
	d, stop := b.start(t, b.cfg, WithModels(models), WithRecords(b.s3.Client,
		RecordsConfig{URL: recordsURL, Bucket: b.cfg.Bucket, Prefix: "jobfleet", FlushSize: 20, FlushEvery: 200 * time.Millisecond, RaiseReadEvery: 100 * time.Millisecond},
		RetrainConfig{}))
	defer stop()

	stored := 0.0
	// record is a run record of an export run by user.
	record := func(id, user string, shard float64, outcome jobfleet.Outcome, peak, allocated, predicted int64, ended time.Time) jobfleet.RunRecord {
		return jobfleet.RunRecord{
			JobID: id, Type: "export", Attempt: 1, Outcome: outcome,
			AllocatedBytes: allocated, PeakBytes: peak, PredictedBytes: predicted, Features: map[string]float64{"rows": 1, "shard": shard},
			Labels:    map[string]string{"user": user, "team": "search"},
			StartedAt: ended.Add(-time.Minute), EndedAt: ended,
		}
	}
	// send sends run records as workers do, and waits until the
	// dispatcher stored them.
	send := func(recs ...jobfleet.RunRecord) {
		t.Helper()
		for _, rec := range recs {
			data, _ := json.Marshal(rec)
			if _, err := b.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(recordsURL), MessageBody: aws.String(string(data))}); err != nil {
				t.Fatal(err)
			}
		}
		stored += float64(len(recs))
		testenv.Eventually(t, 90*time.Second, "the records to be stored", func() bool {
			return testutil.ToFloat64(d.metrics.records.WithLabelValues("stored")) >= stored
		})
	}
	// Two users of one type: ana's runs peak near 300Mi on shard 0 and
	// 600Mi on shard 1, bo's near 3Gi. The type reads rows, not shards.
	past := time.Now().UTC().Add(-2 * time.Hour)
	var recs []jobfleet.RunRecord
	for i := range 40 {
		at := past.Add(time.Duration(i) * time.Minute)
		recs = append(recs, record(fmt.Sprintf("ana-%d", i), "ana", float64(i%2), jobfleet.OutcomeSucceeded, int64(300*(1+i%2)+i%5)*mib, 4*gib, 0, at),
			record(fmt.Sprintf("bo-%d", i), "bo", float64(i%2), jobfleet.OutcomeSucceeded, int64(3000+i%5)*mib, 4*gib, 0, at))
	}
	send(recs...)

	// The retraining the leader runs, with the options the registry's
	// predictor: {groupBy: [user], features: [rows]} gives.
	retrain := RetrainConfig{Model: "s3://" + b.cfg.Bucket + "/models/memory.json", Options: predictor.Options{Tuning: predictor.Tuning{
		GroupByType: map[string][]string{"export": {"user"}}, FeaturesByType: map[string][]string{"export": {"rows"}},
	}}}
	if err := d.retrain(t.Context(), b.s3.Client, RecordsConfig{Bucket: b.cfg.Bucket, Prefix: "jobfleet"}, retrain); err != nil {
		t.Fatal(err)
	}
	model, err := predictor.Load(t.Context(), b.s3.Client, retrain.Model)
	if err != nil {
		t.Fatal(err)
	}
	if model.Runs() != 80 || model.Strategy() != predictor.StrategyGroups || strings.Join(model.LabelsFor("export"), ",") != "user" {
		t.Fatalf("retrained on %d runs, %s strategy, export grouped by %v; want 80, groups, user", model.Runs(), model.Strategy(), model.LabelsFor("export"))
	}
	models.m.Store(model)
	readBack(t, d)

	// sized publishes a labelled export job and returns how its state
	// says it was sized.
	sized := func(id, user string, shard float64) *jobfleet.SizedBy {
		t.Helper()
		job := &jobfleet.Job{Version: 1, ID: id, Type: "export", Features: map[string]float64{"rows": 1, "shard": shard}, Labels: map[string]string{"user": user, "team": "search"}}
		if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), job); err != nil {
			t.Fatal(err)
		}
		var by *jobfleet.SizedBy
		testenv.Eventually(t, 30*time.Second, "job "+id+" to be sized", func() bool {
			cur, _, err := b.store.ReadRun(t.Context(), id)
			if err == nil && cur.SizedBy != nil {
				by = cur.SizedBy
			}
			return by != nil
		})
		return by
	}
	// ana's job on shard 0 is sized by all 40 of ana's runs (the type
	// does not read shards), so above those of shard 1.
	ana, bo := sized("ana-1", "ana", 0), sized("bo-1", "bo", 0)
	if ana.Source != string(predictor.SourceLabels) || ana.Group != "export, user=ana, rows=1" || ana.Runs != 40 {
		t.Errorf("ana's job sized by %s, group %q, %d runs; want its labels' group of 40 runs", ana.Source, ana.Group, ana.Runs)
	}
	if bo.Source != string(predictor.SourceLabels) || bo.Group != "export, user=bo, rows=1" {
		t.Errorf("bo's job sized by %s, group %q; want its labels' group", bo.Source, bo.Group)
	}
	if !(ana.RequestBytes >= 604*mib && ana.RequestBytes < gib) || !(bo.RequestBytes >= 3004*mib && bo.RequestBytes < 4*gib) {
		t.Errorf("ana asked for %d MiB, bo for %d MiB; want each above its own runs' peaks and below the other's", ana.RequestBytes/mib, bo.RequestBytes/mib)
	}
	if ana.Raise != 0 || bo.Raise != 0 {
		t.Errorf("raised before any kill: ana x%v, bo x%v", ana.Raise, bo.Raise)
	}

	// Ten of bo's jobs, sized by this model, are OOM-killed: bo's next
	// job is raised, ana's is not.
	// The records carry the class the model's size alone gave them.
	recs = nil
	for i := range 10 {
		recs = append(recs, record(fmt.Sprintf("bo-killed-%d", i), "bo", 0, jobfleet.OutcomeOOM, 4*gib, 4*gib, 4*gib, time.Now().UTC()))
	}
	send(recs...)
	readBack(t, d)
	if got := testutil.ToFloat64(d.metrics.raisedGroups); got != 1 {
		t.Errorf("raised groups %v after bo's kills, want 1", got)
	}
	if by := sized("bo-2", "bo", 1); !(by.Raise > 1) {
		t.Errorf("bo's job after ten kills sized %+v, want it raised", by)
	}
	if by := sized("ana-2", "ana", 1); by.Raise != 0 || by.RequestBytes != ana.RequestBytes {
		t.Errorf("ana's job after bo's kills sized %+v, want as before (%d bytes, not raised)", by, ana.RequestBytes)
	}
}
