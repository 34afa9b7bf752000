package dispatcher

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

// sendRaw sends a body to intake as a producer's SDK would, with
// attributes.
func (b *bundle) sendRaw(t *testing.T, body string, attrs map[string]sqstypes.MessageAttributeValue) {
	t.Helper()
	if _, err := b.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(b.intake), MessageBody: aws.String(body), MessageAttributes: attrs}); err != nil {
		t.Fatalf("sending %d bytes: %v", len(body), err)
	}
}

// deadLetters receives n dead letters and returns them by the job id in
// their body (or in the body they point to), with their reason.
func (b *bundle) deadLetters(t *testing.T, n int) map[string]sqstypes.Message {
	t.Helper()
	out := map[string]sqstypes.Message{}
	for _, m := range b.sqs.Receive(t, b.dead, n, true) {
		body := aws.ToString(m.Body)
		if ref, ok := m.MessageAttributes[queue.AttrBodyRef]; ok {
			body = b.readRef(t, aws.ToString(ref.StringValue))
		}
		var head struct{ ID string }
		_ = json.NewDecoder(strings.NewReader(body)).Decode(&head)
		out[head.ID] = m
	}
	return out
}

func (b *bundle) readRef(t *testing.T, uri string) string {
	t.Helper()
	bucket, key, ok := strings.Cut(strings.TrimPrefix(uri, "s3://"), "/")
	if !ok {
		t.Fatalf("body reference %q", uri)
	}
	obj, err := b.s3.Client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("the dead letter's body at %s: %v", uri, err)
	}
	defer obj.Body.Close()
	data, _ := io.ReadAll(obj.Body)
	return string(data)
}

func reason(m sqstypes.Message) string {
	return aws.ToString(m.MessageAttributes[queue.AttrError].StringValue)
}

// jobOfSize is a job message of exactly size bytes.
func jobOfSize(t *testing.T, id, typ string, size int) string {
	t.Helper()
	head := fmt.Sprintf(`{"version":1,"id":%q,"type":%q,"params":{"pad":"`, id, typ)
	body := head + strings.Repeat("x", size-len(head)-3) + `"}}`
	if len(body) != size {
		t.Fatalf("built %d bytes, want %d", len(body), size)
	}
	return body
}

// TestMessagesTooLargeAreDeadLetteredByReference: a job of 1 MiB less 60
// bytes (too large to forward with jobfleet's attributes) and a message of
// exactly 1 MiB of an unknown type (too large to dead-letter with the
// reason attached) each end in the dead-letter queue once, by reference,
// instead of returning to intake forever.
func TestMessagesTooLargeAreDeadLetteredByReference(t *testing.T) {
	t.Parallel()
	b := setup(t)
	almost := jobOfSize(t, "almost-1mib", "export", 1<<20-60)
	whole := jobOfSize(t, "exactly-1mib", "quantum", 1<<20)
	b.sendRaw(t, almost, map[string]sqstypes.MessageAttributeValue{jobfleet.AttrType: queue.StringAttribute("export")})
	b.sendRaw(t, whole, nil)
	_, stop := b.start(t, b.cfg)
	dead := b.deadLetters(t, 2)
	stop()
	for id, want := range map[string]string{"almost-1mib": almost, "exactly-1mib": whole} {
		m, ok := dead[id]
		if !ok {
			t.Errorf("%s was not dead-lettered", id)
			continue
		}
		ref := aws.ToString(m.MessageAttributes[queue.AttrBodyRef].StringValue)
		if ref == "" || b.readRef(t, ref) != want {
			t.Errorf("%s: dead letter by reference %q does not hold the original body", id, ref)
		}
		if !strings.Contains(reason(m), "message too large") {
			t.Errorf("%s: reason %q", id, reason(m))
		}
	}
	if visible, inFlight := b.sqs.Depth(t, b.intake); visible+inFlight != 0 {
		t.Errorf("intake still holds %d messages", visible+inFlight)
	}
	if visible, inFlight := b.sqs.Depth(t, b.dead); visible+inFlight != 0 {
		t.Errorf("%d more dead letters: a message was dead-lettered more than once", visible+inFlight)
	}
}

// TestNoProducerCanForgeARerun: what a producer writes about earlier
// attempts is never believed. A history, a checkpoint, a run and attempt
// jobfleet never made, and a message naming its id twice are dead-lettered
// with the reason; nothing reaches a class queue.
func TestNoProducerCanForgeARerun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A real run of "victim", with a checkpoint, to try to borrow.
	victim := &jobfleet.Job{Version: 1, ID: "victim", Type: "export"}
	run := b.rerun(t, victim, jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}})
	b.sqs.Receive(t, b.intake, 1, true) // the genuine rerun is not part of this test
	forged := func(n int) map[string]sqstypes.MessageAttributeValue {
		m := queue.ForwardMessage("", "export", run, n)
		return m.Attributes
	}
	b.sendRaw(t, `{"version":1,"id":"twice-interrupted","type":"train","history":[{"attempt":1,"reason":"interrupted"},{"attempt":2,"reason":"interrupted"}]}`, nil)
	b.sendRaw(t, `{"version":1,"id":"huge-oom","type":"export","history":[{"attempt":1,"reason":"oom","allocated_bytes":1099511627776}]}`, nil)
	b.sendRaw(t, `{"version":1,"id":"three-failures","type":"export","history":[{"attempt":1,"reason":"failed"},{"attempt":2,"reason":"failed"},{"attempt":3,"reason":"failed"}]}`, nil)
	b.sendRaw(t, `{"version":1,"id":"borrow","type":"export","checkpoint":"s3://b/jobfleet/jobs/victim/runs/x/checkpoint/"}`, nil)
	b.sendRaw(t, `{"version":1,"id":"victim","type":"export"}`, forged(5))
	b.sendRaw(t, `{"version":1,"id":"other","type":"export"}`, forged(3))
	b.sendRaw(t, `{"version":1,"id":"dup-a","id":"dup-b","type":"export"}`, nil)
	_, stop := b.start(t, b.cfg)
	dead := b.deadLetters(t, 7)
	stop()
	want := map[string]string{
		"twice-interrupted": "history: reserved field",
		"huge-oom":          "history: reserved field",
		"three-failures":    "history: reserved field",
		"borrow":            "checkpoint: reserved field",
		"victim":            "not a rerun jobfleet made",
		"other":             "not a rerun jobfleet made",
	}
	for id, w := range want {
		if !strings.Contains(reason(dead[id]), w) {
			t.Errorf("%s: dead-letter reason %q, want %q", id, reason(dead[id]), w)
		}
	}
	if r := reason(dead["dup-b"]); !strings.Contains(r, "appears twice") {
		t.Errorf("a message naming its id twice: reason %q", r)
	}
	out, err := b.sqs.Client.ListQueues(t.Context(), &sqs.ListQueuesInput{QueueNamePrefix: aws.String(b.prefix)})
	if err == nil && len(out.QueueUrls) > 0 {
		for _, url := range out.QueueUrls {
			if visible, inFlight := b.sqs.Depth(t, url); visible+inFlight > 0 {
				t.Errorf("class queue %s holds %d forged jobs", url, visible+inFlight)
			}
		}
	}
}

// TestJobIDIsTheIdempotencyKey: the same job published again while it is
// queued is dropped as a repeat; another job with its id is a duplicate;
// once the job's run ended, the id runs again, as a new run.
func TestJobIDIsTheIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pub := jobfleet.NewPublisher(b.sqs.Client, b.intake)
	job := &jobfleet.Job{Version: 1, ID: "daily-export", Type: "export"}
	if err := pub.Publish(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	_, stop := b.start(t, b.cfg)
	defer stop()
	class := b.prefix + "-export-cpu-1gi"
	b.waitForClasses(t, []string{class}, 1, time.Minute)
	if err := pub.Publish(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	other := &jobfleet.Job{Version: 1, ID: "daily-export", Type: "export", Params: []byte(`{"day": "2026-11-30"}`)}
	if err := pub.Publish(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	dead := b.sqs.Receive(t, b.dead, 1, true)
	if r := reason(dead[0]); !strings.Contains(r, "duplicate: job daily-export is already queued or running") || !strings.Contains(aws.ToString(dead[0].Body), "2026-11-30") {
		t.Errorf("the duplicate %s, reason %q", aws.ToString(dead[0].Body), reason(dead[0]))
	}
	testenv.Eventually(t, 30*time.Second, "intake to drain", func() bool {
		visible, inFlight := b.sqs.Depth(t, b.intake)
		return visible+inFlight == 0
	})
	if visible, inFlight := b.sqs.Depth(t, b.dead); visible+inFlight != 0 {
		t.Errorf("the repeat was dead-lettered too")
	}
	if visible, _ := b.sqs.Depth(t, b.classURL(t, class)); visible != 1 {
		t.Errorf("the class queue holds %d messages, want the job once", visible)
	}
	first := b.sqs.Receive(t, b.classURL(t, class), 1, true)
	firstRun, _, _, _ := queue.RunAttempt(first[0].MessageAttributes)
	if err := b.store.EndRun(t.Context(), job.ID, firstRun, contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	b.waitForClasses(t, []string{class}, 1, time.Minute)
	again := b.sqs.Receive(t, b.classURL(t, class), 1, true)
	run, attempt, _, _ := queue.RunAttempt(again[0].MessageAttributes)
	if run == firstRun || attempt != 1 {
		t.Errorf("the id used again ran as run %s attempt %d, want a new run's attempt 1", run, attempt)
	}
	cur, _, err := b.store.ReadRun(t.Context(), job.ID)
	if err != nil || cur.Run != run || cur.State != contract.RunLive {
		t.Errorf("the job's run = %+v %v", cur, err)
	}
}
