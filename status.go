package jobfleet

import "time"

// Status is where a job is, as its users see it. A job moves forward
// through Queued, Sized and Running, back to Queued for each rerun, and
// ends in one of the terminal statuses.
type Status string

// Job statuses.
const (
	// StatusQueued: the dispatcher accepted the message (or a rerun was
	// requeued) and has not sized it yet.
	StatusQueued Status = "queued"
	// StatusSized: the dispatcher chose the attempt's class and memory and
	// forwarded it to the class queue; a pod is on its way.
	StatusSized Status = "sized"
	// StatusRunning: a worker claimed the attempt and runs the job.
	StatusRunning Status = "running"
	// StatusSucceeded: the job ran to success.
	StatusSucceeded Status = "succeeded"
	// StatusFailed: the job itself failed and will not run again: its
	// retry budget is spent, or it asked not to be retried. Its message is
	// in the dead-letter queue.
	StatusFailed Status = "failed"
	// StatusDeadLettered: jobfleet could not run the job (an unknown type,
	// a message it cannot accept); the message is in the dead-letter queue
	// with the reason.
	StatusDeadLettered Status = "dead-lettered"
	// StatusCancelled: someone cancelled the job; nothing of it runs or is
	// retried any more.
	StatusCancelled Status = "cancelled"
)

// Statuses lists every status, in the order a job moves through them.
var Statuses = []Status{StatusQueued, StatusSized, StatusRunning, StatusSucceeded, StatusFailed, StatusDeadLettered, StatusCancelled}

// Terminal reports whether a job in this status has ended.
func (s Status) Terminal() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusDeadLettered, StatusCancelled:
		return true
	}
	return false
}

// JobState is jobfleet's record of one job: the current run of its id, kept
// in S3 at <prefix>/jobs/<id>/run.json, written by the dispatcher and the
// worker with conditional writes. `jobfleet status ID --json` prints it.
type JobState struct {
	JobID string `json:"job_id"`
	Type  string `json:"type"`
	// Run names the current run of the id: the SQS message id of the
	// intake message that started it. It is empty for a job cancelled
	// before the dispatcher received it.
	Run    string `json:"run"`
	Status Status `json:"status"`
	// Reason says why a job failed, was dead-lettered or was cancelled.
	Reason string `json:"reason,omitempty"`
	// ExitCode is the job command's exit code of the last attempt that
	// ended.
	ExitCode *int `json:"exit_code,omitempty"`
	// Labels are the job message's labels.
	Labels map[string]string `json:"labels,omitempty"`
	// Attempt is the current (or last) attempt, from 1; Class and
	// MemoryBytes are what the dispatcher sized it with.
	Attempt     int    `json:"attempt,omitempty"`
	Class       string `json:"class,omitempty"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
	// SizedBy says how the dispatcher chose MemoryBytes.
	SizedBy *SizedBy `json:"sized_by,omitempty"`
	// Attempts lists every attempt that started, in order.
	Attempts []AttemptState `json:"attempts,omitempty"`
	// Outputs are the small key/value outputs the job wrote (a metric, a
	// model's location) and OutputsURI where the files it left in its
	// outputs directory are stored, when it succeeded.
	Outputs    map[string]string `json:"outputs,omitempty"`
	OutputsURI string            `json:"outputs_uri,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at,omitzero"`
	EndedAt    time.Time         `json:"ended_at,omitzero"`
	// CancelledAt is when a cancel was recorded: any message of the id sent
	// before it is dropped unrun.
	CancelledAt time.Time `json:"cancelled_at,omitzero"`
}

// SizedBy is how the dispatcher sized an attempt: what it asked for, and
// what decided that.
type SizedBy struct {
	// Source is what decided: the kind of group of past runs, or of
	// estimator, of the memory model that sized the job (type-features,
	// type, thin-type, pool, global, features), SizedByDefault or
	// SizedByOOM.
	Source string `json:"source"`
	// Level describes the model's group in words, Group names the job's
	// group in it, and Runs counts the past runs behind it (0 when the
	// model keeps no count).
	Level string `json:"level,omitempty"`
	Group string `json:"group,omitempty"`
	Runs  int    `json:"runs,omitempty"`
	// PredictedBytes is the model's own size, zero without one.
	// FloorBytes is the least the model gives the job's group, when above
	// it: the group's size over about a week's runs, which keeps a few
	// days' dip from sizing its usual jobs too small (0: none). Raise is
	// the multiplier put on the larger after recent OOM kills in its
	// group, between retrainings (0: none).
	PredictedBytes int64   `json:"predicted_bytes,omitempty"`
	FloorBytes     int64   `json:"floor_bytes,omitempty"`
	Raise          float64 `json:"raise,omitempty"`
	// RequestBytes is what was asked for, after the floor, the raise,
	// the OOM history and the type's bounds; the class rounds it up to the job's
	// MemoryBytes, or caps it there when it is above the pool's largest
	// size.
	RequestBytes int64 `json:"request_bytes"`
	// Model names the memory model that sized the job (when it was
	// trained). ResizeAbove is the raise of the job's group above which
	// the job gets a larger class: if the dispatcher's raise has passed it
	// when a worker takes the job, and the model is the same, the worker
	// sends the job back to be sized again (once a run). 0: never (the
	// largest class the type and pool allow, not sized by the model, sized
	// by the OOM history, or sent back once already).
	Model       string  `json:"model,omitempty"`
	ResizeAbove float64 `json:"resize_above,omitempty"`
}

// Sources of a size other than the memory model.
const (
	// SizedByDefault: the job type's default memory, without a model or
	// when the model had nothing to size the job by.
	SizedByDefault = "default"
	// SizedByOOM: the OOM factor times the memory of the run's last
	// OOM-killed attempt, more than the model or the default gives.
	SizedByOOM = "oom"
)

// AttemptState is one attempt of a job: where it ran and how it ended.
type AttemptState struct {
	Attempt int `json:"attempt"`
	// Outcome is empty while the attempt runs.
	Outcome  Outcome `json:"outcome,omitempty"`
	Error    string  `json:"error,omitempty"`
	ExitCode *int    `json:"exit_code,omitempty"`
	Pod      string  `json:"pod,omitempty"`
	Node     string  `json:"node,omitempty"`
	// CapacityType is spot or on-demand.
	CapacityType   string    `json:"capacity_type,omitempty"`
	InstanceType   string    `json:"instance_type,omitempty"`
	Zone           string    `json:"zone,omitempty"`
	AllocatedBytes int64     `json:"allocated_bytes,omitempty"`
	PeakBytes      int64     `json:"peak_bytes,omitempty"`
	Resumed        bool      `json:"resumed,omitempty"`
	GPUs           int       `json:"gpus,omitempty"`
	StartedAt      time.Time `json:"started_at"`
	EndedAt        time.Time `json:"ended_at,omitzero"`
	// LastCheckpointAt is when the attempt stored its last checkpoint.
	LastCheckpointAt time.Time `json:"last_checkpoint_at,omitzero"`
}

// AttemptOf is the attempt a run record describes.
func AttemptOf(r *RunRecord) AttemptState {
	code := r.ExitCode
	return AttemptState{
		Attempt: r.Attempt, Outcome: r.Outcome, Error: r.Error, ExitCode: &code,
		Node: r.Node, CapacityType: r.CapacityType, InstanceType: r.InstanceType, Zone: r.Zone,
		AllocatedBytes: r.AllocatedBytes, PeakBytes: r.PeakBytes, Resumed: r.Resumed, GPUs: r.GPUs,
		StartedAt: r.StartedAt, EndedAt: r.EndedAt, LastCheckpointAt: r.LastCheckpointAt,
	}
}
