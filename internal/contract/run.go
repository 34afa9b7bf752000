package contract

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jobfleet/jobfleet"
)

// RunState says whether a run is still going.
type RunState string

// Run states.
const (
	RunLive  RunState = "live"
	RunEnded RunState = "ended"
)

// Run is jobfleet's record of a job id: its current run. A run starts when
// the dispatcher accepts a producer's message for the id, and ends when the
// job succeeds or is dead-lettered. Reruns after an interruption, an OOM
// kill or a failure are attempts of the same run and resume from its
// checkpoint. A later message with the id of an ended run starts a new run,
// from nothing; another message with the id of a live run is a duplicate.
type Run struct {
	JobID string `json:"job_id"`
	Type  string `json:"type"`
	// ID names the run: the SQS message id of the intake message that
	// started it (a redelivery of that message keeps it).
	ID        string    `json:"run"`
	State     RunState  `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	// BodySHA256 is the hash of the job message that started the run:
	// every attempt of the run must carry the same message.
	BodySHA256 string `json:"body_sha256"`
	// Outcome, Reason and EndedAt are set when the run ended: the outcome
	// of its last attempt, and why it was dead-lettered.
	Outcome jobfleet.Outcome `json:"outcome,omitempty"`
	Reason  string           `json:"reason,omitempty"`
	EndedAt time.Time        `json:"ended_at,omitzero"`
	Seq     int              `json:"seq"`
}

// Start is what StartRun found.
type Start int

// Results of StartRun.
const (
	// Started: the message starts (or, redelivered, continues) the run.
	Started Start = iota
	// Duplicate: another message already started a run of the id that is
	// still live.
	Duplicate
	// Finished: this very message started a run that has ended already;
	// its delete from intake was lost.
	Finished
)

// ReadRun reads the current run of a job id.
func (s Store) ReadRun(ctx context.Context, jobID string) (*Run, string, error) {
	var r Run
	etag, err := s.get(ctx, s.RunKey(jobID), &r)
	if err != nil {
		return nil, "", err
	}
	return &r, etag, nil
}

// StartRun records that the intake message runID starts a run of the job.
// It returns Duplicate with the live run when another message started one,
// and Finished when this message's run ended already. A run that ended is
// replaced by the new one.
func (s Store) StartRun(ctx context.Context, job *jobfleet.Job, body, runID string, now time.Time) (Start, *Run, error) {
	next := &Run{JobID: job.ID, Type: job.Type, ID: runID, State: RunLive, CreatedAt: now.UTC(), BodySHA256: BodyHash(body), Seq: 1}
	for range 5 {
		_, err := s.write(ctx, s.RunKey(job.ID), next, true, "")
		if err == nil {
			return Started, next, nil
		}
		if !errors.Is(err, ErrConflict) {
			return 0, nil, err
		}
		cur, etag, err := s.ReadRun(ctx, job.ID)
		if errors.Is(err, ErrNotFound) {
			continue // deleted between the two calls
		}
		if err != nil {
			return 0, nil, err
		}
		switch {
		case cur.ID == runID && cur.State == RunLive:
			return Started, cur, nil
		case cur.ID == runID:
			return Finished, cur, nil
		case cur.State == RunLive:
			return Duplicate, cur, nil
		}
		next.Seq = cur.Seq + 1
		if _, err := s.write(ctx, s.RunKey(job.ID), next, false, etag); err == nil {
			return Started, next, nil
		} else if !errors.Is(err, ErrConflict) {
			return 0, nil, err
		}
	}
	return 0, nil, fmt.Errorf("starting a run of job %s: %w", job.ID, ErrConflict)
}

// BodyHash is the hash a run keeps of its job message.
func BodyHash(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}

// EndRun records that a run ended. It does nothing when the run ended
// already or is no longer the job's current run.
func (s Store) EndRun(ctx context.Context, jobID, runID string, outcome jobfleet.Outcome, reason string, now time.Time) error {
	for range 5 {
		cur, etag, err := s.ReadRun(ctx, jobID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.ID != runID || cur.State == RunEnded {
			return nil
		}
		cur.State, cur.Outcome, cur.Reason, cur.EndedAt, cur.Seq = RunEnded, outcome, reason, now.UTC(), cur.Seq+1
		if _, err := s.write(ctx, s.RunKey(jobID), cur, false, etag); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("ending run %s of job %s: %w", runID, jobID, ErrConflict)
}
