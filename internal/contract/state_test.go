package contract_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
)

// status reads the job's state as `jobfleet status` shows it.
func status(t *testing.T, s contract.Store) *contract.Run {
	t.Helper()
	cur, _, err := s.ReadRun(t.Context(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

func TestJobStateMovesForward(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	labeled := *job
	labeled.Labels = map[string]string{"team": "ranking"}
	if _, _, err := s.StartRun(ctx, &labeled, body, "m-1", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s); st.Status != jobfleet.StatusQueued || st.Attempt != 1 || st.Labels["team"] != "ranking" {
		t.Fatalf("after intake: %+v", st.JobState)
	}
	by := &jobfleet.SizedBy{Source: "type", PredictedBytes: 1 << 30, Raise: 1.5, RequestBytes: 1536 << 20}
	if err := s.Sized(ctx, job.ID, "m-1", 1, contract.Sizing{Class: "jf-train-cpu-2g", Memory: 2 << 30, By: by}, now); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s); st.Status != jobfleet.StatusSized || st.Class != "jf-train-cpu-2g" || st.MemoryBytes != 2<<30 || st.SizedBy == nil || *st.SizedBy != *by {
		t.Fatalf("after sizing: %+v", st.JobState)
	}
	first := jobfleet.AttemptState{Attempt: 1, Pod: "pod-a", Node: "node-a", CapacityType: "spot", InstanceType: "m7i.large", AllocatedBytes: 2 << 30, StartedAt: now}
	if err := s.Running(ctx, job.ID, "m-1", first, now); err != nil {
		t.Fatal(err)
	}
	// A redelivered intake message is sized again after the worker took
	// it: the state does not move back.
	if err := s.Sized(ctx, job.ID, "m-1", 1, contract.Sizing{Class: "jf-train-cpu-2g", Memory: 2 << 30}, now); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s); st.Status != jobfleet.StatusRunning || len(st.Attempts) != 1 || st.Attempts[0].Pod != "pod-a" || st.Attempts[0].CapacityType != "spot" {
		t.Fatalf("running: %+v", st.JobState)
	}
	// The attempt is interrupted and requeued: attempt 2 is queued.
	code := 143
	first.Outcome, first.ExitCode, first.PeakBytes, first.EndedAt, first.Pod = jobfleet.OutcomeInterrupted, &code, 1<<30, now, ""
	if err := s.Requeued(ctx, job.ID, "m-1", first, now); err != nil {
		t.Fatal(err)
	}
	st := status(t, s)
	if st.Status != jobfleet.StatusQueued || st.Attempt != 2 || st.Class != "" || st.SizedBy != nil || len(st.Attempts) != 1 || st.Attempts[0].Outcome != jobfleet.OutcomeInterrupted || st.Attempts[0].Pod != "pod-a" {
		t.Fatalf("requeued: %+v", st.JobState)
	}
	// A late sizing of attempt 1 does not move attempt 2 back.
	if err := s.Sized(ctx, job.ID, "m-1", 1, contract.Sizing{Class: "old", Memory: 1}, now); err != nil || status(t, s).Class != "" {
		t.Fatalf("late sizing of attempt 1: %v %+v", err, status(t, s).JobState)
	}
	if err := s.Sized(ctx, job.ID, "m-1", 2, contract.Sizing{Class: "jf-train-cpu-4g", Memory: 4 << 30}, now); err != nil {
		t.Fatal(err)
	}
	second := jobfleet.AttemptState{Attempt: 2, Pod: "pod-b", StartedAt: now}
	if err := s.Running(ctx, job.ID, "m-1", second, now); err != nil {
		t.Fatal(err)
	}
	zero := 0
	second.Outcome, second.ExitCode, second.EndedAt = jobfleet.OutcomeSucceeded, &zero, now
	end := contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded, Attempt: &second, Outputs: map[string]string{"auc": "0.91"}, OutputsURI: "s3://b/jf/jobs/job-1/runs/m-1/outputs/"}
	if err := s.EndRun(ctx, job.ID, "m-1", end, now); err != nil {
		t.Fatal(err)
	}
	st = status(t, s)
	if st.Status != jobfleet.StatusSucceeded || st.State != contract.RunEnded || st.Outputs["auc"] != "0.91" || st.OutputsURI == "" || len(st.Attempts) != 2 || st.ExitCode == nil || *st.ExitCode != 0 || st.EndedAt.IsZero() {
		t.Fatalf("succeeded: %+v", st.JobState)
	}
	// Updates of an ended run do not reopen it.
	if err := s.Running(ctx, job.ID, "m-1", second, now); !errors.Is(err, contract.ErrStale) {
		t.Fatalf("running after the end: %v", err)
	}
	if err := s.Sized(ctx, job.ID, "m-1", 3, contract.Sizing{Class: "x", Memory: 1}, now); !errors.Is(err, contract.ErrStale) {
		t.Fatalf("sizing after the end: %v", err)
	}
}

func TestCancelBeforeIntake(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	sent := now.Add(-time.Second)
	if _, err := s.Cancel(ctx, job.ID, "not needed", now); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s); st.Status != jobfleet.StatusCancelled || st.Run != "" || st.CancelledAt.IsZero() {
		t.Fatalf("cancelled before intake: %+v", st.JobState)
	}
	// The message sent before the cancel is dropped...
	if start, _, err := s.StartRun(ctx, job, body, "m-1", sent, now, nil); err != nil || start != contract.Cancelled {
		t.Fatalf("a message sent before the cancel: %v %v", start, err)
	}
	// ...one sent after it starts a run.
	if start, _, err := s.StartRun(ctx, job, body, "m-2", now.Add(time.Second), now, nil); err != nil || start != contract.Started {
		t.Fatalf("a message sent after the cancel: %v %v", start, err)
	}
}

func TestCancelLiveRun(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	if _, _, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Sized(ctx, job.ID, "m-1", 1, contract.Sizing{Class: "c", Memory: 1 << 30}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, job.ID, "changed my mind", now); err != nil {
		t.Fatal(err)
	}
	st := status(t, s)
	if st.Status != jobfleet.StatusCancelled || st.State != contract.RunEnded || st.Reason != "changed my mind" {
		t.Fatalf("cancelled: %+v", st.JobState)
	}
	// The worker that receives the forwarded message must not run it.
	if err := s.Running(ctx, job.ID, "m-1", jobfleet.AttemptState{Attempt: 1}, now); !errors.Is(err, contract.ErrStale) {
		t.Fatalf("running a cancelled job: %v", err)
	}
	if _, err := s.VerifyRun(ctx, job.ID, body, "m-1", 1); !errors.Is(err, contract.ErrStale) {
		t.Fatalf("verifying a cancelled run: %v", err)
	}
	// The attempt that ran when the cancel came ends: it is added, the job
	// stays cancelled.
	a := jobfleet.AttemptState{Attempt: 1, Outcome: jobfleet.OutcomeCancelled, EndedAt: now}
	if err := s.EndRun(ctx, job.ID, "m-1", contract.End{Status: jobfleet.StatusCancelled, Outcome: jobfleet.OutcomeCancelled, Attempt: &a}, now); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s); st.Status != jobfleet.StatusCancelled || len(st.Attempts) != 1 || st.Attempts[0].Outcome != jobfleet.OutcomeCancelled {
		t.Fatalf("after the attempt ended: %+v", st.JobState)
	}
	// Cancelling again is harmless; the redelivered intake message is not
	// started again.
	if _, err := s.Cancel(ctx, job.ID, "again", now); err != nil {
		t.Fatal(err)
	}
	if start, _, err := s.StartRun(ctx, job, body, "m-1", now.Add(-time.Minute), now, nil); err != nil || start != contract.Finished {
		t.Fatalf("the cancelled run's own message: %v %v", start, err)
	}
}

func TestCancelEndedJob(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	if _, _, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.EndRun(ctx, job.ID, "m-1", contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded}, now); err != nil {
		t.Fatal(err)
	}
	cur, err := s.Cancel(ctx, job.ID, "", now)
	if !errors.Is(err, contract.ErrEnded) || cur == nil || cur.Status != jobfleet.StatusSucceeded {
		t.Fatalf("cancelling a job that succeeded: %v %+v", err, cur)
	}
}

func TestReject(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	if err := s.Reject(ctx, job, body, "m-1", "unknown job type", now); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s); st.Status != jobfleet.StatusDeadLettered || st.Reason != "unknown job type" || st.State != contract.RunEnded {
		t.Fatalf("rejected: %+v", st.JobState)
	}
	// A live run is not touched by another message's rejection.
	if _, _, err := s.StartRun(ctx, job, body, "m-2", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Reject(ctx, job, body, "m-3", "unknown job type", now); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s); st.Status != jobfleet.StatusQueued || st.Run != "m-2" {
		t.Fatalf("a live run after another message's rejection: %+v", st.JobState)
	}
}

// TestStartRunSized: a job the dispatcher could size at once is recorded
// sized in the write that starts its run; a redelivery finds it as it is.
func TestStartRunSized(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	size := &contract.Sizing{Class: "jf-train-cpu-1gi", Memory: 1 << 30, By: &jobfleet.SizedBy{Source: jobfleet.SizedByDefault, RequestBytes: 1 << 30}}
	start, run, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, size)
	if err != nil || start != contract.Started || run.Status != jobfleet.StatusSized {
		t.Fatalf("%v %+v %v", start, run, err)
	}
	if st := status(t, s); st.Status != jobfleet.StatusSized || st.Class != size.Class || st.MemoryBytes != size.Memory || st.SizedBy == nil || *st.SizedBy != *size.By || st.Seq != 1 {
		t.Fatalf("stored %+v", st)
	}
	if err := s.Running(ctx, job.ID, "m-1", jobfleet.AttemptState{Attempt: 1, StartedAt: now}, now); err != nil {
		t.Fatal(err)
	}
	if start, cur, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, size); err != nil || start != contract.Started || cur.Status != jobfleet.StatusRunning {
		t.Fatalf("redelivery: %v %+v %v", start, cur, err)
	}
}

// TestPlaced: where an attempt runs, learnt by the dispatcher from its
// node, stays in the state when the worker, which could not tell, records
// how the attempt ended.
func TestPlaced(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	if _, _, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	if found, err := s.Placed(ctx, job.ID, "m-1", 1, "spot", "m7i.large", "us-east-1a", now); err != nil || found {
		t.Fatalf("placing an attempt that did not start: %v %v", found, err)
	}
	if err := s.Running(ctx, job.ID, "m-1", jobfleet.AttemptState{Attempt: 1, Pod: "p", Node: "n", StartedAt: now}, now); err != nil {
		t.Fatal(err)
	}
	if found, err := s.Placed(ctx, job.ID, "m-1", 1, "spot", "m7i.large", "us-east-1a", now); err != nil || !found {
		t.Fatalf("placing: %v %v", found, err)
	}
	zero := 0
	end := jobfleet.AttemptState{Attempt: 1, Outcome: jobfleet.OutcomeSucceeded, ExitCode: &zero, EndedAt: now}
	if err := s.EndRun(ctx, job.ID, "m-1", contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded, Attempt: &end}, now); err != nil {
		t.Fatal(err)
	}
	a := status(t, s).Attempts[0]
	if a.CapacityType != "spot" || a.InstanceType != "m7i.large" || a.Zone != "us-east-1a" || a.Pod != "p" || a.Node != "n" || a.Outcome != jobfleet.OutcomeSucceeded {
		t.Errorf("attempt %+v", a)
	}
}

// TestNewerFieldsSurviveAnOlderWriter: a field this version does not know,
// written by a newer dispatcher, is still in the state after this version
// records an attempt, and a new run of the id starts without it.
func TestNewerFieldsSurviveAnOlderWriter(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	if _, _, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	// A newer dispatcher adds a field.
	raw := readRaw(t, s)
	raw["sized_by_v9"] = json.RawMessage(`{"source":"future","nested":[1,2]}`)
	data, _ := json.Marshal(raw)
	if _, err := s.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(s.RunKey(job.ID)), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Running(ctx, job.ID, "m-1", jobfleet.AttemptState{Attempt: 1, Pod: "pod-a", StartedAt: now}, now); err != nil {
		t.Fatal(err)
	}
	raw = readRaw(t, s)
	if got := string(raw["sized_by_v9"]); got != `{"source":"future","nested":[1,2]}` {
		t.Errorf("after this version's write, the newer field is %q", got)
	}
	if st := status(t, s); st.Status != jobfleet.StatusRunning || len(st.Attempts) != 1 || st.Seq != 2 {
		t.Errorf("the write itself: %+v", st)
	}
	// The run ends; a new run of the id is the new run's alone.
	zero := 0
	if err := s.EndRun(ctx, job.ID, "m-1", contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded, Attempt: &jobfleet.AttemptState{Attempt: 1, Outcome: jobfleet.OutcomeSucceeded, ExitCode: &zero, StartedAt: now, EndedAt: now}}, now); err != nil {
		t.Fatal(err)
	}
	if _, ok := readRaw(t, s)["sized_by_v9"]; !ok {
		t.Error("ending the run dropped the newer field")
	}
	if start, _, err := s.StartRun(ctx, job, body, "m-2", now.Add(time.Second), now.Add(time.Second), nil); err != nil || start != contract.Started {
		t.Fatalf("new run: %v %v", start, err)
	}
	if _, ok := readRaw(t, s)["sized_by_v9"]; ok {
		t.Error("a new run of the id kept the ended run's field")
	}
}

// readRaw reads the job's state document as JSON fields.
func readRaw(t *testing.T, s contract.Store) map[string]json.RawMessage {
	t.Helper()
	out, err := s.S3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(s.RunKey(job.ID))})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(out.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	return raw
}
