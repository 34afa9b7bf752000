package jobfleet

import (
	"encoding/json"
	"time"
)

// Version is the job message format version this package reads and writes.
const Version = 1

// MaxMessageBytes is the largest job message accepted, the SQS message size
// limit.
const MaxMessageBytes = 1 << 20

// Priority bounds. Jobs carry a priority from MinPriority to MaxPriority;
// where the dispatcher holds several jobs at once, it forwards the higher
// priorities first.
const (
	MinPriority = 0
	MaxPriority = 9
)

// Job is one job message: the unit producers publish and workers run.
type Job struct {
	// Version is the message format version; always [Version].
	Version int `json:"version"`
	// ID identifies the job and is its idempotency key: a rerun keeps it, and
	// a job id with a given attempt number runs at most once.
	ID string `json:"id"`
	// Type names a job type the platform team registered. It decides the
	// image, command, pool and memory bounds; a message cannot override them.
	Type string `json:"type"`
	// Params is free JSON handed to the job (as a file) unchanged. It must be
	// an object when present.
	Params json.RawMessage `json:"params,omitempty"`
	// Features are the numbers the memory predictor reads, such as rows or
	// entities. Values are finite and non-negative.
	Features map[string]float64 `json:"features,omitempty"`
	// Priority orders jobs, from MinPriority to MaxPriority.
	Priority int `json:"priority,omitempty"`
	// History lists earlier attempts of this job, oldest first. Producers
	// leave it empty; workers and the dispatcher append to it on reruns.
	History []Attempt `json:"history,omitempty"`
	// Checkpoint is the location of the job's last complete checkpoint, an
	// s3:// URI, set on reruns of jobs that checkpointed.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// Reason says why an attempt ended without success.
type Reason string

// Reasons for a rerun. Interrupted and evicted attempts do not spend the job
// type's retry budget; OOM attempts rerun with more memory; failed attempts
// spend the budget.
const (
	ReasonInterrupted Reason = "interrupted"
	ReasonEvicted     Reason = "evicted"
	ReasonOOM         Reason = "oom"
	ReasonFailed      Reason = "failed"
)

// SpendsRetry reports whether an attempt that ended for this reason counts
// against the job type's retry budget.
func (r Reason) SpendsRetry() bool {
	return r == ReasonFailed || r == ReasonOOM
}

func (r Reason) valid() bool {
	switch r {
	case ReasonInterrupted, ReasonEvicted, ReasonOOM, ReasonFailed:
		return true
	}
	return false
}

// Capacity types of the node an attempt ran on, as Karpenter labels them
// (karpenter.sh/capacity-type).
const (
	CapacitySpot     = "spot"
	CapacityOnDemand = "on-demand"
)

// Attempt records one earlier attempt of a job.
type Attempt struct {
	// Attempt is the attempt's number, from 1.
	Attempt int `json:"attempt"`
	// Reason is why the attempt ended without success.
	Reason Reason `json:"reason"`
	// Error is a short human-readable detail, such as an exit status.
	Error string `json:"error,omitempty"`
	// ExitCode is the job's exit code, when it exited.
	ExitCode int `json:"exit_code,omitempty"`
	// Node, InstanceType, CapacityType and Zone say where the attempt ran.
	Node         string `json:"node,omitempty"`
	InstanceType string `json:"instance_type,omitempty"`
	CapacityType string `json:"capacity_type,omitempty"`
	Zone         string `json:"zone,omitempty"`
	// AllocatedBytes is the memory limit the attempt ran with; PeakBytes the
	// most it used.
	AllocatedBytes int64 `json:"allocated_bytes,omitempty"`
	PeakBytes      int64 `json:"peak_bytes,omitempty"`
	// Checkpoint is the checkpoint the attempt left behind, if any.
	Checkpoint string `json:"checkpoint,omitempty"`
	// StartedAt and EndedAt bound the attempt.
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// Attempt returns the number of the job's next attempt: one more than the
// attempts in its history.
func (j *Job) Attempt() int {
	return len(j.History) + 1
}

// Count returns how many attempts in the job's history ended for one of the
// given reasons.
func (j *Job) Count(reasons ...Reason) int {
	n := 0
	for _, a := range j.History {
		for _, r := range reasons {
			if a.Reason == r {
				n++
				break
			}
		}
	}
	return n
}

// RetriesSpent returns how many attempts counted against the retry budget.
func (j *Job) RetriesSpent() int {
	n := 0
	for _, a := range j.History {
		if a.Reason.SpendsRetry() {
			n++
		}
	}
	return n
}

// Last returns the job's most recent attempt, or false for a first attempt.
func (j *Job) Last() (Attempt, bool) {
	if len(j.History) == 0 {
		return Attempt{}, false
	}
	return j.History[len(j.History)-1], true
}

// Rerun returns a copy of the job with the attempt appended to its history
// and the checkpoint location updated, ready to publish again.
func (j *Job) Rerun(a Attempt) *Job {
	next := *j
	a.Attempt = j.Attempt()
	next.History = append(append([]Attempt(nil), j.History...), a)
	if a.Checkpoint != "" {
		next.Checkpoint = a.Checkpoint
	}
	return &next
}
