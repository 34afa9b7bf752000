package testenv

import (
	"context"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet/internal/localstack"
)

// S3 is an S3 server for tests.
type S3 struct {
	// Endpoint is the server's URL.
	Endpoint string
	// Client talks to it with path-style addressing.
	Client *s3.Client
	// Server is the server itself, to stop and restart.
	Server *localstack.S3Server
}

var (
	s3Once   sync.Once
	s3Shared *S3
	s3Err    error
)

// StartS3 returns the test binary's shared S3 server.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	s3Once.Do(func() {
		server, err := localstack.StartS3(0)
		if err != nil {
			s3Err = err
			return
		}
		onStop(server.Stop)
		s3Shared = &S3{Endpoint: server.Endpoint, Client: NewS3Client(server.Endpoint), Server: server}
	})
	if s3Err != nil {
		t.Fatalf("starting the S3 server: %v", s3Err)
	}
	return s3Shared
}

// NewS3 starts an S3 server of the test's own, for tests that stop and
// restart it.
func NewS3(t testing.TB) *S3 {
	t.Helper()
	server, err := localstack.StartS3(0)
	if err != nil {
		t.Fatalf("starting an S3 server: %v", err)
	}
	t.Cleanup(server.Stop)
	return &S3{Endpoint: server.Endpoint, Client: NewS3Client(server.Endpoint), Server: server}
}

// NewS3Client returns an S3 client for the endpoint.
func NewS3Client(endpoint string) *s3.Client {
	return s3.NewFromConfig(AWSConfig(), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true
	})
}

// CreateBucket creates a uniquely named bucket for the test, emptied and
// deleted when it ends.
func (s *S3) CreateBucket(t testing.TB) string {
	t.Helper()
	name := UniqueName(t, "jf-", 63)
	if _, err := s.Client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		pages := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: aws.String(name)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return
			}
			for _, obj := range page.Contents {
				_, _ = s.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(name), Key: obj.Key})
			}
		}
		_, _ = s.Client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)})
	})
	return name
}

// Env returns the environment a child process needs to reach the server.
func (s *S3) Env() []string {
	return []string{"AWS_ENDPOINT_URL_S3=" + s.Endpoint}
}
