// Package runrecords reads the run records workers store (JSON Lines,
// optionally gzipped, under dt=YYYY-MM-DD partitions) from a local
// directory or an S3 prefix.
package runrecords

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/awsclient"
)

// S3API is the S3 calls reading records from S3 makes.
type S3API interface {
	s3.ListObjectsV2APIClient
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Stats counts what reading found.
type Stats struct {
	Files     int
	Records   int
	Malformed int
	// Duplicates are records of an attempt already read (the same job,
	// run and attempt): a record is stored twice when its message's
	// deletion fails after the store, and each is called once.
	Duplicates int
}

// Attempt names the attempt a run record describes: records of the same
// attempt are one run, however often they were stored.
type Attempt struct {
	Job, Run string
	N        int
}

// AttemptOf is the attempt rec describes.
func AttemptOf(rec *jobfleet.RunRecord) Attempt { return Attempt{rec.JobID, rec.Run, rec.Attempt} }

// ReadFile calls each for every well-formed record of one records file,
// r, gzipped when name ends in .gz. It counts the records (the non-empty
// lines) and those malformed; a file that is not gzip, or is truncated or
// corrupt, counts as one more malformed.
func ReadFile(name string, r io.Reader, each func(*jobfleet.RunRecord)) (records, malformed int) {
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return 0, 1
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
		records++
		rec, err := jobfleet.DecodeRunRecord(line)
		if err != nil {
			malformed++
			continue
		}
		each(rec)
	}
	if scanner.Err() != nil {
		malformed++
	}
	return records, malformed
}

// IsFile reports whether name is a records file: JSON Lines, gzipped or
// not.
func IsFile(name string) bool {
	return strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".jsonl.gz")
}

// datePartition matches the dt=YYYY-MM-DD path segment records are stored
// under, so reading a window skips older partitions without opening them.
var datePartition = regexp.MustCompile(`dt=(\d{4}-\d{2}-\d{2})`)

// Read calls each for every well-formed record in source (a directory or
// s3://bucket/prefix), skipping partitions of days before since (zero:
// none), once per attempt. Malformed lines, and files that are not gzip or
// are truncated, are counted, not errors; failing to list or open is.
func Read(ctx context.Context, api S3API, source string, since time.Time, each func(*jobfleet.RunRecord)) (Stats, error) {
	var stats Stats
	seen := map[Attempt]bool{}
	add := func(name string, r io.Reader) {
		stats.Files++
		records, malformed := ReadFile(name, r, func(rec *jobfleet.RunRecord) {
			a := AttemptOf(rec)
			if seen[a] {
				stats.Duplicates++
				return
			}
			seen[a] = true
			each(rec)
		})
		stats.Records += records
		stats.Malformed += malformed
	}
	skip := func(name string) bool {
		if m := datePartition.FindStringSubmatch(name); m != nil && !since.IsZero() {
			if day, err := time.Parse("2006-01-02", m[1]); err == nil && day.Before(since.Truncate(24*time.Hour)) {
				return true
			}
		}
		return !IsFile(name)
	}
	if strings.HasPrefix(source, "s3://") {
		bucket, prefix, err := awsclient.ParseS3URI(source)
		if err != nil {
			return stats, err
		}
		pages := s3.NewListObjectsV2Paginator(api, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return stats, fmt.Errorf("listing run records in %s: %w", source, err)
			}
			for _, obj := range page.Contents {
				key := aws.ToString(obj.Key)
				if skip(key) {
					continue
				}
				out, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: obj.Key})
				if err != nil {
					return stats, fmt.Errorf("reading run records s3://%s/%s: %w", bucket, key, err)
				}
				add(key, out.Body)
				out.Body.Close()
			}
		}
		return stats, nil
	}
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
		add(path, f)
		return nil
	})
	if err != nil {
		return stats, fmt.Errorf("reading run records in %s: %w", source, err)
	}
	return stats, nil
}
