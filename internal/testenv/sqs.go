package testenv

import (
	"context"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/jobfleet/jobfleet/internal/localstack"
)

// SQS is the shared SQS emulator of a test binary.
type SQS struct {
	// Endpoint is the emulator's URL.
	Endpoint string
	// Client talks to it.
	Client *sqs.Client
}

var (
	sqsOnce   sync.Once
	sqsShared *SQS
	sqsErr    error
)

// StartSQS returns the test binary's SQS emulator, starting it (and
// installing it with npm, the first time on a machine) when needed. A test
// that needs SQS fails when the emulator cannot start; it is never skipped.
func StartSQS(t testing.TB) *SQS {
	t.Helper()
	sqsOnce.Do(func() {
		server, err := startSQSEmulator()
		if err != nil {
			sqsErr = err
			return
		}
		onStop(server.Stop)
		sqsShared = &SQS{Endpoint: server.Endpoint, Client: NewSQSClient(server.Endpoint)}
	})
	if sqsErr != nil {
		t.Fatalf("starting the SQS emulator: %v", sqsErr)
	}
	return sqsShared
}

// startSQSEmulator starts an emulator, logging to stderr when the tests
// run verbosely.
func startSQSEmulator() (*localstack.SQSServer, error) {
	var logw io.Writer = io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return localstack.StartSQS(ctx, localstack.SQSOptions{Log: logw})
}

// NewSQSClient returns an SQS client for the endpoint.
func NewSQSClient(endpoint string) *sqs.Client {
	return sqs.NewFromConfig(AWSConfig(), func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})
}

// CreateQueue creates a uniquely named queue for the test, deleted when it
// ends, and returns its URL. Attributes are SQS queue attributes such as
// VisibilityTimeout.
func (s *SQS) CreateQueue(t testing.TB, prefix string, attributes map[string]string) string {
	t.Helper()
	name := UniqueName(t, prefix, 80)
	out, err := s.Client.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attributes})
	if err != nil {
		t.Fatalf("creating queue %s: %v", name, err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		_, _ = s.Client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	})
	return url
}

// Receive drains up to n messages from the queue, with their attributes,
// waiting for them up to the test's deadline. It deletes what it receives
// when del is true.
func (s *SQS) Receive(t testing.TB, url string, n int, del bool) []types.Message {
	t.Helper()
	var got []types.Message
	for len(got) < n {
		out, err := s.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(url),
			MaxNumberOfMessages:         int32(min(10, n-len(got))),
			WaitTimeSeconds:             1,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		if err != nil {
			t.Fatalf("receiving from %s after %d of %d messages: %v", url, len(got), n, err)
		}
		got = append(got, out.Messages...)
		if del && len(out.Messages) > 0 {
			entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
			for i, m := range out.Messages {
				entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
			}
			res, err := s.Client.DeleteMessageBatch(t.Context(), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
			if err != nil || len(res.Failed) > 0 {
				t.Fatalf("deleting messages: %v %v", err, res)
			}
		}
	}
	return got
}

// Depth returns the queue's visible and in-flight message counts.
func (s *SQS) Depth(t testing.TB, url string) (visible, inFlight int) {
	t.Helper()
	out, err := s.Client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		t.Fatalf("reading the depth of %s: %v", url, err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight
}

// Env returns the environment a child process needs to reach the emulator
// through the AWS SDK's standard settings.
func (s *SQS) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_SQS=" + s.Endpoint,
		"AWS_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
	}
}

// NewSQS starts an SQS emulator of the test's own, for tests whose load
// would slow the shared one for every other test.
func NewSQS(t testing.TB) *SQS {
	t.Helper()
	server, err := startSQSEmulator()
	if err != nil {
		t.Fatalf("starting an SQS emulator: %v", err)
	}
	t.Cleanup(server.Stop)
	return &SQS{Endpoint: server.Endpoint, Client: NewSQSClient(server.Endpoint)}
}
