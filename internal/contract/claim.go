package contract

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobfleet/jobfleet"
)

// A claim makes one attempt of a run happen at most once, although SQS
// delivers at least once and the dispatcher may forward a job twice when it
// crashes between sending and deleting. Before running, the worker creates
//
//	<prefix>/jobs/<job id>/runs/<run>/attempts/<n>.json
//
// with If-None-Match: *. Whoever creates it holds the attempt, and renews
// the claim (with If-Match) while it runs, as a lease. A later message for
// the same attempt finds:
//   - a claim that ended: its holder recorded the outcome and what follows
//     (Next), and may have died before doing it; the message's receiver
//     does it again (each step is idempotent) and deletes the message;
//   - a running claim of another message: a duplicate, deleted unrun;
//   - a running claim of the same message whose lease is fresh: its holder
//     is alive but lost touch with SQS; the receiver leaves it alone;
//   - a running claim of the same message whose lease expired: its holder
//     died; the receiver takes the attempt over (If-Match).
//
// A holder that cannot renew its lease, or finds it taken over, stops the
// attempt: at most one worker runs an attempt at any time.
//
// Ending an attempt writes the outcome, the run's history and what follows
// (rerun, dead-letter, done) into the claim before any of it is done, so a
// crash at any point leaves a claim that says how to finish.

// ClaimState is where an attempt is.
type ClaimState string

// Claim states.
const (
	ClaimRunning ClaimState = "running"
	ClaimEnded   ClaimState = "ended"
)

// Next is what follows an ended attempt.
type Next string

// What follows an attempt.
const (
	// NextRerun: attempt n+1 of the run goes to intake.
	NextRerun Next = "rerun"
	// NextDeadLetter: the job goes to the dead-letter queue and the run
	// ends.
	NextDeadLetter Next = "dead-letter"
	// NextDone: the job succeeded and the run ends.
	NextDone Next = "done"
)

// Claim is the record of who runs one attempt of a run, and how it ended.
type Claim struct {
	JobID   string     `json:"job_id"`
	Type    string     `json:"type"`
	Run     string     `json:"run"`
	Attempt int        `json:"attempt"`
	State   ClaimState `json:"state"`
	// The holder: a worker (Holder is unique to one worker's hold of one
	// message), the class queue message it holds, and its pod.
	Holder        string    `json:"holder"`
	MessageID     string    `json:"message_id"`
	QueueURL      string    `json:"queue_url"`
	ReceiptHandle string    `json:"receipt_handle"`
	Pod           string    `json:"pod,omitempty"`
	Namespace     string    `json:"namespace,omitempty"`
	Node          string    `json:"node,omitempty"`
	ClaimedAt     time.Time `json:"claimed_at"`
	// PredictedBytes is the memory model's class the message carried
	// (queue.AttrPredicted), for the run record the leader's sensor
	// writes when the holder could not.
	PredictedBytes int64 `json:"predicted_bytes,omitempty"`
	// RenewedAt is the holder's last renewal of its lease.
	RenewedAt time.Time `json:"renewed_at"`

	// Set when the attempt ended.
	EndedAt time.Time        `json:"ended_at,omitzero"`
	Outcome jobfleet.Outcome `json:"outcome,omitempty"`
	Next    Next             `json:"next,omitempty"`
	// Reason says why the job is dead-lettered.
	Reason string `json:"reason,omitempty"`
	// History is the run's unsuccessful attempts up to this one, this one
	// included: the history attempt n+1 is sized and budgeted with.
	History jobfleet.History `json:"history,omitempty"`
	// Record is the attempt's run record, sent again by whoever completes
	// Next.
	Record *jobfleet.RunRecord `json:"record,omitempty"`
	// Outputs and OutputsURI are what an attempt that succeeded left: its
	// key/value outputs and where its output files are stored.
	Outputs    map[string]string `json:"outputs,omitempty"`
	OutputsURI string            `json:"outputs_uri,omitempty"`

	Seq int `json:"seq"`
}

// Claimed is what claiming an attempt found.
type Claimed int

// Results of Claim.
const (
	// Owned: the caller holds the attempt.
	Owned Claimed = iota
	// Ended: the attempt ended already; the returned claim says what
	// follows.
	Ended
	// HeldByOther: another message holds the attempt (a duplicate).
	HeldByOther
	// HeldAlive: this message's earlier receiver still renews the claim.
	HeldAlive
)

// ReadClaim reads the claim of an attempt.
func (s Store) ReadClaim(ctx context.Context, jobID, run string, attempt int) (*Claim, string, error) {
	var c Claim
	etag, err := s.get(ctx, s.ClaimKey(jobID, run, attempt), &c)
	if err != nil {
		return nil, "", err
	}
	return &c, etag, nil
}

// Claim tries to take an attempt for the message c names. On Owned it
// returns the claim's ETag for renewing and ending it; on Ended the ended
// claim. lease is how long a holder that stopped renewing keeps the attempt.
func (s Store) Claim(ctx context.Context, c *Claim, now time.Time, lease time.Duration) (Claimed, *Claim, string, error) {
	key := s.ClaimKey(c.JobID, c.Run, c.Attempt)
	c.State, c.RenewedAt, c.Seq = ClaimRunning, now.UTC(), 1
	for range 5 {
		etag, err := s.write(ctx, key, c, true, "")
		if err == nil {
			return Owned, c, etag, nil
		}
		if !errors.Is(err, ErrConflict) {
			return 0, nil, "", err
		}
		cur, curETag, err := s.ReadClaim(ctx, c.JobID, c.Run, c.Attempt)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, nil, "", err
		}
		switch {
		case cur.State == ClaimEnded:
			return Ended, cur, curETag, nil
		case cur.MessageID != c.MessageID:
			return HeldByOther, cur, curETag, nil
		case now.Sub(cur.RenewedAt) < lease:
			return HeldAlive, cur, curETag, nil
		}
		c.Seq = cur.Seq + 1
		etag, err = s.write(ctx, key, c, false, curETag)
		if err == nil {
			return Owned, c, etag, nil
		}
		if !errors.Is(err, ErrConflict) {
			return 0, nil, "", err
		}
	}
	return 0, nil, "", fmt.Errorf("claiming attempt %d of job %s: %w", c.Attempt, c.JobID, ErrConflict)
}

// Update writes a claim the caller read or holds, if it did not change
// since (etag), and returns the new ETag. It returns ErrConflict when
// someone else wrote it in between: a holder has lost the attempt.
func (s Store) Update(ctx context.Context, c *Claim, etag string) (string, error) {
	c.Seq++
	newETag, err := s.write(ctx, s.ClaimKey(c.JobID, c.Run, c.Attempt), c, false, etag)
	if err != nil {
		c.Seq--
		return "", err
	}
	return newETag, nil
}

// PreviousAttempt reads the claim of the attempt before attempt n of a run
// and checks that it ended with a rerun as attempt n: the proof that a
// message for attempt n is jobfleet's own rerun. It returns the claim, whose
// History is the run's history so far.
func (s Store) PreviousAttempt(ctx context.Context, jobID, run string, attempt int) (*Claim, error) {
	if attempt < 2 {
		return nil, fmt.Errorf("attempt %d has no previous attempt", attempt)
	}
	prev, _, err := s.ReadClaim(ctx, jobID, run, attempt-1)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: attempt %d of run %s of job %s was never claimed", ErrForged, attempt-1, run, jobID)
		}
		return nil, err
	}
	if prev.State != ClaimEnded || prev.Next != NextRerun {
		return nil, fmt.Errorf("%w: attempt %d of run %s of job %s did not end in a rerun (state %s, next %q)", ErrForged, attempt-1, run, jobID, prev.State, prev.Next)
	}
	return prev, nil
}

// ErrForged marks a message that claims to be a rerun or an attempt that
// jobfleet's records do not show.
var ErrForged = errors.New("not a rerun jobfleet made")

// VerifyRun checks that a message for attempt n of a run is jobfleet's own:
// the run is the job's current, live run, the message is the one that
// started it (body), and attempt n follows an attempt that ended in a
// rerun. It returns the run's history so far.
func (s Store) VerifyRun(ctx context.Context, jobID, body, run string, attempt int) (jobfleet.History, error) {
	v, err := s.VerifyAttempt(ctx, jobID, body, run, attempt)
	return v.History, err
}

// Verified is what VerifyAttempt found of an attempt: the run's history
// so far, and how the dispatcher sized the attempt and the class memory
// it chose (nil and 0 when the run's state does not show it sized).
type Verified struct {
	History     jobfleet.History
	SizedBy     *jobfleet.SizedBy
	MemoryBytes int64
}

// VerifyAttempt is VerifyRun, also returning how the attempt was sized.
func (s Store) VerifyAttempt(ctx context.Context, jobID, body, run string, attempt int) (Verified, error) {
	if run == "" || attempt < 1 {
		return Verified{}, fmt.Errorf("%w: no run or attempt", ErrForged)
	}
	cur, _, err := s.ReadRun(ctx, jobID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Verified{}, fmt.Errorf("%w: job %s has no run", ErrForged, jobID)
		}
		return Verified{}, err
	}
	if cur.Run != run {
		return Verified{}, fmt.Errorf("%w: run %s is not job %s's current run %s", ErrForged, run, jobID, cur.Run)
	}
	if cur.BodySHA256 != "" && cur.BodySHA256 != BodyHash(body) {
		return Verified{}, fmt.Errorf("%w: the message is not the one that started run %s of job %s", ErrForged, run, jobID)
	}
	if cur.State != RunLive {
		return Verified{}, fmt.Errorf("%w: run %s of job %s ended (%s)", ErrStale, run, jobID, cur.Status)
	}
	var v Verified
	if cur.Attempt == attempt && cur.Status == jobfleet.StatusSized {
		v.SizedBy, v.MemoryBytes = cur.SizedBy, cur.MemoryBytes
	}
	if attempt == 1 {
		return v, nil
	}
	prev, err := s.PreviousAttempt(ctx, jobID, run, attempt)
	if err != nil {
		return Verified{}, err
	}
	v.History = prev.History
	return v, nil
}

// ErrStale marks a message of a run that has ended: its job was done, or
// dead-lettered, already.
var ErrStale = errors.New("the run has ended")
