package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet"
)

// Bounds of a job's outputs.
const (
	// MaxOutputsFileBytes bounds the key/value outputs file: the outputs
	// travel in the job's state, its completion event and a Step Functions
	// result.
	MaxOutputsFileBytes = 64 << 10
	// MaxOutputs bounds its keys.
	MaxOutputs = 64
	// MaxOutputFiles bounds the files of the outputs directory.
	MaxOutputFiles = 10000
	// MaxOutputFileBytes is the largest output file: one S3 PutObject.
	MaxOutputFileBytes = 5 << 30
)

// ErrOutputs marks a job that succeeded but left outputs jobfleet cannot
// take: the attempt fails, without a retry, since a rerun writes the same.
var ErrOutputs = errors.New("invalid outputs")

// outputs is where one attempt's job leaves its outputs.
type outputs struct {
	dir  string // files uploaded when the job succeeds
	file string // the key/value outputs, a JSON object
}

// newOutputs makes an empty outputs directory for an attempt under work.
func newOutputs(work string) (*outputs, error) {
	dir, err := os.MkdirTemp(work, "jobfleet-outputs-*")
	if err != nil {
		return nil, fmt.Errorf("creating the outputs directory: %w", err)
	}
	base := filepath.Join(work, filepath.Base(dir)+".json")
	return &outputs{dir: dir, file: base}, nil
}

func (o *outputs) remove() {
	os.RemoveAll(o.dir)
	os.Remove(o.file)
}

// values reads the key/value outputs file: a JSON object whose values are
// strings, numbers or booleans (kept as their JSON text), keys shaped as
// label keys. No file means no values.
func (o *outputs) values() (map[string]string, error) {
	f, err := openRegular(o.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a regular file jobfleet can read: %w", ErrOutputs, EnvOutputsFile, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrOutputs, EnvOutputsFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxOutputsFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrOutputs, EnvOutputsFile, err)
	}
	if len(data) > MaxOutputsFileBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrOutputs, EnvOutputsFile, MaxOutputsFileBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %s is not a JSON object: %w", ErrOutputs, EnvOutputsFile, err)
	}
	if len(raw) > MaxOutputs {
		return nil, fmt.Errorf("%w: %s has %d keys, at most %d", ErrOutputs, EnvOutputsFile, len(raw), MaxOutputs)
	}
	values := make(map[string]string, len(raw))
	for k, v := range raw {
		if !jobfleet.LabelKeyPattern.MatchString(k) {
			return nil, fmt.Errorf("%w: %s: key %q must match %s", ErrOutputs, EnvOutputsFile, k, jobfleet.LabelKeyPattern)
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			values[k] = s
			continue
		}
		var n json.Number
		var b bool
		switch {
		case json.Unmarshal(v, &n) == nil:
			values[k] = n.String()
		case json.Unmarshal(v, &b) == nil:
			values[k] = strconv.FormatBool(b)
		default:
			return nil, fmt.Errorf("%w: %s: %q must be a string, a number or a boolean", ErrOutputs, EnvOutputsFile, k)
		}
	}
	return values, nil
}

// upload stores the outputs directory's regular files under prefix, by
// their paths, and returns how many it stored. Symbolic links and other
// special files are not followed.
func (o *outputs) upload(ctx context.Context, api S3API, bucket, prefix string) (int, error) {
	n := 0
	err := filepath.WalkDir(o.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == o.dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll // the job removed the directory: no files
			}
			return fmt.Errorf("%w: %w", ErrOutputs, err)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if n++; n > MaxOutputFiles {
			return fmt.Errorf("%w: the outputs directory holds more than %d files", ErrOutputs, MaxOutputFiles)
		}
		if info, err := d.Info(); err != nil || info.Size() > MaxOutputFileBytes {
			return fmt.Errorf("%w: %s is larger than %d bytes, or unreadable", ErrOutputs, p, int64(MaxOutputFileBytes))
		}
		rel, err := filepath.Rel(o.dir, p)
		if err != nil {
			return err
		}
		return putFile(ctx, api, bucket, path.Join(prefix, filepath.ToSlash(rel)), p)
	})
	if err != nil {
		return 0, fmt.Errorf("uploading outputs: %w", err)
	}
	return n, nil
}

// putFile uploads one file with its SHA-256, which S3 checks. A file the
// worker cannot read is ErrOutputs: reading it again will not help.
func putFile(ctx context.Context, api S3API, bucket, key, p string) error {
	f, err := openRegular(p)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOutputs, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is no longer a regular file", ErrOutputs, p)
	}
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOutputs, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%w: %w", ErrOutputs, err)
	}
	_, err = api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: f, ContentLength: aws.Int64(size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil))),
	})
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}
