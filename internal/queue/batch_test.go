package queue

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// recordingSQS is a fake for the batching logic only: it records every call
// and fails the entries its script says to.
type recordingSQS struct {
	mu    sync.Mutex
	calls [][]string // bodies (or receipts) of each call
	// fail decides, per call number and entry body, whether the entry fails
	// and whether it is the sender's fault.
	fail func(call int, body string) (failed, senderFault bool)
	// callErr fails whole calls.
	callErr func(call int) error
}

func (r *recordingSQS) record(bodies []string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, bodies)
	return len(r.calls)
}

func (r *recordingSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	var bodies []string
	for _, e := range in.Entries {
		bodies = append(bodies, aws.ToString(e.MessageBody))
	}
	call := r.record(bodies)
	if r.callErr != nil {
		if err := r.callErr(call); err != nil {
			return nil, err
		}
	}
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		if r.fail != nil {
			if failed, sender := r.fail(call, aws.ToString(e.MessageBody)); failed {
				out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("try again"), SenderFault: sender})
				continue
			}
		}
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (r *recordingSQS) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	var receipts []string
	for _, e := range in.Entries {
		receipts = append(receipts, aws.ToString(e.ReceiptHandle))
	}
	call := r.record(receipts)
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		if r.fail != nil {
			if failed, sender := r.fail(call, aws.ToString(e.ReceiptHandle)); failed {
				out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("gone"), SenderFault: sender})
				continue
			}
		}
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

var fast = Retry{Attempts: 3, MaxBackoff: time.Millisecond}

func messages(n, size int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		body := strconv.Itoa(i)
		msgs[i] = Message{Body: body + strings.Repeat("x", max(0, size-len(body)))}
	}
	return msgs
}

func TestSendBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		n, size   int
		wantCalls int
	}{
		{name: "one partial batch", n: 3, size: 10, wantCalls: 1},
		{name: "exactly ten", n: 10, size: 10, wantCalls: 1},
		{name: "twenty-five small", n: 25, size: 10, wantCalls: 3},
		{name: "large messages split by bytes", n: 10, size: 300 << 10, wantCalls: 4}, // 3 per MiB
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &recordingSQS{}
			if failures := Send(t.Context(), fake, "q", messages(tt.n, tt.size), fast); failures != nil {
				t.Fatalf("Send() failures = %v", failures)
			}
			if len(fake.calls) != tt.wantCalls {
				t.Fatalf("%d calls, want %d", len(fake.calls), tt.wantCalls)
			}
			sent := 0
			for _, call := range fake.calls {
				bytes := 0
				for _, b := range call {
					bytes += len(b)
				}
				if len(call) > MaxBatchEntries || bytes > MaxBatchBytes {
					t.Errorf("a call sent %d entries, %d bytes", len(call), bytes)
				}
				sent += len(call)
			}
			if sent != tt.n {
				t.Errorf("sent %d messages, want %d", sent, tt.n)
			}
		})
	}
}

func TestSendRetriesFailedEntries(t *testing.T) {
	t.Parallel()
	fake := &recordingSQS{fail: func(call int, body string) (bool, bool) {
		switch {
		case body == "3":
			return true, true // the sender's fault: never retried
		case call == 1 && (body == "1" || body == "7"):
			return true, false // a server fault: retried
		}
		return false, false
	}}
	failures := Send(t.Context(), fake, "q", messages(10, 1), fast)
	if len(failures) != 1 || failures[0].Index != 3 {
		t.Fatalf("failures = %v, want only message 3", failures)
	}
	var entryErr *EntryError
	if !errors.As(failures[0].Err, &entryErr) || !entryErr.SenderFault {
		t.Errorf("failure = %v, want a sender-fault EntryError", failures[0].Err)
	}
	if len(fake.calls) != 2 || strings.Join(fake.calls[1], ",") != "1,7" {
		t.Errorf("calls = %v, want a retry of exactly 1 and 7", fake.calls)
	}
}

func TestSendGivesUpAfterAttempts(t *testing.T) {
	t.Parallel()
	fake := &recordingSQS{callErr: func(int) error { return errors.New("connection refused") }}
	failures := Send(t.Context(), fake, "q", messages(4, 1), fast)
	if len(failures) != 4 {
		t.Fatalf("%d failures, want all 4", len(failures))
	}
	if len(fake.calls) != fast.Attempts {
		t.Errorf("%d calls, want %d attempts", len(fake.calls), fast.Attempts)
	}
	if !strings.Contains(failures[0].Err.Error(), "connection refused") {
		t.Errorf("failure = %v", failures[0].Err)
	}
}

func TestSendStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	fake := &recordingSQS{callErr: func(int) error { cancel(); return context.Canceled }}
	failures := Send(ctx, fake, "q", messages(2, 1), Retry{Attempts: 100, MaxBackoff: time.Hour})
	if len(failures) != 2 || len(fake.calls) != 1 {
		t.Fatalf("failures = %v after %d calls, want both failed after one call", failures, len(fake.calls))
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	fake := &recordingSQS{fail: func(call int, receipt string) (bool, bool) {
		return call == 1 && receipt == "r2", false
	}}
	receipts := []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10"}
	if failures := Delete(t.Context(), fake, "q", receipts, fast); failures != nil {
		t.Fatalf("Delete() failures = %v", failures)
	}
	if len(fake.calls) != 3 || len(fake.calls[0]) != 10 || strings.Join(fake.calls[2], ",") != "r2" {
		t.Errorf("calls = %v, want 10 + 1 and a retry of r2", fake.calls)
	}
}

func TestPredicted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		attrs map[string]types.MessageAttributeValue
		want  int64
	}{
		{"none", nil, 0},
		{"a size", map[string]types.MessageAttributeValue{AttrPredicted: NumberAttribute(734003200)}, 734003200},
		{"negative", map[string]types.MessageAttributeValue{AttrPredicted: NumberAttribute(-1)}, 0},
		{"not a number", map[string]types.MessageAttributeValue{AttrPredicted: StringAttribute("lots")}, 0},
	} {
		if got := Predicted(tt.attrs); got != tt.want {
			t.Errorf("%s: Predicted = %d, want %d", tt.name, got, tt.want)
		}
	}
}
