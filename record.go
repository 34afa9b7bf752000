package jobfleet

import (
	"encoding/json"
	"fmt"
	"time"
)

// Outcome is how one attempt of a job ended.
type Outcome string

// Outcomes of an attempt.
const (
	OutcomeSucceeded   Outcome = "succeeded"
	OutcomeFailed      Outcome = "failed"
	OutcomeOOM         Outcome = "oom"
	OutcomeInterrupted Outcome = "interrupted"
	OutcomeEvicted     Outcome = "evicted"
	// OutcomeCancelled: the job was cancelled while the attempt ran; its
	// peak is a lower bound.
	OutcomeCancelled Outcome = "cancelled"
	// OutcomeResized: the attempt did not run; the job went back to be
	// sized again (ReasonResized). No run record has it.
	OutcomeResized Outcome = "resized"
)

// Reason returns the rerun reason of an unsuccessful outcome.
func (o Outcome) Reason() Reason {
	switch o {
	case OutcomeOOM:
		return ReasonOOM
	case OutcomeInterrupted:
		return ReasonInterrupted
	case OutcomeEvicted:
		return ReasonEvicted
	case OutcomeResized:
		return ReasonResized
	}
	return ReasonFailed
}

// RunRecord is what a worker measured about one attempt of a job. Records
// are the memory predictor's training data and the fleet's audit log; the
// worker sends one per attempt to the records queue.
type RunRecord struct {
	JobID string `json:"job_id"`
	Type  string `json:"type"`
	// Run names the run of the job the attempt belongs to.
	Run      string             `json:"run,omitempty"`
	Features map[string]float64 `json:"features,omitempty"`
	// Labels are the job message's labels.
	Labels  map[string]string `json:"labels,omitempty"`
	Attempt int               `json:"attempt"`
	Outcome Outcome           `json:"outcome"`
	// Error is a short detail of an unsuccessful outcome.
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exit_code"`
	// AllocatedBytes is the memory limit the attempt ran under (0: none);
	// PeakBytes the most it used, and PeakSource how that was measured:
	// cgroup-v2 or cgroup-v1, the cgroup's peak working set (reclaimable
	// file cache left out; an OOM-killed attempt's is its high-water
	// mark), or rusage, the largest resident set of its processes.
	AllocatedBytes int64  `json:"allocated_bytes"`
	PeakBytes      int64  `json:"peak_bytes"`
	PeakSource     string `json:"peak_source,omitempty"`
	// PredictedBytes is the class memory the memory model's size alone
	// gave the attempt (its type's bounds and its pool's class, without
	// the dispatcher's raise after recent misses or a rerun's OOM
	// history); 0 when the model did not decide the size. Retraining
	// calibrates the model's margin on it.
	PredictedBytes int64 `json:"predicted_bytes,omitempty"`
	// ResizedFromBytes is, for a run sized again when it was about to
	// start (ReasonResized), the class memory it was first given; 0
	// otherwise. The dispatcher's raise after misses learns whether the
	// first size would have held.
	ResizedFromBytes int64 `json:"resized_from_bytes,omitempty"`
	// Resumed is true when the attempt started from a checkpoint.
	Resumed bool `json:"resumed"`
	// Checkpoints counts the complete checkpoints the attempt uploaded.
	Checkpoints  int       `json:"checkpoints"`
	StartedAt    time.Time `json:"started_at"`
	EndedAt      time.Time `json:"ended_at"`
	DurationSecs float64   `json:"duration_seconds"`
	Node         string    `json:"node,omitempty"`
	InstanceType string    `json:"instance_type,omitempty"`
	CapacityType string    `json:"capacity_type,omitempty"`
	Zone         string    `json:"zone,omitempty"`
	Arch         string    `json:"arch,omitempty"`
	// Pool and Size name the class the attempt ran in.
	Pool string `json:"pool,omitempty"`
	Size string `json:"size,omitempty"`
	// GPUs is how many GPUs the attempt had.
	GPUs int `json:"gpus,omitempty"`
	// LastCheckpointAt is when the attempt's last complete checkpoint was
	// stored; zero when it stored none.
	LastCheckpointAt time.Time `json:"last_checkpoint_at,omitzero"`
}

// DecodeRunRecord parses a run record, checking the fields the predictor
// relies on.
func DecodeRunRecord(data []byte) (*RunRecord, error) {
	var r RunRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decoding run record: %w", err)
	}
	switch {
	case r.JobID == "" || r.Type == "":
		return nil, fmt.Errorf("run record without job id or type")
	case r.Attempt < 1:
		return nil, fmt.Errorf("run record of job %s: attempt %d", r.JobID, r.Attempt)
	case r.PeakBytes < 0 || r.AllocatedBytes < 0 || r.PredictedBytes < 0 || r.ResizedFromBytes < 0:
		return nil, fmt.Errorf("run record of job %s: negative memory", r.JobID)
	case r.EndedAt.IsZero():
		return nil, fmt.Errorf("run record of job %s: no end time", r.JobID)
	}
	switch r.Outcome {
	case OutcomeSucceeded, OutcomeFailed, OutcomeOOM, OutcomeInterrupted, OutcomeEvicted, OutcomeCancelled:
	default:
		return nil, fmt.Errorf("run record of job %s: unknown outcome %q", r.JobID, r.Outcome)
	}
	return &r, nil
}
