package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet/internal/contract"
)

// ListAPI lists objects; the leader lists the class markers with it.
type ListAPI interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// S3API is the S3 calls of the dispatcher: runs, class markers, dead
// letters too large for SQS, and (with the failure sensor) claims.
type S3API interface {
	contract.S3API
	ListAPI
}

// markers are the classes wanted, one S3 object each: any replica writes a
// class's marker to ask the leader for it (the object's time says when it
// was last asked for), and the leader lists them to know every class that
// should exist, removing a marker with its class.
type markers struct {
	s3     S3API
	bucket string
	prefix string // <prefix>/classes/
}

// marker is a wanted class and when it was last asked for.
type marker struct {
	Class     Class
	Requested time.Time
}

func newMarkers(api S3API, bucket, prefix string) *markers {
	if prefix == "" {
		prefix = contract.DefaultPrefix
	}
	return &markers{s3: api, bucket: bucket, prefix: path.Join(prefix, "classes") + "/"}
}

func (m *markers) key(name string) string { return m.prefix + name + ".json" }

// request writes a class's marker, asking for the class now.
func (m *markers) request(ctx context.Context, name string, cl Class) error {
	data, err := json.Marshal(cl)
	if err != nil {
		return err
	}
	_, err = m.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(m.bucket), Key: aws.String(m.key(name)), Body: bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("writing the marker of class %s: %w", name, err)
	}
	return nil
}

// list returns every wanted class, by name.
func (m *markers) list(ctx context.Context) (map[string]marker, error) {
	out := map[string]marker{}
	var token *string
	for {
		page, err := m.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(m.bucket), Prefix: aws.String(m.prefix), ContinuationToken: token})
		if err != nil {
			return nil, fmt.Errorf("listing class markers: %w", err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			if !strings.HasSuffix(key, ".json") {
				continue
			}
			cl, err := m.read(ctx, key)
			if errors.Is(err, contract.ErrNotFound) {
				continue // removed since the listing
			}
			if err != nil {
				return nil, err
			}
			name := strings.TrimSuffix(strings.TrimPrefix(key, m.prefix), ".json")
			out[name] = marker{Class: *cl, Requested: aws.ToTime(obj.LastModified)}
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		token = page.NextContinuationToken
	}
}

func (m *markers) read(ctx context.Context, key string) (*Class, error) {
	out, err := m.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(m.bucket), Key: aws.String(key)})
	if contract.IsNotFound(err) {
		return nil, contract.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading class marker %s: %w", key, err)
	}
	defer out.Body.Close()
	var cl Class
	if err := json.NewDecoder(out.Body).Decode(&cl); err != nil {
		return nil, fmt.Errorf("decoding class marker %s: %w", key, err)
	}
	return &cl, nil
}

// remove deletes a class's marker.
func (m *markers) remove(ctx context.Context, name string) error {
	_, err := m.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(m.bucket), Key: aws.String(m.key(name))})
	if err != nil && !contract.IsNotFound(err) {
		return fmt.Errorf("deleting the marker of class %s: %w", name, err)
	}
	return nil
}
