package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// S3API is the S3 calls the contract's objects need; *s3.Client implements
// it.
type S3API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Errors of the store.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("no such object")
	// ErrConflict: a conditional write lost, because the object exists
	// (create) or changed since it was read (replace).
	ErrConflict = errors.New("the object changed concurrently")
)

// maxObjectBytes bounds what is read of one object: every contract object
// is small, and a huge one is not ours.
const maxObjectBytes = 4 << 20

// Store reads and writes the contract's objects in one bucket under one
// prefix.
type Store struct {
	S3     S3API
	Bucket string
	// Prefix starts every key; DefaultPrefix when empty.
	Prefix string
}

// DefaultPrefix is the key prefix when none is configured.
const DefaultPrefix = "jobfleet"

func (s Store) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// get reads a JSON object into v and returns its ETag.
func (s Store) get(ctx context.Context, key string, v any) (string, error) {
	out, err := s.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		if IsNotFound(err) {
			return "", fmt.Errorf("reading s3://%s/%s: %w", s.Bucket, key, ErrNotFound)
		}
		return "", fmt.Errorf("reading s3://%s/%s: %w", s.Bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxObjectBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading s3://%s/%s: %w", s.Bucket, key, err)
	}
	if len(data) > maxObjectBytes {
		return "", fmt.Errorf("reading s3://%s/%s: larger than %d bytes", s.Bucket, key, maxObjectBytes)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return "", fmt.Errorf("decoding s3://%s/%s: %w", s.Bucket, key, err)
	}
	return aws.ToString(out.ETag), nil
}

// write puts a JSON object. With create it must not exist yet; with a
// non-empty ifMatch it must still have that ETag. It returns the new ETag.
func (s Store) write(ctx context.Context, key string, v any, create bool, ifMatch string) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding s3://%s/%s: %w", s.Bucket, key, err)
	}
	in := &s3.PutObjectInput{
		Bucket:      aws.String(s.Bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(data),
		ContentType: aws.String("application/json"),
	}
	if create {
		in.IfNoneMatch = aws.String("*")
	}
	if ifMatch != "" {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := s.S3.PutObject(ctx, in)
	if err != nil {
		if IsPreconditionFailed(err) {
			return "", fmt.Errorf("writing s3://%s/%s: %w", s.Bucket, key, ErrConflict)
		}
		return "", fmt.Errorf("writing s3://%s/%s: %w", s.Bucket, key, err)
	}
	return aws.ToString(out.ETag), nil
}

// remove deletes an object; a missing object is not an error.
func (s Store) remove(ctx context.Context, key string) error {
	_, err := s.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("deleting s3://%s/%s: %w", s.Bucket, key, err)
	}
	return nil
}

// IsNotFound reports whether an S3 error says the object (or its bucket)
// does not exist.
func IsNotFound(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NotFound", "404":
			return true
		}
	}
	return errors.Is(err, ErrNotFound)
}

// IsPreconditionFailed reports whether an S3 conditional write lost.
func IsPreconditionFailed(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict", "412", "409":
			return true
		}
	}
	return false
}
