package dispatcher

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"path"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"
	"k8s.io/utils/lru"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/runrecords"
	"github.com/jobfleet/jobfleet/predictor"
)

// RecordsConfig configures the run-record consumer.
type RecordsConfig struct {
	// URL is the records queue the workers send to.
	URL string
	// Bucket and Prefix locate the stored records:
	// s3://<Bucket>/<Prefix>/records/dt=<day>/<time>-<random>.jsonl.gz
	Bucket, Prefix string
	// FlushSize and FlushEvery bound how many records, and for how long,
	// are buffered before a file is written. Defaults 1000 and 1m.
	FlushSize  int
	FlushEvery time.Duration
	// OnRecord, if set, is called with every valid record consumed.
	OnRecord func(jobfleet.RunRecord)
	// RaiseReadEvery is how often this replica reads back the records
	// every replica stored, for the raise after misses. Default
	// DefaultRaiseReadEvery.
	RaiseReadEvery time.Duration
	// AttributeLabel is the job label (team, say) the cost metrics are
	// attributed by: jobfleet_attempt_seconds_total and the byte-seconds
	// allocated and left unused. Default "team". At most
	// MaxAttributeValues distinct values are kept; later ones count as
	// "other", and jobs without the label as "none".
	AttributeLabel string
}

// MaxAttributeValues bounds the values of the attribute label the cost
// metrics keep apart.
const MaxAttributeValues = 100

// RetrainConfig schedules retraining of the memory model from the stored
// run records, on the elected leader.
type RetrainConfig struct {
	// Every is how often; zero never retrains.
	Every time.Duration
	// Window is how far back records are used. Default 30 days.
	Window time.Duration
	// Model is where the new model is written (the dispatcher's --model).
	Model string
	// Options tune training.
	Options predictor.Options
}

// RecordsPrefix is where the run records of a bucket prefix are stored.
func RecordsPrefix(prefix string) string { return path.Join(prefix, "records") }

// recordsDir is the partition of the records files written at t.
func recordsDir(prefix string, t time.Time) string {
	return path.Join(RecordsPrefix(prefix), "dt="+t.UTC().Format("2006-01-02")) + "/"
}

// recordsName is how the name of a records file written at t begins (the
// record sink adds a random suffix): names sort as their times do.
func recordsName(prefix string, t time.Time) string {
	return recordsDir(prefix, t) + t.UTC().Format("150405.000000000")
}

// recordSink consumes run records into S3 and keeps the coverage metric.
type recordSink struct {
	d   *Dispatcher
	s3  RecordsS3API
	cfg RecordsConfig
	log zerolog.Logger

	received []sqstypes.Message
	records  []*jobfleet.RunRecord // decoded, in the order of received
	lines    bytes.Buffer
	oldest   time.Time
	// attributes are the attribute label's values kept apart so far.
	attributes map[string]bool
	// counted are the attempts counted most recently.
	counted attempts
}

// maxCounted bounds the attempts an attempts set remembers: a record
// stored twice (its message's deletion failed) comes back after its
// visibility timeout, a few minutes, tens of thousands of records later
// at most. About 5 MB.
const maxCounted = 50_000

// attempts remembers the attempts of the records seen most recently, up
// to maxCounted, each as a hash of its runrecords.Attempt, so that a
// record stored twice counts once.
type attempts struct {
	seen *lru.Cache
	seed maphash.Seed
}

func newAttempts() attempts { return attempts{seen: lru.New(maxCounted), seed: maphash.MakeSeed()} }

// first reports whether rec's attempt is not among those remembered, and
// remembers it.
func (a attempts) first(rec *jobfleet.RunRecord) bool {
	key := maphash.Comparable(a.seed, runrecords.AttemptOf(rec))
	if _, seen := a.seen.Get(key); seen {
		return false
	}
	a.seen.Add(key, nil)
	return true
}

// clear forgets every attempt.
func (a attempts) clear() { a.seen.Clear() }

// RecordsS3API is the S3 calls of the record consumer and retraining.
type RecordsS3API interface {
	predictor.S3API
}

func (r *recordSink) run(ctx context.Context) {
	if r.cfg.FlushSize == 0 {
		r.cfg.FlushSize = 1000
	}
	if r.cfg.FlushEvery == 0 {
		r.cfg.FlushEvery = time.Minute
	}
	failures := 0
	for ctx.Err() == nil {
		wait := int32(20)
		if len(r.received) > 0 {
			wait = int32(max(1, min(20, (r.cfg.FlushEvery-r.d.clock.Since(r.oldest))/time.Second)))
		}
		out, err := r.d.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(r.cfg.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: wait,
			// Longer than a flush takes, so records stay ours until stored.
			VisibilityTimeout: int32(r.cfg.FlushEvery/time.Second) + 120,
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			r.log.Warn().Err(err).Msg("receiving run records")
			r.d.sleep(ctx, backoff(failures))
			continue
		}
		failures = 0
		for _, m := range out.Messages {
			r.add(ctx, m)
		}
		if len(r.received) >= r.cfg.FlushSize || (len(r.received) > 0 && r.d.clock.Since(r.oldest) >= r.cfg.FlushEvery) {
			r.flush(ctx)
		}
	}
	// Store what is held; what cannot be stored returns to the queue.
	if len(r.received) > 0 {
		drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		r.flush(drain)
	}
}

// add takes one record: a valid one is buffered (and counted once
// stored), a malformed one dead-lettered with the reason.
func (r *recordSink) add(ctx context.Context, m sqstypes.Message) {
	body := aws.ToString(m.Body)
	rec, err := jobfleet.DecodeRunRecord([]byte(body))
	if err != nil {
		r.d.metrics.records.WithLabelValues("malformed").Inc()
		dead, err := r.d.store.FitDeadLetter(ctx, queue.DeadLetter(body, m.MessageAttributes, "malformed run record: "+err.Error()))
		if err != nil {
			r.log.Warn().Err(err).Msg("dead-lettering a malformed run record; it returns to the records queue")
			return
		}
		if f := queue.Send(ctx, r.d.sqs, r.d.cfg.DeadLetterURL, []queue.Message{dead}, queue.Retry{}); len(f) > 0 {
			r.log.Warn().Err(f[0].Err).Msg("dead-lettering a malformed run record; it returns to the records queue")
			return
		}
		_ = queue.Delete(ctx, r.d.sqs, r.cfg.URL, []string{aws.ToString(m.ReceiptHandle)}, queue.Retry{})
		return
	}
	if len(r.received) == 0 {
		r.oldest = r.d.clock.Now()
	}
	r.received = append(r.received, m)
	r.records = append(r.records, rec)
	r.lines.WriteString(body)
	r.lines.WriteByte('\n')
	if r.cfg.OnRecord != nil {
		r.cfg.OnRecord(*rec)
	}
}

// count adds a stored record to the metrics, once: a record that returns
// to the queue because it could not be stored is counted when it is, and
// one stored twice (SQS delivers at least once) is counted the first time,
// as retraining reads it once, when this replica stores both. (The raise
// after misses reads the stored records back, every replica's: raise.go.)
func (r *recordSink) count(rec *jobfleet.RunRecord) {
	if !r.counted.first(rec) {
		r.d.metrics.records.WithLabelValues("duplicate").Inc()
		return
	}
	if rec.Outcome == jobfleet.OutcomeSucceeded && rec.AllocatedBytes > 0 {
		r.d.metrics.sized.WithLabelValues(rec.Type).Inc()
		if rec.PeakBytes <= rec.AllocatedBytes {
			r.d.metrics.fit.WithLabelValues(rec.Type).Inc()
		}
	}
	r.attribute(rec)
	if rec.Outcome == jobfleet.OutcomeInterrupted || rec.Outcome == jobfleet.OutcomeEvicted {
		result := "missing"
		if rec.Checkpoints > 0 {
			result = "completed"
		}
		r.d.metrics.checkpoints.WithLabelValues(result).Inc()
	}
}

// flush writes the buffered records as one gzip JSON Lines file and then
// deletes them from the queue.
func (r *recordSink) flush(ctx context.Context) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(r.lines.Bytes())
	_ = zw.Close()
	now := r.d.clock.Now().UTC()
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	key := recordsName(r.cfg.Prefix, now) + "-" + hex.EncodeToString(suffix[:]) + ".jsonl.gz"
	_, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(r.cfg.Bucket), Key: aws.String(key), Body: bytes.NewReader(gz.Bytes()), ContentType: aws.String("application/gzip")})
	if err != nil {
		// The records stay in the queue and come back after their
		// visibility timeout.
		r.log.Warn().Err(err).Int("records", len(r.received)).Msg("storing run records; they return to the queue")
		r.reset()
		return
	}
	receipts := make([]string, len(r.received))
	for i, m := range r.received {
		receipts[i] = aws.ToString(m.ReceiptHandle)
	}
	for _, f := range queue.Delete(ctx, r.d.sqs, r.cfg.URL, receipts, queue.Retry{}) {
		r.log.Warn().Err(f.Err).Msg("deleting a stored run record; it will be stored twice")
	}
	for _, rec := range r.records {
		r.count(rec)
	}
	r.d.metrics.records.WithLabelValues("stored").Add(float64(len(r.received)))
	r.log.Debug().Str("key", key).Int("records", len(r.received)).Msg("stored run records")
	r.reset()
}

func (r *recordSink) reset() {
	r.received = r.received[:0]
	clear(r.records)
	r.records = r.records[:0]
	r.lines.Reset()
}

// retrain trains a model from the stored records and writes it where the
// dispatchers load it from.
func (d *Dispatcher) retrain(ctx context.Context, s3api RecordsS3API, rec RecordsConfig, cfg RetrainConfig) error {
	window := cfg.Window
	if window == 0 {
		window = 30 * 24 * time.Hour
	}
	source := "s3://" + rec.Bucket + "/" + RecordsPrefix(rec.Prefix) + "/"
	ds, stats, err := predictor.LoadRecords(ctx, s3api, source, window, d.clock.Now())
	if err != nil {
		return fmt.Errorf("reading run records for retraining: %w", err)
	}
	read := ds // every feature the records carry, as the raise read them
	opts := cfg.Options
	for typ, labels := range ds.Uncarried(opts.Tuning.GroupByType) {
		d.log.Warn().Str("type", typ).Strs("labels", labels).Msg("the type's predictor.groupBy names labels none of its run records in the window carries: its runs are grouped without them (a label renamed, or not sent)")
	}
	if len(opts.Features) > 0 {
		// A feature no record of the window carries (renamed, or no
		// longer sent) must not stop retraining: the model is trained
		// without it, and the log says so.
		carried := func(name string) bool { return slices.Contains(ds.Features, name) }
		present := slices.DeleteFunc(slices.Clone(opts.Features), func(name string) bool { return !carried(name) })
		if len(present) < len(opts.Features) {
			missing := slices.DeleteFunc(slices.Clone(opts.Features), carried)
			d.log.Warn().Strs("missing", missing).Strs("records_carry", ds.Features).Msg("retraining without the features no run record in the window carries")
			if ds, err = ds.Select(present); err != nil {
				return fmt.Errorf("retraining: %w", err)
			}
			opts.Features = nil
		}
	}
	// The model being replaced: the group strategy adapts its margin from
	// how its allocations fared. Without one (the first training, or an
	// unreadable file) training starts afresh.
	prev, err := predictor.Load(ctx, s3api, cfg.Model)
	if err != nil {
		prev = nil
		d.log.Info().Err(err).Str("model", cfg.Model).Msg("retraining without a previous model")
	}
	model, err := prev.Retrain(ctx, ds, opts)
	if err != nil {
		return fmt.Errorf("retraining: %w", err)
	}
	if d.raiser != nil && prev != nil {
		// Half of each group's raise after misses carries into the new
		// model, from the runs the replicas were told of.
		model = d.raiser.Replay(prev, model, d.raiseRuns(prev, read))
	}
	if err := predictor.Save(ctx, s3api, cfg.Model, model); err != nil {
		return err
	}
	if from, share, ok := model.Switched(); ok {
		// The sizes of every job change with the family: say so loudly.
		d.metrics.strategySwitches.WithLabelValues(from, model.Strategy()).Inc()
		d.log.Warn().Str("from", from).Str("to", model.Strategy()).Float64("repeat_share", share).Str("model", cfg.Model).
			Msg("retraining changed the memory model's strategy: every job's size changes with it")
	}
	d.log.Info().Int("records", stats.Used).Int("missed", stats.Missed).Int("duplicates", stats.Duplicates).Int("raised_groups", len(model.Raises())).Str("strategy", model.Strategy()).Strs("features", model.Features()).Str("model", cfg.Model).Msg("retrained the memory model")
	return nil
}

// attribute adds an attempt to the cost metrics of its type and of the
// value of its attribute label.
func (r *recordSink) attribute(rec *jobfleet.RunRecord) {
	key := r.cfg.AttributeLabel
	if key == "" {
		key = "team"
	}
	value, ok := rec.Labels[key]
	switch {
	case !ok || value == "":
		value = "none"
	case !r.attributes[value]:
		if len(r.attributes) >= MaxAttributeValues {
			value = "other"
			break
		}
		r.attributes[value] = true
	}
	secs := max(0, rec.DurationSecs)
	m := r.d.metrics
	m.attemptSeconds.WithLabelValues(rec.Type, value, string(rec.Outcome)).Add(secs)
	if rec.AllocatedBytes > 0 {
		m.allocatedByteSeconds.WithLabelValues(rec.Type, value).Add(float64(rec.AllocatedBytes) * secs)
		m.unusedByteSeconds.WithLabelValues(rec.Type, value).Add(float64(max(0, rec.AllocatedBytes-rec.PeakBytes)) * secs)
	}
}
