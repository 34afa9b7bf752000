package dispatcher

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rs/zerolog"
	"k8s.io/utils/lru"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/runrecords"
	"github.com/jobfleet/jobfleet/predictor"
)

// The raise after misses learns from every run stored, whichever replica
// consumed its record: each replica reads back the records files all of
// them write, those of the runs that ended since its model was trained.
// So the replicas raise a group alike and as fast as one would alone, and
// a replica that restarts, or loads a new model, takes up where the fleet
// is.
const (
	// DefaultRaiseReadEvery is how often a replica reads the records
	// stored since it last looked, by default.
	DefaultRaiseReadEvery = 15 * time.Second
	// raiseReadBack bounds how far back a replica reads records when it
	// starts or loads a model: a model older than that (retraining has
	// stopped) is raised from the last two days' runs.
	raiseReadBack = 48 * time.Hour
	// raiseLateness is how long after the time in its name a records
	// file may appear and still be read. A file is named when its
	// replica starts writing it, by that replica's clock; a write that
	// retries, or a clock a little ahead of another, lands it late.
	raiseLateness = 10 * time.Minute
)

// maxRecordsFile bounds the records file the raise reads, in bytes: the
// record sink writes at most FlushSize records a file, gzipped.
const maxRecordsFile = 64 << 20

// raiseReader tells the dispatcher's raiser of every run record stored,
// by any replica, since its current model was trained, once per attempt.
type raiseReader struct {
	d      *Dispatcher
	s3     RecordsS3API
	bucket string
	prefix string // as configured: the records are under RecordsPrefix
	every  time.Duration
	log    zerolog.Logger

	model *predictor.Model // the model whose runs are read
	// from is the time every records file named earlier has been read
	// from; read are the files named since that have been.
	from time.Time
	read map[string]bool
	// told are the attempts told of most recently, as hashes (seeded by
	// seed) of their runrecords.Attempt: a record stored twice, once by
	// each of two replicas, counts once.
	told *lru.Cache
	seed maphash.Seed
}

func newRaiseReader(d *Dispatcher, s3 RecordsS3API, cfg RecordsConfig) *raiseReader {
	every := cfg.RaiseReadEvery
	if every <= 0 {
		every = DefaultRaiseReadEvery
	}
	return &raiseReader{
		d: d, s3: s3, bucket: cfg.Bucket, prefix: cfg.Prefix, every: every,
		read: map[string]bool{}, told: lru.New(maxCounted), seed: maphash.MakeSeed(),
	}
}

func (r *raiseReader) run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		wait := r.every
		if err := r.readNew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			// What was not read is read at the next try: nothing
			// is marked read until it has been.
			failures++
			wait = min(wait, backoff(failures))
			r.log.Warn().Err(err).Msg("reading stored run records for the raise after misses")
		} else {
			failures = 0
		}
		r.d.sleep(ctx, wait)
	}
}

// readNew reads the records files stored since it last looked, or, for a
// model not read for before, since that model was trained.
func (r *raiseReader) readNew(ctx context.Context) error {
	now := r.d.clock.Now().UTC()
	m := r.d.models.Model()
	if m == nil { // nothing to raise, nothing to read
		r.d.metrics.raiseReadUntil.Set(float64(now.UnixNano()) / 1e9)
		return nil
	}
	if m != r.model {
		// The model learned from the records stored before it was
		// trained (those stored while it trained, after its
		// retraining listed them, are in neither).
		r.model, r.from = m, m.TrainedAt().UTC()
		if earliest := now.Add(-raiseReadBack); r.from.Before(earliest) {
			r.from = earliest
		}
		clear(r.read)
		r.told.Clear()
	}
	after := recordsName(r.prefix, r.from)
	for day := r.from.Truncate(24 * time.Hour); !day.After(now); day = day.Add(24 * time.Hour) {
		dir := recordsDir(r.prefix, day)
		in := &s3.ListObjectsV2Input{Bucket: aws.String(r.bucket), Prefix: aws.String(dir)}
		if after > dir {
			in.StartAfter = aws.String(after)
		}
		pages := s3.NewListObjectsV2Paginator(r.s3, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("listing s3://%s/%s: %w", r.bucket, dir, err)
			}
			for _, obj := range page.Contents {
				key := aws.ToString(obj.Key)
				if r.read[key] || !runrecords.IsFile(key) {
					continue
				}
				if err := r.readFile(ctx, key); err != nil {
					return err
				}
				r.read[key] = true
			}
		}
	}
	r.d.metrics.raiseReadUntil.Set(float64(now.UnixNano()) / 1e9)
	// Files named before raiseLateness ago have all been read: they are
	// not listed again.
	if next := now.Add(-raiseLateness); next.After(r.from) {
		r.from = next
		after = recordsName(r.prefix, next)
		for key := range r.read {
			if key <= after {
				delete(r.read, key)
			}
		}
	}
	return nil
}

func (r *raiseReader) readFile(ctx context.Context, key string) error {
	out, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("reading s3://%s/%s: %w", r.bucket, key, err)
	}
	data, err := io.ReadAll(io.LimitReader(out.Body, maxRecordsFile+1))
	out.Body.Close()
	if err != nil {
		return fmt.Errorf("reading s3://%s/%s: %w", r.bucket, key, err)
	}
	if len(data) > maxRecordsFile {
		r.log.Warn().Str("key", key).Msg("a stored records file larger than the raise reads; skipped")
		return nil
	}
	if _, malformed := runrecords.ReadFile(key, bytes.NewReader(data), r.tell); malformed > 0 {
		r.log.Warn().Str("key", key).Int("malformed", malformed).Msg("stored run records the raise cannot read")
	}
	return nil
}

// tell tells the raiser of one record, the first time its attempt is
// read.
func (r *raiseReader) tell(rec *jobfleet.RunRecord) {
	key := maphash.Comparable(r.seed, runrecords.AttemptOf(rec))
	if _, told := r.told.Get(key); told {
		return
	}
	r.told.Add(key, nil)
	r.d.metrics.raiseRecords.Inc()
	r.d.observeRun(r.model, rec)
}
