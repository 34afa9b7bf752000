package localstack_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/jobfleet/jobfleet/internal/localstack"
)

// TestPortTaken checks that a taken port gets a message that says so and
// what to do, for both servers.
func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	const want = "the port is taken; stop what uses it or choose another port"

	if _, err := localstack.StartS3(port); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("StartS3 on a taken port: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if s, err := localstack.StartSQS(ctx, localstack.SQSOptions{Port: port}); err == nil || !strings.Contains(err.Error(), want) {
		if s != nil {
			s.Stop()
		}
		t.Errorf("StartSQS on a taken port: %v", err)
	}
}

// TestReplacedObjectReadsBack checks that an object replaced by a write
// that names another checksum, or none, reads back: a client that validates
// checksums must never see the replaced object's.
func TestReplacedObjectReadsBack(t *testing.T) {
	srv, err := localstack.StartS3(0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	client := func(calc aws.RequestChecksumCalculation) *s3.Client {
		return s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint, o.UsePathStyle, o.RequestChecksumCalculation = aws.String(srv.Endpoint), true, calc
		})
	}
	withChecksum, without := client(aws.RequestChecksumCalculationWhenSupported), client(aws.RequestChecksumCalculationWhenRequired)
	ctx := t.Context()
	if _, err := withChecksum.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket")}); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*s3.Client{withChecksum, without, withChecksum} {
		body := strings.Repeat("x", i+1)
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket"), Key: aws.String("k"), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
		out, err := withChecksum.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("k"), ChecksumMode: s3types.ChecksumModeEnabled})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || string(got) != body {
			t.Fatalf("write %d read back %q, %v; want %q", i, got, err, body)
		}
	}
}
