package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/runrecords"
	"github.com/jobfleet/jobfleet/predictor"
)

// The raise after misses learns from every run stored, whichever replica
// consumed its record: each replica reads back the records files all of
// them write, those stored since its model's runs were read for training.
// So the replicas raise a group alike and as fast as one would alone, and
// a replica that starts, or loads a new model, takes up where the others
// are.
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
	// raiseStartWait bounds how long a starting replica waits to have
	// read the records of its model's period before it sizes jobs.
	raiseStartWait = time.Minute
	// raiseReaders is how many records files are fetched at once.
	raiseReaders = 16
)

// maxRecordsFile bounds the records file the raise reads, in bytes: the
// record sink writes at most FlushSize (1000) records a file, gzipped,
// about 200 KB; raiseReaders of them are held at once.
const maxRecordsFile = 16 << 20

// raiseReader tells the dispatcher's raiser of every run record stored,
// by any replica, since its current model's runs were read, once per
// attempt.
type raiseReader struct {
	d        *Dispatcher
	s3       RecordsS3API
	bucket   string
	prefix   string // as configured: the records are under RecordsPrefix
	every    time.Duration
	lateness time.Duration
	log      zerolog.Logger
	// caughtUp is closed once every record stored before the reader
	// started has been read, or there is no model to read them for.
	caughtUp chan struct{}

	model *predictor.Model // the model whose runs are read
	// cutoff is when the model's runs were read: a file stored before
	// then was among them.
	cutoff time.Time
	// from is the time every records file named earlier has been read
	// from; read are the files named since that have been.
	from time.Time
	read map[string]bool
	// maxFile replaces maxRecordsFile, for tests.
	maxFile int64
	// told are the attempts told of most recently: a record stored
	// twice, once by each of two replicas, counts once.
	told attempts
}

func newRaiseReader(d *Dispatcher, s3 RecordsS3API, cfg RecordsConfig) *raiseReader {
	every := cfg.RaiseReadEvery
	if every <= 0 {
		every = DefaultRaiseReadEvery
	}
	lateness := d.raiseLateness
	if lateness <= 0 {
		lateness = raiseLateness
	}
	maxFile := d.raiseMaxFile
	if maxFile <= 0 {
		maxFile = maxRecordsFile
	}
	return &raiseReader{
		d: d, s3: s3, bucket: cfg.Bucket, prefix: cfg.Prefix, every: every, lateness: lateness, maxFile: maxFile,
		caughtUp: make(chan struct{}),
		read:     map[string]bool{}, told: newAttempts(),
	}
}

func (r *raiseReader) run(ctx context.Context) {
	// Until the first read, the raise is as current as the process.
	r.d.metrics.raiseReadUntil.Set(float64(r.d.clock.Now().UnixNano()) / 1e9)
	for ctx.Err() == nil {
		// What was not read is read at the next try: nothing is marked
		// read until it has been.
		if err := r.readNew(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("reading stored run records for the raise after misses; trying again")
		}
		r.d.sleep(ctx, r.every)
	}
}

// readNew reads the records files stored since it last looked, or, for a
// model not read for before, since that model's runs were read.
func (r *raiseReader) readNew(ctx context.Context) error {
	now := r.d.clock.Now().UTC()
	m := r.d.models.Model()
	if m == nil { // nothing to raise, nothing to read
		r.readUntil(now)
		return nil
	}
	if m != r.model {
		// The model learned from the records stored when they were
		// read: those stored later are the raise's, including files
		// named earlier that landed late. A model that does not say
		// when falls back on its training time.
		r.model, r.cutoff = m, m.RunsUntil()
		if r.cutoff.IsZero() {
			r.cutoff = m.TrainedAt()
		}
		r.from = r.cutoff.UTC().Add(-r.lateness)
		if earliest := now.Add(-raiseReadBack); r.from.Before(earliest) {
			r.from = earliest
		}
		clear(r.read)
		r.told.clear()
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
			var keys []string
			for _, obj := range page.Contents {
				key := aws.ToString(obj.Key)
				switch {
				case r.read[key] || !runrecords.IsFile(key):
				case aws.ToTime(obj.LastModified).Before(r.cutoff):
					// The model's own (by S3's clock against the
					// trainer's: a few seconds either way).
					r.read[key] = true
				case aws.ToInt64(obj.Size) > r.maxFile:
					r.log.Warn().Str("key", key).Int64("bytes", aws.ToInt64(obj.Size)).Msg("a stored records file larger than the raise reads; skipped")
					r.read[key] = true
				default:
					keys = append(keys, key)
				}
			}
			if err := r.readFiles(ctx, keys); err != nil {
				return err
			}
		}
	}
	r.readUntil(now)
	// Files named before the lateness ago have all been read: they are
	// not listed again.
	if next := now.Add(-r.lateness); next.After(r.from) {
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

// readUntil says every record stored until now has been read.
func (r *raiseReader) readUntil(now time.Time) {
	r.d.metrics.raiseReadUntil.Set(float64(now.UnixNano()) / 1e9)
	select {
	case <-r.caughtUp:
	default:
		close(r.caughtUp)
	}
}

// readFiles reads records files, raiseReaders at once, and tells the
// raiser of their records in the order of the keys (the order they were
// stored in), a batch at a time. It stops at the first file it could not
// read; the files before it are read.
func (r *raiseReader) readFiles(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), raiseReaders)]
		keys = keys[len(batch):]
		data := make([][]byte, len(batch))
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for i, key := range batch {
			wg.Go(func() { data[i], errs[i] = r.fetch(ctx, key) })
		}
		wg.Wait()
		for i, key := range batch {
			if errs[i] != nil {
				return errs[i]
			}
			if data[i] != nil {
				if _, malformed := runrecords.ReadFile(key, bytes.NewReader(data[i]), r.tell); malformed > 0 {
					r.log.Warn().Str("key", key).Int("malformed", malformed).Msg("stored run records the raise cannot read")
				}
			}
			r.read[key] = true
		}
	}
	return nil
}

// fetch reads one records file. A file that is gone (expired) or archived
// is skipped with a warning (nil data, nil error): reading it again would
// not succeed, and would hold up the files after it. Any other failure,
// a denied read included, is an error: the files are read again later.
func (r *raiseReader) fetch(ctx context.Context, key string) ([]byte, error) {
	out, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.bucket), Key: aws.String(key)})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "NoSuchKey" || apiErr.ErrorCode() == "InvalidObjectState") {
		r.log.Warn().Err(err).Str("key", key).Msg("a stored records file the raise cannot read; skipped")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", r.bucket, key, err)
	}
	data, err := io.ReadAll(io.LimitReader(out.Body, r.maxFile+1))
	out.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", r.bucket, key, err)
	}
	if int64(len(data)) > r.maxFile { // grown since it was listed
		r.log.Warn().Str("key", key).Msg("a stored records file larger than the raise reads; skipped")
		return nil, nil
	}
	return data, nil
}

// tell tells the raiser of one record, the first time its attempt is
// read for the current model.
func (r *raiseReader) tell(rec *jobfleet.RunRecord) {
	if !r.told.first(rec) {
		return
	}
	r.d.metrics.raiseRecords.Inc()
	r.d.observeRun(r.model, rec)
}
