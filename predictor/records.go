package predictor

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet"
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
}

// datePartition matches the dt=YYYY-MM-DD path segment records are stored
// under, so reading a window skips older partitions without opening them.
var datePartition = regexp.MustCompile(`dt=(\d{4}-\d{2}-\d{2})`)

// LoadRecords reads run records (JSON Lines, optionally gzipped) from a
// local directory or an s3://bucket/prefix, keeping the runs that ended
// within window before now and either succeeded or were OOM-killed with a
// recorded allocation (samples marked Missed).
func LoadRecords(ctx context.Context, api S3API, source string, window time.Duration, now time.Time) (*Dataset, RecordStats, error) {
	var stats RecordStats
	since := now.Add(-window)
	var records []*jobfleet.RunRecord
	add := func(name string, r io.Reader) error {
		stats.Files++
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				stats.Malformed++
				return nil
			}
			defer zr.Close()
			r = zr
		}
		scanner := bufio.NewScanner(r)
		scanner.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for scanner.Scan() {
			line := bytes.TrimSpace(scanner.Bytes())
			if len(line) == 0 {
				continue
			}
			stats.Records++
			rec, err := jobfleet.DecodeRunRecord(line)
			if err != nil {
				stats.Malformed++
				continue
			}
			succeeded := rec.Outcome == jobfleet.OutcomeSucceeded && rec.PeakBytes > 0
			missed := rec.Outcome == jobfleet.OutcomeOOM && rec.AllocatedBytes > 0
			if !(succeeded || missed) || rec.EndedAt.Before(since) || rec.EndedAt.After(now) {
				stats.Unusable++
				continue
			}
			if missed {
				stats.Missed++
			} else {
				stats.Used++
			}
			records = append(records, rec)
		}
		if err := scanner.Err(); err != nil {
			stats.Malformed++ // a truncated or corrupt file
		}
		return nil
	}
	skip := func(name string) bool {
		if m := datePartition.FindStringSubmatch(name); m != nil {
			if day, err := time.Parse("2006-01-02", m[1]); err == nil && day.Before(since.Truncate(24*time.Hour)) {
				return true
			}
		}
		return !strings.HasSuffix(name, ".jsonl") && !strings.HasSuffix(name, ".jsonl.gz")
	}
	if strings.HasPrefix(source, "s3://") {
		bucket, prefix, err := ParseS3URI(source)
		if err != nil {
			return nil, stats, err
		}
		pages := s3.NewListObjectsV2Paginator(api, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, stats, fmt.Errorf("listing run records in %s: %w", source, err)
			}
			for _, obj := range page.Contents {
				key := aws.ToString(obj.Key)
				if skip(key) {
					continue
				}
				out, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: obj.Key})
				if err != nil {
					return nil, stats, fmt.Errorf("reading run records s3://%s/%s: %w", bucket, key, err)
				}
				err = add(key, out.Body)
				out.Body.Close()
				if err != nil {
					return nil, stats, err
				}
			}
		}
	} else {
		err := filepath.WalkDir(source, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || skip(path) {
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return add(path, f)
		})
		if err != nil {
			return nil, stats, fmt.Errorf("reading run records in %s: %w", source, err)
		}
	}
	if stats.Used == 0 {
		return nil, stats, fmt.Errorf("%w: no successful runs in %s within the last %v (%d records read, %d malformed)", ErrNoData, source, window, stats.Records, stats.Malformed)
	}
	return RecordsDataset(records), stats, nil
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
		ds.Samples[i] = Sample{
			Time: float64(r.StartedAt.Unix()), Type: r.Type, Pool: r.Pool, Features: x,
			Peak: float64(r.PeakBytes), Baseline: float64(r.AllocatedBytes),
			Allocated: allocated, Missed: r.Outcome == jobfleet.OutcomeOOM,
		}
	}
	return ds
}
