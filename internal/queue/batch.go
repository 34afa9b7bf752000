// Package queue holds jobfleet's SQS batching: sending and deleting in
// batches of ten (the SQS maximum) within the batch size limit, retrying the
// entries that failed on the server's side, and reporting the ones that
// could not be done.
package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Limits of SQS: entries and bytes of one batch call, and bytes of one
// message (its body and attributes).
const (
	MaxBatchEntries = 10
	MaxBatchBytes   = 1 << 20
	MaxMessageBytes = 1 << 20
)

// SendAPI is the SQS call Send makes.
type SendAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// DeleteAPI is the SQS call Delete makes.
type DeleteAPI interface {
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// Message is one message to send.
type Message struct {
	Body       string
	Attributes map[string]types.MessageAttributeValue
	// GroupID and DeduplicationID are for FIFO queues.
	GroupID         string
	DeduplicationID string
	DelaySeconds    int32
}

// Failure is a message or receipt that could not be sent or deleted.
type Failure struct {
	// Index is its position in the slice passed in.
	Index int
	Err   error
}

// Retry bounds the retries of failed entries. The SDK retries whole calls
// on its own; Retry covers entries that failed inside a successful call and
// calls the SDK gave up on.
type Retry struct {
	// Attempts is how many times an entry is tried; zero means 5.
	Attempts int
	// MaxBackoff caps the jittered exponential wait between attempts; zero
	// means 5s.
	MaxBackoff time.Duration
}

func (r Retry) attempts() int {
	if r.Attempts <= 0 {
		return 5
	}
	return r.Attempts
}

func (r Retry) backoff(attempt int) time.Duration {
	maxBackoff := r.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Second
	}
	d, err := retry.NewExponentialJitterBackoff(maxBackoff).BackoffDelay(attempt, nil)
	if err != nil {
		return maxBackoff
	}
	return d
}

// wait sleeps for the backoff of an attempt, or until ctx ends.
func (r Retry) wait(ctx context.Context, attempt int) error {
	t := time.NewTimer(r.backoff(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Send sends msgs to the queue in as few batch calls as the limits allow.
// It returns the messages that could not be sent, nil when all were.
func Send(ctx context.Context, api SendAPI, queueURL string, msgs []Message, r Retry) []Failure {
	pending := make([]int, len(msgs))
	for i := range msgs {
		pending[i] = i
	}
	return run(ctx, r, pending, func(ctx context.Context, batch []int) map[int]error {
		entries := make([]types.SendMessageBatchRequestEntry, len(batch))
		for i, idx := range batch {
			m := msgs[idx]
			entries[i] = types.SendMessageBatchRequestEntry{
				Id:                aws.String(strconv.Itoa(idx)),
				MessageBody:       aws.String(m.Body),
				MessageAttributes: m.Attributes,
				DelaySeconds:      m.DelaySeconds,
			}
			if m.GroupID != "" {
				entries[i].MessageGroupId = aws.String(m.GroupID)
			}
			if m.DeduplicationID != "" {
				entries[i].MessageDeduplicationId = aws.String(m.DeduplicationID)
			}
		}
		out, err := api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		if err != nil {
			return allFailed(batch, fmt.Errorf("sending messages: %w", err), true)
		}
		return entryFailures(out.Failed, "sending message")
	}, func(idx int) int { return Size(msgs[idx]) })
}

// Delete deletes messages by receipt handle. It returns the receipts that
// could not be deleted, nil when all were.
func Delete(ctx context.Context, api DeleteAPI, queueURL string, receipts []string, r Retry) []Failure {
	pending := make([]int, len(receipts))
	for i := range receipts {
		pending[i] = i
	}
	return run(ctx, r, pending, func(ctx context.Context, batch []int) map[int]error {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
		for i, idx := range batch {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(idx)), ReceiptHandle: aws.String(receipts[idx])}
		}
		out, err := api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		if err != nil {
			return allFailed(batch, fmt.Errorf("deleting messages: %w", err), true)
		}
		return entryFailures(out.Failed, "deleting message")
	}, func(int) int { return 0 })
}

// retryable marks an entry error worth another attempt.
type retryable struct{ error }

func (e retryable) Unwrap() error { return e.error }

func allFailed(batch []int, err error, canRetry bool) map[int]error {
	failed := make(map[int]error, len(batch))
	for _, idx := range batch {
		if canRetry {
			failed[idx] = retryable{err}
		} else {
			failed[idx] = err
		}
	}
	return failed
}

func entryFailures(entries []types.BatchResultErrorEntry, doing string) map[int]error {
	if len(entries) == 0 {
		return nil
	}
	failed := make(map[int]error, len(entries))
	for _, e := range entries {
		idx, err := strconv.Atoi(aws.ToString(e.Id))
		if err != nil {
			continue
		}
		entryErr := &EntryError{Code: aws.ToString(e.Code), Message: aws.ToString(e.Message), SenderFault: e.SenderFault}
		err = fmt.Errorf("%s: %w", doing, entryErr)
		if !e.SenderFault {
			err = retryable{err}
		}
		failed[idx] = err
	}
	return failed
}

// EntryError is SQS's report of one failed batch entry.
type EntryError struct {
	Code    string
	Message string
	// SenderFault is true when the entry itself is at fault and retrying
	// cannot help.
	SenderFault bool
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// run calls do on batches of pending indexes until every one succeeded or
// failed for good.
func run(ctx context.Context, r Retry, pending []int, do func(context.Context, []int) map[int]error, size func(int) int) []Failure {
	var failures []Failure
	for attempt := 1; len(pending) > 0; attempt++ {
		var again []int
		for _, batch := range batches(pending, size) {
			for idx, err := range do(ctx, batch) {
				var rerr retryable
				if errors.As(err, &rerr) && attempt < r.attempts() && ctx.Err() == nil {
					again = append(again, idx)
					continue
				}
				if errors.As(err, &rerr) {
					err = rerr.error
				}
				failures = append(failures, Failure{Index: idx, Err: err})
			}
		}
		slices.Sort(again) // keep the caller's order, for FIFO queues
		pending = again
		if len(pending) > 0 {
			if err := r.wait(ctx, attempt); err != nil {
				for _, idx := range pending {
					failures = append(failures, Failure{Index: idx, Err: fmt.Errorf("retrying after a failed batch: %w", err)})
				}
				break
			}
		}
	}
	return failures
}

// batches splits indexes into groups within the entry and byte limits.
func batches(indexes []int, size func(int) int) [][]int {
	var out [][]int
	var cur []int
	bytes := 0
	for _, idx := range indexes {
		n := size(idx)
		if len(cur) == MaxBatchEntries || (len(cur) > 0 && bytes+n > MaxBatchBytes) {
			out = append(out, cur)
			cur, bytes = nil, 0
		}
		cur = append(cur, idx)
		bytes += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Size is what SQS counts against its message and batch limits: the body
// plus attribute names, types and values.
func Size(m Message) int {
	n := len(m.Body)
	for name, v := range m.Attributes {
		n += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

// DeadLetter is a message for the dead-letter queue: the body as it
// arrived, its attributes (as many as SQS allows beside the reason; a run
// and attempt renamed AttrDeadRun and AttrDeadAttempt), and the reason in
// AttrError.
func DeadLetter(body string, attrs map[string]types.MessageAttributeValue, reason string) Message {
	dead := Message{Body: body, Attributes: map[string]types.MessageAttributeValue{}}
	renamed := map[string]string{AttrRun: AttrDeadRun, AttrAttempt: AttrDeadAttempt}
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		if k != AttrError && k != AttrBodyRef {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		if len(dead.Attributes) < 8 {
			name := k
			if r, ok := renamed[k]; ok {
				name = r
			}
			dead.Attributes[name] = attrs[k]
		}
	}
	if len(reason) > 1000 {
		reason = reason[:1000] + "..."
	}
	dead.Attributes[AttrError] = StringAttribute(reason)
	return dead
}

// StringAttribute is a String message attribute value.
func StringAttribute(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// NumberAttribute is a Number message attribute value.
func NumberAttribute(v int64) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(strconv.FormatInt(v, 10))}
}

// Message attributes jobfleet sets on job messages: the type (producers
// set it too), and on the messages jobfleet forwards and reruns, the run and
// the attempt number. The run and attempt name records in S3 that only
// jobfleet writes, so a message that carries them proves nothing by
// itself: the receiver checks them against those records.
const (
	AttrType    = "jobfleet-type"
	AttrRun     = "jobfleet-run"
	AttrAttempt = "jobfleet-attempt"
	AttrError   = "jobfleet-error"
	// AttrBodyRef points to the body of a dead-lettered message that was
	// too large to dead-letter whole, stored in S3 (an s3:// URI).
	AttrBodyRef = "jobfleet-body-ref"
	// AttrDeadRun and AttrDeadAttempt keep, on a dead letter, the run and
	// attempt it ended: renamed, so that a dead letter redriven to intake
	// is a new submission, not a rerun of a run that ended.
	AttrDeadRun     = "jobfleet-dead-run"
	AttrDeadAttempt = "jobfleet-dead-attempt"
	// AttrMemory is the class's memory on a forwarded job; AttrPredicted
	// the class memory the model's size alone gives it (the type's bounds
	// and the pool's class, without the dispatcher's raise after misses
	// or the OOM history of a rerun; absent when the model did not decide
	// the size). The worker records it with the attempt's run record.
	AttrMemory    = "jobfleet-memory"
	AttrPredicted = "jobfleet-predicted"
)

// Predicted reads the model's class a forwarded job carries, in bytes: 0
// when it carries none or one that is not a positive whole number.
func Predicted(attrs map[string]types.MessageAttributeValue) int64 {
	v, err := strconv.ParseInt(aws.ToString(attrs[AttrPredicted].StringValue), 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// JobMessage is an encoded job message with its type attribute, as
// producers publish it.
func JobMessage(body []byte, jobType string) Message {
	return Message{
		Body:       string(body),
		Attributes: map[string]types.MessageAttributeValue{AttrType: StringAttribute(jobType)},
	}
}

// ForwardMessage is a job message for attempt n of a run, as jobfleet
// forwards it to a class queue or reruns it through intake.
func ForwardMessage(body, jobType, run string, attempt int) Message {
	m := JobMessage([]byte(body), jobType)
	m.Attributes[AttrRun] = StringAttribute(run)
	m.Attributes[AttrAttempt] = NumberAttribute(int64(attempt))
	return m
}

// DeadRunAttempt reads the run and attempt a dead letter ended, if any.
func DeadRunAttempt(attrs map[string]types.MessageAttributeValue) (run string, attempt int) {
	run = aws.ToString(attrs[AttrDeadRun].StringValue)
	attempt, _ = strconv.Atoi(aws.ToString(attrs[AttrDeadAttempt].StringValue))
	return run, attempt
}

// RunAttempt reads the run and attempt attributes of a received message.
// ok is false when the message carries neither; err is set when it carries
// them malformed or only one of them.
func RunAttempt(attrs map[string]types.MessageAttributeValue) (run string, attempt int, ok bool, err error) {
	r, hasRun := attrs[AttrRun]
	a, hasAttempt := attrs[AttrAttempt]
	if !hasRun && !hasAttempt {
		return "", 0, false, nil
	}
	run = aws.ToString(r.StringValue)
	n, perr := strconv.Atoi(aws.ToString(a.StringValue))
	if !hasRun || !hasAttempt || run == "" || len(run) > 128 || strings.ContainsAny(run, "/\\") || perr != nil || n < 1 || n > 1000 {
		return "", 0, true, fmt.Errorf("malformed %s/%s attributes (%q, %q)", AttrRun, AttrAttempt, run, aws.ToString(a.StringValue))
	}
	return run, n, true, nil
}
