package jobfleet

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// EventSchemaVersion is the version of the completion event format.
const EventSchemaVersion = 1

// EventType is the type every completion event carries.
const EventType = "jobfleet.job.ended"

// Event is what jobfleet publishes to its events topic when a job ends,
// once per job end, modelled on AWS Batch's "Batch Job State Change"
// event. Delivery is at least once: a consumer that must act once dedupes
// by ID, which is the same for every delivery of one job end. The JSON
// Schema is docs/job-event.schema.json.
type Event struct {
	SchemaVersion int       `json:"schema_version"`
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	Time          time.Time `json:"time"`
	JobID         string    `json:"job_id"`
	JobType       string    `json:"job_type"`
	Run           string    `json:"run"`
	Status        Status    `json:"status"`
	Reason        string    `json:"reason,omitempty"`
	ExitCode      *int      `json:"exit_code,omitempty"`
	// Labels are the job message's labels, for correlating the event with
	// a workflow and attributing its cost.
	Labels map[string]string `json:"labels,omitempty"`
	// ResultURI is the job's state document; Outputs and OutputsURI what a
	// job that succeeded left.
	ResultURI  string            `json:"result_uri"`
	Outputs    map[string]string `json:"outputs,omitempty"`
	OutputsURI string            `json:"outputs_uri,omitempty"`
	Attempts   []AttemptState    `json:"attempts"`
	Usage      Usage             `json:"usage"`
}

// Usage is what a job consumed over all its attempts.
type Usage struct {
	// WallSeconds is the time its attempts ran; GPUSeconds the same
	// weighted by each attempt's GPUs.
	WallSeconds float64 `json:"wall_seconds"`
	GPUSeconds  float64 `json:"gpu_seconds"`
	// RedoneSeconds is the work lost to attempts that did not succeed and
	// was run again: from an attempt's last checkpoint (or its start) to
	// its end, for every attempt followed by another.
	RedoneSeconds float64 `json:"redone_seconds"`
}

// EventID is the id of the event of a job's end: the same for every
// delivery of it, different for every run. A job cancelled before it
// started a run is told apart by the time of the cancel.
func EventID(jobID, run string, cancelledAt time.Time) string {
	key := jobID + "\x00" + run
	if run == "" {
		key += "\x00" + cancelledAt.UTC().Format(time.RFC3339Nano)
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// NewEvent is the completion event of a job that ended, from its state;
// resultURI is where the state is stored.
func NewEvent(st *JobState, resultURI string) *Event {
	e := &Event{
		SchemaVersion: EventSchemaVersion, ID: EventID(st.JobID, st.Run, st.CancelledAt), Type: EventType,
		Time: st.EndedAt, JobID: st.JobID, JobType: st.Type, Run: st.Run, Status: st.Status, Reason: st.Reason,
		ExitCode: st.ExitCode, Labels: st.Labels, ResultURI: resultURI, Outputs: st.Outputs, OutputsURI: st.OutputsURI,
		Attempts: st.Attempts,
	}
	if e.Attempts == nil {
		e.Attempts = []AttemptState{}
	}
	for i, a := range st.Attempts {
		if a.EndedAt.IsZero() || a.StartedAt.IsZero() {
			continue
		}
		wall := a.EndedAt.Sub(a.StartedAt).Seconds()
		e.Usage.WallSeconds += wall
		e.Usage.GPUSeconds += wall * float64(a.GPUs)
		if i == len(st.Attempts)-1 || a.Outcome == OutcomeSucceeded || a.Outcome == OutcomeResized {
			continue // nothing to redo: done, or never run (sent back to be sized again)
		}
		from := a.StartedAt
		if a.LastCheckpointAt.After(from) && st.Attempts[i+1].Resumed {
			from = a.LastCheckpointAt
		}
		e.Usage.RedoneSeconds += a.EndedAt.Sub(from).Seconds()
	}
	return e
}
