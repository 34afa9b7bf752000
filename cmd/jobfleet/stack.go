package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/internal/localstack"
)

// StackCmd runs the local stack.
type StackCmd struct {
	SQSPort int    `name:"sqs-port" env:"JOBFLEET_SQS_PORT" default:"4566" help:"Loopback port of the SQS emulator (0 picks a free one)."`
	S3Port  int    `name:"s3-port" env:"JOBFLEET_S3_PORT" default:"4567" help:"Loopback port of the S3 server (0 picks a free one)."`
	Queue   string `name:"queue" env:"JOBFLEET_QUEUE" default:"jobfleet-intake" help:"Intake queue to create."`
	Bucket  string `name:"bucket" env:"JOBFLEET_BUCKET" default:"jobfleet" help:"S3 bucket to create."`
}

// Run starts the servers, creates the intake queue and bucket, prints how to
// use them, and waits for a signal.
func (c *StackCmd) Run(ctx context.Context, g *Globals) error {
	sqsServer, err := localstack.StartSQS(ctx, localstack.SQSOptions{Port: c.SQSPort, Log: g.stderr})
	if err != nil {
		return err
	}
	defer sqsServer.Stop()
	s3Server, err := localstack.StartS3(c.S3Port)
	if err != nil {
		return err
	}
	defer s3Server.Stop()

	cfg := aws.Config{Region: awsclient.DefaultRegion, Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	sqsClient := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(sqsServer.Endpoint) })
	out, err := sqsClient.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(c.Queue)})
	if err != nil {
		return fmt.Errorf("creating queue %s: %w", c.Queue, err)
	}
	s3Client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(s3Server.Endpoint)
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	if _, err := s3Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(c.Bucket)}); err != nil {
		return fmt.Errorf("creating bucket %s: %w", c.Bucket, err)
	}

	fmt.Fprintf(g.stdout, `jobfleet local stack is up; Ctrl-C stops it.

  SQS emulator  %s   intake queue %s
  S3 server     %s   bucket %s

In another terminal:

  export AWS_ENDPOINT_URL_SQS=%s AWS_ENDPOINT_URL_S3=%s
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  go run ./cmd/jobfleet publish --queue %s --type demo --feature rows=1000 --print-ids
`, sqsServer.Endpoint, aws.ToString(out.QueueUrl), s3Server.Endpoint, c.Bucket, sqsServer.Endpoint, s3Server.Endpoint, c.Queue)

	select {
	case <-ctx.Done():
		return nil
	case <-sqsServer.Done():
		return errors.New("the SQS emulator exited")
	}
}
