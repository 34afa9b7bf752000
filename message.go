package jobfleet

import (
	"encoding/json"
	"time"
)

// Version is the job message format version this package reads and writes.
const Version = 1

// MaxMessageBytes is the largest job message accepted: SQS's 1 MiB message
// limit, less 8 KiB that jobfleet keeps for the attributes it forwards a
// job with (its run, attempt and size).
const MaxMessageBytes = 1<<20 - 8<<10

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
	// Labels are the producer's names for the job (team, user, workflow,
	// step), carried to its run records so that cost and waste can be
	// attributed: at most MaxLabels, keys matching LabelKeyPattern, values
	// of at most MaxLabelValueChars characters of printable text.
	Labels map[string]string `json:"labels,omitempty"`
	// TaskToken is an AWS Step Functions task token (a state with
	// .waitForTaskToken): jobfleet sends heartbeats while the job runs and
	// SendTaskSuccess with the job's result, or SendTaskFailure with the
	// reason, once it ended. At most MaxTaskTokenChars visible ASCII
	// characters.
	TaskToken string `json:"task_token,omitempty"`
}

// MaxTaskTokenChars is the longest task token Step Functions issues.
const MaxTaskTokenChars = 2048

// Label bounds.
const (
	MaxLabels          = 16
	MaxLabelValueChars = 256
)

// ReservedFields are the members a job message must not have: jobfleet
// keeps a job's rerun history and checkpoint itself, in S3, so that no
// message can forge them. Version 1 messages once carried them.
var ReservedFields = []string{"history", "checkpoint"}

// Reason says why an attempt ended without success.
type Reason string

// Reasons for a rerun. Interrupted and evicted attempts do not spend the job
// type's retry budget; OOM attempts rerun with more memory; failed attempts
// spend the budget. A resized attempt did not run: the job had waited in
// its class queue while the dispatcher's raise after misses rose for its
// group, and went back to be sized again (once a run), spending nothing.
const (
	ReasonInterrupted Reason = "interrupted"
	ReasonEvicted     Reason = "evicted"
	ReasonOOM         Reason = "oom"
	ReasonFailed      Reason = "failed"
	ReasonResized     Reason = "resized"
)

// SpendsRetry reports whether an attempt that ended for this reason counts
// against the job type's retry budget.
func (r Reason) SpendsRetry() bool {
	return r == ReasonFailed || r == ReasonOOM
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

// History is the unsuccessful attempts of one run of a job, oldest first.
// jobfleet keeps it in S3 as the run goes; a message never carries it.
type History []Attempt

// Count returns how many attempts ended for one of the given reasons.
func (h History) Count(reasons ...Reason) int {
	n := 0
	for _, a := range h {
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
func (h History) RetriesSpent() int {
	n := 0
	for _, a := range h {
		if a.Reason.SpendsRetry() {
			n++
		}
	}
	return n
}

// Last returns the most recent attempt, or false for none.
func (h History) Last() (Attempt, bool) {
	if len(h) == 0 {
		return Attempt{}, false
	}
	return h[len(h)-1], true
}
