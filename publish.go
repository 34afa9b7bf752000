package jobfleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/internal/queue"
)

// Message attributes jobfleet sets on job messages, so that queues can be
// inspected (and filtered) without reading bodies. A Publisher sets
// AttrType; jobfleet adds the run and attempt when it forwards a job, and the
// reason when it dead-letters one.
const (
	AttrType    = queue.AttrType
	AttrRun     = queue.AttrRun
	AttrAttempt = queue.AttrAttempt
	// AttrError carries the reason on dead-lettered messages.
	AttrError = queue.AttrError
)

// SendMessageBatchAPI is the SQS call a Publisher makes; *sqs.Client
// implements it.
type SendMessageBatchAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Publisher sends job messages to jobfleet's intake queue.
type Publisher struct {
	client   SendMessageBatchAPI
	queueURL string
}

// NewPublisher returns a Publisher that sends to the queue at queueURL.
func NewPublisher(client SendMessageBatchAPI, queueURL string) *Publisher {
	return &Publisher{client: client, queueURL: queueURL}
}

// PublishError lists the jobs that were not published. Jobs not listed were.
type PublishError struct {
	// Failed maps the index of each job that was not published, in the
	// slice given to Publish, to why.
	Failed map[int]error
}

func (e *PublishError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d jobs not published", len(e.Failed))
	for idx, err := range e.Failed {
		fmt.Fprintf(&b, "; job %d: %v", idx, err)
		if b.Len() > 2000 {
			b.WriteString("; ...")
			break
		}
	}
	return b.String()
}

// Unwrap returns the individual errors.
func (e *PublishError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failed))
	for _, err := range e.Failed {
		errs = append(errs, err)
	}
	return errs
}

// Publish validates every job, then sends the valid ones in batches of up to
// ten, retrying entries that fail on the server's side. Invalid jobs are not
// sent. When any job was not published it returns a *PublishError naming
// them; the others were published.
func (p *Publisher) Publish(ctx context.Context, jobs ...*Job) error {
	failed := map[int]error{}
	var msgs []queue.Message
	var index []int
	for i, job := range jobs {
		body, err := Encode(job)
		if err != nil {
			failed[i] = err
			continue
		}
		msg := queue.JobMessage(body, job.Type)
		if strings.HasSuffix(p.queueURL, ".fifo") {
			msg.GroupID = job.Type
			msg.DeduplicationID = DeduplicationID(job)
		}
		msgs = append(msgs, msg)
		index = append(index, i)
	}
	for _, f := range queue.Send(ctx, p.client, p.queueURL, msgs, queue.Retry{}) {
		failed[index[f.Index]] = f.Err
	}
	if len(failed) > 0 {
		return &PublishError{Failed: failed}
	}
	return nil
}

// Encode validates a job and encodes it as a job message.
func Encode(job *Job) ([]byte, error) {
	if err := job.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(job)
	if err != nil {
		return nil, fmt.Errorf("encoding job %s: %w", job.ID, err)
	}
	if len(body) > MaxMessageBytes {
		return nil, messageError("", ErrTooLarge, "%d bytes encoded, the limit is %d", len(body), MaxMessageBytes)
	}
	return body, nil
}

// DeduplicationID is the FIFO deduplication id of a job: its id, the
// idempotency key.
func DeduplicationID(job *Job) string {
	return job.ID
}

// IsInvalid reports whether err says a job message was invalid, as opposed
// to a failure to reach SQS.
func IsInvalid(err error) bool {
	var msgErr *MessageError
	return errors.As(err, &msgErr)
}
