package predictor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rs/zerolog"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet/internal/awsclient"
)

// S3API is the S3 calls the predictor makes for model files and run
// records.
type S3API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// Save writes the model to a local path or an s3:// URI. A local file is
// written to a temporary name and renamed, so readers never see half of it.
func Save(ctx context.Context, api S3API, location string, m *Model) error {
	var buf bytes.Buffer
	if err := m.Write(&buf); err != nil {
		return err
	}
	if strings.HasPrefix(location, "s3://") {
		bucket, key, err := awsclient.ParseS3URI(location)
		if err != nil {
			return err
		}
		if api == nil {
			return errors.New("saving to S3 needs an S3 client")
		}
		_, err = api.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(buf.Bytes()), ContentType: aws.String("application/json")})
		if err != nil {
			return fmt.Errorf("writing model to %s: %w", location, err)
		}
		return nil
	}
	tmp := location + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing model: %w", err)
	}
	if err := os.Rename(tmp, location); err != nil {
		return fmt.Errorf("writing model: %w", err)
	}
	return nil
}

// fetch reads a model file's bytes and a version tag (ETag or mtime) from a
// local path or s3:// URI. It returns the current tag and no data when the
// file has not changed since lastTag.
func fetch(ctx context.Context, api S3API, location, lastTag string) (data []byte, tag string, err error) {
	if strings.HasPrefix(location, "s3://") {
		bucket, key, err := awsclient.ParseS3URI(location)
		if err != nil {
			return nil, "", err
		}
		in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
		if lastTag != "" {
			in.IfNoneMatch = aws.String(lastTag)
		}
		out, err := api.GetObject(ctx, in)
		if err != nil {
			if isNotModified(err) {
				return nil, lastTag, nil
			}
			return nil, "", fmt.Errorf("reading model %s: %w", location, err)
		}
		defer out.Body.Close()
		data, err := io.ReadAll(io.LimitReader(out.Body, 1<<30))
		if err != nil {
			return nil, "", fmt.Errorf("reading model %s: %w", location, err)
		}
		return data, aws.ToString(out.ETag), nil
	}
	info, err := os.Stat(location)
	if err != nil {
		return nil, "", fmt.Errorf("reading model: %w", err)
	}
	tag = fmt.Sprintf("%d-%d", info.ModTime().UnixNano(), info.Size())
	if tag == lastTag {
		return nil, tag, nil
	}
	data, err = os.ReadFile(location)
	if err != nil {
		return nil, "", fmt.Errorf("reading model: %w", err)
	}
	return data, tag, nil
}

func isNotModified(err error) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == 304
}

// Load reads and checks a model from a local path or s3:// URI.
func Load(ctx context.Context, api S3API, location string) (*Model, error) {
	data, _, err := fetch(ctx, api, location, "")
	if err != nil {
		return nil, err
	}
	return ReadModel(bytes.NewReader(data))
}

// Reloader keeps the latest good model from a location, checking it for a
// new version every Interval. A new file that is corrupt or incompatible is
// rejected with a logged error, and the last good model stays in use.
type Reloader struct {
	location string
	api      S3API
	interval time.Duration
	clock    clock.Clock
	log      zerolog.Logger
	current  atomic.Pointer[Model]
	tag      string
	// OnReload, if set, is called after every check with the error, if any.
	OnReload func(changed bool, err error)
}

// NewReloader returns a reloader for the model at location. It does not
// load anything until Check or Run.
func NewReloader(location string, api S3API, interval time.Duration, log zerolog.Logger, clk clock.Clock) *Reloader {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Reloader{location: location, api: api, interval: interval, clock: clk, log: log}
}

// Model returns the current model, nil before one loaded.
func (r *Reloader) Model() *Model { return r.current.Load() }

// Check loads the model if it changed. It returns whether it did.
func (r *Reloader) Check(ctx context.Context) (bool, error) {
	data, tag, err := fetch(ctx, r.api, r.location, r.tag)
	if err != nil {
		return false, err
	}
	if data == nil {
		return false, nil
	}
	m, err := ReadModel(bytes.NewReader(data))
	if err != nil {
		// Do not retry the same bad file every interval.
		r.tag = tag
		return false, fmt.Errorf("rejected model %s (keeping the last good one): %w", r.location, err)
	}
	r.tag = tag
	r.current.Store(m)
	return true, nil
}

// Run checks for a new model every interval until ctx ends.
func (r *Reloader) Run(ctx context.Context) {
	for {
		changed, err := r.Check(ctx)
		switch {
		case err != nil:
			r.log.Error().Err(err).Str("model", r.location).Msg("model not reloaded")
		case changed:
			m := r.Model()
			r.log.Info().Str("model", r.location).Int("types", len(m.f.Types)).Time("trained_at", m.f.TrainedAt).Msg("loaded model")
		}
		if r.OnReload != nil {
			r.OnReload(changed, err)
		}
		t := r.clock.NewTimer(r.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
