package predictor

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/runrecords"
)

// RecordStats counts what reading run records found.
type RecordStats struct {
	Files   int
	Records int
	Used    int
	// Missed are OOM-killed runs with their allocation: not training data
	// (their peak is not the job's need; the successful rerun says what it
	// needed), but a measure of the allocations (see StrategyGroups).
	Missed    int
	Malformed int
	// Unusable records are valid but not used: outside the window, or
	// neither succeeded nor OOM-killed.
	Unusable int
	// Duplicates are records of an attempt already read (the same job,
	// run and attempt): a record can be stored twice when its message's
	// deletion fails, and is used once.
	Duplicates int
}

// LoadRecords reads run records (JSON Lines, optionally gzipped) from a
// local directory or an s3://bucket/prefix, keeping the runs that ended
// within window before now (any time before now when window is 0) and
// either succeeded or were OOM-killed with a recorded allocation (samples
// marked Missed).
func LoadRecords(ctx context.Context, api S3API, source string, window time.Duration, now time.Time) (*Dataset, RecordStats, error) {
	var stats RecordStats
	since, within := now.Add(-window), fmt.Sprintf(" within the last %v", window)
	if window <= 0 {
		since, within = time.Time{}, ""
	}
	var records []*jobfleet.RunRecord
	read, err := runrecords.Read(ctx, api, source, since, func(rec *jobfleet.RunRecord) {
		succeeded := rec.Outcome == jobfleet.OutcomeSucceeded && rec.PeakBytes > 0
		missed := rec.Outcome == jobfleet.OutcomeOOM && rec.AllocatedBytes > 0
		switch {
		case !(succeeded || missed) || rec.EndedAt.Before(since) || rec.EndedAt.After(now):
			stats.Unusable++
			return
		case missed:
			stats.Missed++
		default:
			stats.Used++
		}
		records = append(records, rec)
	})
	stats.Files, stats.Records, stats.Malformed, stats.Duplicates = read.Files, read.Records, read.Malformed, read.Duplicates
	if err != nil {
		return nil, stats, err
	}
	if stats.Used == 0 {
		return nil, stats, fmt.Errorf("%w: no successful runs in %s%s (%d records read, %d malformed)", ErrNoData, source, within, stats.Records, stats.Malformed)
	}
	ds := RecordsDataset(records)
	ds.Until = now
	return ds, stats, nil
}

// RecordsDataset turns run records into samples over the union of their
// feature names. OOM-killed runs become samples marked Missed.
func RecordsDataset(records []*jobfleet.RunRecord) *Dataset {
	names := map[string]bool{}
	for _, r := range records {
		for name := range r.Features {
			names[name] = true
		}
	}
	features := make([]string, 0, len(names))
	for name := range names {
		features = append(features, name)
	}
	slices.Sort(features)
	ds := &Dataset{Features: features, Samples: make([]Sample, len(records))}
	for i, r := range records {
		x := make([]float64, len(features))
		for j, name := range features {
			v, ok := r.Features[name]
			if !ok {
				v = math.NaN()
			}
			x[j] = v
		}
		allocated := math.NaN()
		if r.AllocatedBytes > 0 {
			allocated = float64(r.AllocatedBytes)
		}
		var ended float64
		if !r.EndedAt.IsZero() {
			ended = float64(r.EndedAt.UnixMilli()) / 1e3
		}
		ds.Samples[i] = Sample{
			Time: float64(r.StartedAt.Unix()), Ended: ended, Type: r.Type, Pool: r.Pool, Features: x,
			Peak: float64(r.PeakBytes), Labels: r.Labels,
			Allocated: allocated, Missed: r.Outcome == jobfleet.OutcomeOOM, Predicted: float64(r.PredictedBytes),
			ResizedFrom: float64(r.ResizedFromBytes),
		}
	}
	return ds
}
