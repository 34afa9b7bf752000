package jobfleet_test

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/jobfleet/jobfleet"
)

func TestEventUsage(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	code := 0
	st := &jobfleet.JobState{
		JobID: "j", Type: "train", Run: "r", Status: jobfleet.StatusSucceeded, EndedAt: t0.Add(3 * time.Hour), ExitCode: &code,
		Attempts: []jobfleet.AttemptState{
			// Interrupted after 60 min, checkpointed at 50: 10 min redone.
			{Attempt: 1, Outcome: jobfleet.OutcomeInterrupted, GPUs: 4, StartedAt: t0, EndedAt: t0.Add(60 * time.Minute), LastCheckpointAt: t0.Add(50 * time.Minute)},
			// OOM-killed after 20 min with no checkpoint of its own, and
			// the next attempt did not resume: all 20 min redone.
			{Attempt: 2, Outcome: jobfleet.OutcomeOOM, GPUs: 4, Resumed: true, StartedAt: t0.Add(65 * time.Minute), EndedAt: t0.Add(85 * time.Minute), LastCheckpointAt: t0.Add(50 * time.Minute)},
			{Attempt: 3, Outcome: jobfleet.OutcomeSucceeded, GPUs: 4, StartedAt: t0.Add(90 * time.Minute), EndedAt: t0.Add(150 * time.Minute)},
		},
	}
	e := jobfleet.NewEvent(st, "s3://b/jobfleet/jobs/j/run.json")
	if e.Usage.WallSeconds != 140*60 || e.Usage.GPUSeconds != 4*140*60 {
		t.Errorf("usage %+v", e.Usage)
	}
	if want := 30.0 * 60; math.Abs(e.Usage.RedoneSeconds-want) > 1e-9 {
		t.Errorf("redone %v, want %v", e.Usage.RedoneSeconds, want)
	}
	if e.ID != jobfleet.EventID("j", "r", time.Time{}) || e.ID == jobfleet.EventID("j", "r2", time.Time{}) {
		t.Errorf("event ids: %s", e.ID)
	}
	validateEvent(t, e)

	// A job cancelled before jobfleet received it has no run and no
	// attempts; two such cancels are two events.
	c1 := jobfleet.NewEvent(&jobfleet.JobState{JobID: "j", Status: jobfleet.StatusCancelled, CancelledAt: t0, EndedAt: t0}, "s3://b/k")
	c2 := jobfleet.NewEvent(&jobfleet.JobState{JobID: "j", Status: jobfleet.StatusCancelled, CancelledAt: t0.Add(time.Second), EndedAt: t0}, "s3://b/k")
	if c1.ID == c2.ID {
		t.Error("two cancels of one id share an event id")
	}
	validateEvent(t, c1)

	// A job sent back to be sized again before its first attempt ran:
	// its seconds in the worker's hands are nothing to redo.
	resized := jobfleet.NewEvent(&jobfleet.JobState{JobID: "j", Run: "r", Status: jobfleet.StatusSucceeded, EndedAt: t0.Add(time.Hour), Attempts: []jobfleet.AttemptState{
		{Attempt: 1, Outcome: jobfleet.OutcomeResized, AllocatedBytes: 2 << 30, StartedAt: t0, EndedAt: t0.Add(2 * time.Second)},
		{Attempt: 2, Outcome: jobfleet.OutcomeSucceeded, AllocatedBytes: 4 << 30, StartedAt: t0.Add(time.Minute), EndedAt: t0.Add(time.Hour)},
	}}, "s3://b/k")
	if resized.Usage.RedoneSeconds != 0 {
		t.Errorf("redone %v seconds after a resize, want none", resized.Usage.RedoneSeconds)
	}
	validateEvent(t, resized)
}

// validateEvent checks an event against the published JSON Schema.
func validateEvent(t *testing.T, e *jobfleet.Event) {
	t.Helper()
	schema := compileSchema(t, "job-event.schema.json")
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("the event does not match docs/job-event.schema.json: %v\n%s", err, data)
	}
}
