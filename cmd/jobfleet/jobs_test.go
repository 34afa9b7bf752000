package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/local"
	"github.com/jobfleet/jobfleet/internal/localstack"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

// localFleet is a whole jobfleet running on this machine (jobfleet local), and
// the jobfleet binary a user runs against it.
type localFleet struct {
	bin    string
	env    []string
	intake string
	bucket string
	events string
	sfn    *localstack.SFNServer
	sqs    *sqs.Client
	store  contract.Store
}

func startLocalFleet(t *testing.T) *localFleet {
	t.Helper()
	bin := testenv.Build(t, "./cmd/jobfleet")
	ready := make(chan local.Endpoints, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := local.Run(ctx, local.Options{
			Serve: true, Binary: bin, Concurrency: 3, Out: io.Discard,
			Log:     zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			OnServe: func(e local.Endpoints) { ready <- e },
		})
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	var e local.Endpoints
	select {
	case e = <-ready:
	case err := <-done:
		t.Fatalf("jobfleet local stopped: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("jobfleet local did not start")
	}
	f := &localFleet{bin: bin, env: append(os.Environ(), e.Env...), intake: e.IntakeURL, bucket: e.Bucket, events: e.EventsURL, sfn: e.SFN}
	f.env = append(f.env, "JOBFLEET_QUEUE="+e.IntakeURL, "JOBFLEET_BUCKET="+e.Bucket, "JOBFLEET_LOG_FORMAT=json")
	cfg, err := config.LoadDefaultConfig(t.Context(), config.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	endpoint := func(name string) string {
		for _, kv := range e.Env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		t.Fatalf("no %s", name)
		return ""
	}
	cfg.Credentials = credentials.NewStaticCredentialsProvider("local", "local", "")
	f.sqs = sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(endpoint("AWS_ENDPOINT_URL_SQS")) })
	f.store = contract.Store{S3: testenv.NewS3Client(endpoint("AWS_ENDPOINT_URL_S3")), Bucket: e.Bucket}
	return f
}

// jobfleet runs the binary as a user would and returns its exit code and
// output.
func (f *localFleet) jobfleet(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), f.bin, args...)
	cmd.Env = f.env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// state reads a job's state; nil when jobfleet has none.
func (f *localFleet) state(t *testing.T, id string) *contract.Run {
	t.Helper()
	cur, _, err := f.store.ReadRun(t.Context(), id)
	if errors.Is(err, contract.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

// await polls until cond holds, failing after a minute.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watchStatuses records every status a job is seen in until it ends.
func (f *localFleet) watchStatuses(t *testing.T, id string) func() []jobfleet.Status {
	var (
		mu   sync.Mutex
		seen []jobfleet.Status
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	wg.Go(func() {
		for ctx.Err() == nil {
			cur, _, err := f.store.ReadRun(ctx, id)
			if err == nil {
				mu.Lock()
				if len(seen) == 0 || seen[len(seen)-1] != cur.Status {
					seen = append(seen, cur.Status)
				}
				mu.Unlock()
				if cur.Status.Terminal() {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return func() []jobfleet.Status {
		wg.Wait()
		cancel()
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

func TestJobLifecycleCLI(t *testing.T) {
	f := startLocalFleet(t)

	t.Run("submit --wait with outputs", func(t *testing.T) {
		statuses := f.watchStatuses(t, "export-1")
		out := t.TempDir()
		code, stdout, stderr := f.jobfleet(t, "submit", "--type", "export", "--id", "export-1", "--feature", "rows=20000",
			"--label", "team=search,workflow=nightly", "--wait", "--outputs-dir", out, "--download-files", "--json")
		if code != 0 {
			t.Fatalf("exit code %d\n%s\n%s", code, stdout, stderr)
		}
		var st jobfleet.JobState
		if err := json.Unmarshal([]byte(stdout), &st); err != nil {
			t.Fatalf("stdout is not the job's state: %v\n%s", err, stdout)
		}
		if st.Status != jobfleet.StatusSucceeded || st.Labels["team"] != "search" || len(st.Attempts) != 1 || st.Attempts[0].Outcome != jobfleet.OutcomeSucceeded ||
			st.Attempts[0].AllocatedBytes == 0 || st.Attempts[0].Node == "" || st.Class == "" || st.MemoryBytes == 0 || st.ExitCode == nil || *st.ExitCode != 0 ||
			st.SizedBy == nil || st.SizedBy.Source == "" || st.SizedBy.RequestBytes <= 0 || st.SizedBy.RequestBytes > st.MemoryBytes {
			t.Errorf("final state %+v", st)
		}
		if rows, err := os.ReadFile(filepath.Join(out, "values", "rows")); err != nil || string(rows) != "20000" {
			t.Errorf("values/rows = %q, %v", rows, err)
		}
		sum, err := os.ReadFile(filepath.Join(out, "files", "export.sha256"))
		if err != nil || strings.TrimSpace(string(sum)) != st.Outputs["sha256"] {
			t.Errorf("files/export.sha256 = %q (%v), outputs %v", sum, err, st.Outputs)
		}
		if _, err := os.Stat(filepath.Join(out, "result.json")); err != nil {
			t.Error(err)
		}
		// The statuses came in order: never back, and through running.
		seen := statuses()
		order := func(s jobfleet.Status) int { return slices.Index(jobfleet.Statuses, s) }
		if !slices.IsSortedFunc(seen, func(a, b jobfleet.Status) int { return order(a) - order(b) }) || !slices.Contains(seen, jobfleet.StatusRunning) || seen[len(seen)-1] != jobfleet.StatusSucceeded {
			t.Errorf("statuses seen: %v", seen)
		}

		// The same id again attaches to the job: nothing runs again.
		code, stdout, stderr = f.jobfleet(t, "submit", "--type", "export", "--id", "export-1", "--feature", "rows=20000", "--wait")
		if code != 0 || !strings.Contains(stderr, "attaching") || !strings.Contains(stdout, "succeeded") {
			t.Errorf("submitting the id again: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if cur := f.state(t, "export-1"); len(cur.Attempts) != 1 || cur.Run != st.Run {
			t.Errorf("the job ran again: %+v", cur.JobState)
		}

		code, stdout, _ = f.jobfleet(t, "status", "export-1")
		for _, want := range []string{"succeeded", "team=search,workflow=nightly", "rows=20000", "ATTEMPT", "s3://", "sized by", "; asked "} {
			if code != 0 || !strings.Contains(stdout, want) {
				t.Errorf("status lacks %q (exit %d):\n%s", want, code, stdout)
			}
		}
		code, stdout, _ = f.jobfleet(t, "list", "--label", "workflow=nightly", "--status", "succeeded")
		if code != 0 || !strings.Contains(stdout, "export-1") {
			t.Errorf("list (exit %d):\n%s", code, stdout)
		}
		code, stdout, _ = f.jobfleet(t, "list", "--type", "train")
		if code != 0 || strings.Contains(stdout, "export-1") {
			t.Errorf("list --type train shows an export job (exit %d):\n%s", code, stdout)
		}
	})

	t.Run("cancel a running job", func(t *testing.T) {
		// About two minutes of epochs: it only ends by the cancel.
		code, stdout, stderr := f.jobfleet(t, "submit", "--type", "train", "--id", "train-1", "--feature", "model_params=100000,epochs=150")
		if code != 0 || strings.TrimSpace(stdout) != "train-1" {
			t.Fatalf("submit: exit %d\n%s\n%s", code, stdout, stderr)
		}
		await(t, "the training job to run", func() bool {
			cur := f.state(t, "train-1")
			return cur != nil && cur.Status == jobfleet.StatusRunning
		})
		code, stdout, stderr = f.jobfleet(t, "cancel", "train-1", "--reason", "wrong data")
		if code != 0 || !strings.Contains(stdout, "cancelled") {
			t.Fatalf("cancel: exit %d\n%s\n%s", code, stdout, stderr)
		}
		// wait returns once the attempt stopped: nothing of the job runs.
		code, stdout, stderr = f.jobfleet(t, "wait", "train-1", "--json")
		if code != 2 {
			t.Fatalf("wait on a cancelled job: exit %d, want 2\n%s\n%s", code, stdout, stderr)
		}
		var st jobfleet.JobState
		if err := json.Unmarshal([]byte(stdout), &st); err != nil || len(st.Attempts) != 1 || st.Attempts[0].Outcome != jobfleet.OutcomeCancelled {
			t.Fatalf("wait returned before the attempt stopped: %v\n%s", err, stdout)
		}
		cur := f.state(t, "train-1")
		if cur.Status != jobfleet.StatusCancelled || cur.Reason != "wrong data" {
			t.Errorf("state %+v", cur.JobState)
		}
		// Nothing of it is retried: no message for it is left anywhere.
		f.awaitDrained(t)
		if cur := f.state(t, "train-1"); len(cur.Attempts) != 1 || cur.Status != jobfleet.StatusCancelled {
			t.Errorf("after the queues drained: %+v", cur.JobState)
		}
	})

	t.Run("cancel a queued job", func(t *testing.T) {
		// The message reaches the dispatcher three seconds after it was
		// sent; the cancel comes in between.
		job := &jobfleet.Job{Version: 1, ID: "queued-1", Type: "aggregate", Features: map[string]float64{"entities": 1000, "density": 2}}
		body, _ := jobfleet.Encode(job)
		if _, err := f.sqs.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(f.intake), MessageBody: aws.String(string(body)), DelaySeconds: 3}); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := f.jobfleet(t, "cancel", "queued-1")
		if code != 0 || !strings.Contains(stdout, "before jobfleet received it") {
			t.Fatalf("cancel: exit %d\n%s\n%s", code, stdout, stderr)
		}
		f.awaitDrained(t)
		cur := f.state(t, "queued-1")
		if cur.Status != jobfleet.StatusCancelled || cur.Run != "" || len(cur.Attempts) != 0 {
			t.Errorf("the cancelled message started a run: %+v", cur.JobState)
		}
		if code, _, _ := f.jobfleet(t, "wait", "queued-1"); code != 2 {
			t.Errorf("wait: exit %d, want 2", code)
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		// A job jobfleet cannot run fails: exit 1, with the reason.
		code, stdout, stderr := f.jobfleet(t, "submit", "--type", "no-such-type", "--id", "bad-1", "--wait")
		if code != 1 || !strings.Contains(stderr, "unknown job type") || !strings.Contains(stdout, "dead-lettered") {
			t.Errorf("an unknown type: exit %d, want 1\n%s\n%s", code, stdout, stderr)
		}
		// A wait that times out: exit 2.
		if code, _, stderr := f.jobfleet(t, "wait", "never-submitted", "--timeout", "2s"); code != 2 || !strings.Contains(stderr, "has not ended after 2s") {
			t.Errorf("a timed-out wait: exit %d, want 2\n%s", code, stderr)
		}
		// jobfleet cannot tell (no such bucket): exit 3.
		if code, _, stderr := f.jobfleet(t, "wait", "export-1", "--bucket", "no-such-bucket", "--poll", "1s"); code != 3 {
			t.Errorf("an unreadable state: exit %d, want 3\n%s", code, stderr)
		}
		// A mistake in the flags is jobfleet's own error too, never the 2
		// of a cancelled job.
		if code, _, _ := f.jobfleet(t, "wait", "x", "--download-files"); code != 3 {
			t.Errorf("--download-files without --outputs-dir: exit %d", code)
		}
		if code, _, _ := f.jobfleet(t, "wait", "x", "--timeout", "soon"); code != 3 {
			t.Errorf("a bad --timeout: exit %d", code)
		}
		if code, _, _ := f.jobfleet(t, "submit", "--type", "export", "--feature", "rows"); code != 3 {
			t.Errorf("a bad --feature: exit %d", code)
		}
		if code, _, stderr := f.jobfleet(t, "wait", "a/b"); code != 3 || !strings.Contains(stderr, "not a job id") {
			t.Errorf("wait on an id that cannot be one: exit %d\n%s", code, stderr)
		}
		if code, _, stderr := f.jobfleet(t, "cancel", "../x"); code == 0 || !strings.Contains(stderr, "not a job id") {
			t.Errorf("cancel of an id that cannot be one: exit %d\n%s", code, stderr)
		}
		if code, _, stderr := f.jobfleet(t, "cancel", "export-1"); code != 0 || !strings.Contains(f.mustStatus(t, "export-1"), "succeeded") {
			t.Errorf("cancelling a job that ended: exit %d\n%s", code, stderr)
		}
	})

	t.Run("step functions task tokens", func(t *testing.T) {
		pub := jobfleet.NewPublisher(f.sqs, f.intake)
		good := &jobfleet.Job{Version: 1, ID: "sfn-good", Type: "aggregate", Features: map[string]float64{"entities": 5000, "density": 2}, TaskToken: "token-good"}
		bad := &jobfleet.Job{Version: 1, ID: "sfn-bad", Type: "no-such-type", TaskToken: "token-bad"}
		f.sfn.Issue(good.TaskToken)
		f.sfn.Issue(bad.TaskToken)
		if err := pub.Publish(t.Context(), good, bad); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{good.ID, bad.ID} {
			if code, _, stderr := f.jobfleet(t, "wait", id, "--timeout", "1m"); code != 0 && code != 1 {
				t.Fatalf("wait %s: exit %d\n%s", id, code, stderr)
			}
		}
		await(t, "both callbacks", func() bool {
			return len(f.sfn.Calls(good.TaskToken)) > 0 && len(f.sfn.Calls(bad.TaskToken)) > 0 &&
				f.state(t, good.ID).TaskAnswered && f.state(t, bad.ID).TaskAnswered
		})
		var success []localstack.Callback
		for _, c := range f.sfn.Calls(good.TaskToken) {
			switch c.Action {
			case "SendTaskSuccess":
				success = append(success, c)
			case "SendTaskHeartbeat":
			default:
				t.Errorf("the job that succeeded got %s", c.Action)
			}
		}
		if len(success) != 1 || !success[0].Accepted {
			t.Fatalf("SendTaskSuccess calls: %+v", success)
		}
		var result jobfleet.Event
		if err := json.Unmarshal([]byte(success[0].Output), &result); err != nil || result.Status != jobfleet.StatusSucceeded || result.Outputs["entities"] != "5000" {
			t.Errorf("task output %v: %s", err, success[0].Output)
		}
		calls := f.sfn.Calls(bad.TaskToken)
		if len(calls) != 1 || calls[0].Action != "SendTaskFailure" || calls[0].Error != "jobfleet.dead-lettered" || !strings.Contains(calls[0].Cause, "unknown job type") {
			t.Errorf("the job that could not run: %+v", calls)
		}
	})

	t.Run("one event per job end", func(t *testing.T) {
		want := map[string]jobfleet.Status{
			"export-1": jobfleet.StatusSucceeded, "train-1": jobfleet.StatusCancelled, "queued-1": jobfleet.StatusCancelled,
			"bad-1": jobfleet.StatusDeadLettered, "sfn-good": jobfleet.StatusSucceeded, "sfn-bad": jobfleet.StatusDeadLettered,
		}
		got := map[string][]jobfleet.Event{}
		await(t, "an event for every job", func() bool {
			out, err := f.sqs.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
				QueueUrl: aws.String(f.events), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range out.Messages {
				var e jobfleet.Event
				if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &e); err != nil {
					t.Fatalf("an event that is not JSON: %v", err)
				}
				if a := m.MessageAttributes["status"]; aws.ToString(a.StringValue) != string(e.Status) {
					t.Errorf("event of %s: status attribute %q, body %q", e.JobID, aws.ToString(a.StringValue), e.Status)
				}
				got[e.JobID] = append(got[e.JobID], e)
				if _, err := f.sqs.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(f.events), ReceiptHandle: m.ReceiptHandle}); err != nil {
					t.Fatal(err)
				}
			}
			return len(got) >= len(want)
		})
		for id, status := range want {
			events := got[id]
			if len(events) != 1 || events[0].Status != status {
				t.Errorf("%s: %d events %+v, want one %s", id, len(events), events, status)
				continue
			}
			if events[0].ID != jobfleet.EventID(id, events[0].Run, f.state(t, id).CancelledAt) {
				t.Errorf("%s: event id %s", id, events[0].ID)
			}
		}
		if e := got["export-1"]; len(e) == 1 && (e[0].Labels["workflow"] != "nightly" || e[0].Usage.WallSeconds <= 0 || len(e[0].Attempts) != 1) {
			t.Errorf("export-1's event: %+v", e[0])
		}
		if e := got["train-1"]; len(e) == 1 && (len(e[0].Attempts) != 1 || e[0].Attempts[0].Outcome != jobfleet.OutcomeCancelled) {
			t.Errorf("the cancelled running job's event has no cancelled attempt: %+v", e[0])
		}
	})
}

// mustStatus prints a job's status with the CLI.
func (f *localFleet) mustStatus(t *testing.T, id string) string {
	t.Helper()
	code, stdout, stderr := f.jobfleet(t, "status", id)
	if code != 0 {
		t.Fatalf("status %s: exit %d\n%s", id, code, stderr)
	}
	return stdout
}

// awaitDrained waits until the intake queue holds no message, visible,
// in flight or delayed: every message sent so far was handled.
func (f *localFleet) awaitDrained(t *testing.T) {
	t.Helper()
	await(t, "intake to drain", func() bool {
		out, err := f.sqs.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(f.intake), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed} {
			if out.Attributes[string(a)] != "0" {
				return false
			}
		}
		return true
	})
}
