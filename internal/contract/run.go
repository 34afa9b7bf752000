package contract

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
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

// Run is jobfleet's record of a job id: its current run, and the job's
// state as users see it (jobfleet.JobState). A run starts when the
// dispatcher accepts a producer's message for the id, and ends when the job
// succeeds, fails for good, is dead-lettered or is cancelled. Reruns after
// an interruption, an OOM kill or a failure are attempts of the same run
// and resume from its checkpoint. A later message with the id of an ended
// run starts a new run, from nothing; another message with the id of a live
// run is a duplicate, unless it carries the same job (a repeated publish),
// which is dropped.
//
// The dispatcher writes queued and sized, the worker running and how each
// attempt ended, `jobfleet cancel` cancelled; every write is conditional
// (If-None-Match or If-Match), and none moves the state backwards.
type Run struct {
	jobfleet.JobState
	State RunState `json:"state"`
	// BodySHA256 is the hash of the job message that started the run:
	// every attempt of the run must carry the same message.
	BodySHA256 string `json:"body_sha256"`
	// Outcome is the outcome of the last attempt that ended.
	Outcome jobfleet.Outcome `json:"outcome,omitempty"`
	// TaskToken is the Step Functions task token of the job message;
	// EventSent and TaskAnswered say that the end of the run was published
	// and the token answered (Announce).
	TaskToken    string `json:"task_token,omitempty"`
	EventSent    bool   `json:"event_sent,omitempty"`
	TaskAnswered bool   `json:"task_answered,omitempty"`
	Seq          int    `json:"seq"`

	// unknown are the document's top-level fields this version of
	// jobfleet does not know, written back as they were read: a worker
	// older than its dispatcher keeps the fields a newer dispatcher adds
	// when it records how its attempt went. (Fields added inside an
	// attempt are not kept.) An older writer carries such a field
	// unchanged into the next attempt, clearing only the fields it knows:
	// a new top-level field that describes an attempt must say which.
	// Keys are compared as encoding/json matches them, without case.
	unknown map[string]json.RawMessage
}

// runFields is Run without its JSON methods.
type runFields Run

// knownRunFields are the JSON names of Run's fields, its JobState's
// included.
var knownRunFields = func() map[string]bool {
	known := map[string]bool{}
	var add func(reflect.Type)
	add = func(t reflect.Type) {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for f := range t.Fields() {
			switch name, _, _ := strings.Cut(f.Tag.Get("json"), ","); {
			case f.Anonymous && name == "":
				add(f.Type)
			case f.IsExported() && name != "-":
				known[strings.ToLower(cmp.Or(name, f.Name))] = true
			}
		}
	}
	add(reflect.TypeFor[runFields]())
	return known
}()

// UnmarshalJSON reads a run, keeping the fields it does not know.
func (r *Run) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, (*runFields)(r)); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	maps.DeleteFunc(all, func(name string, _ json.RawMessage) bool { return knownRunFields[strings.ToLower(name)] })
	r.unknown = nil
	if len(all) > 0 {
		r.unknown = all
	}
	return nil
}

// MarshalJSON writes a run with the fields it read and did not know.
func (r Run) MarshalJSON() ([]byte, error) {
	data, err := json.Marshal(runFields(r))
	if err != nil || len(r.unknown) == 0 {
		return data, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, err
	}
	for name, v := range r.unknown {
		if _, ok := all[name]; !ok {
			all[name] = v
		}
	}
	return json.Marshal(all)
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
	// Cancelled: the job was cancelled after this message was sent.
	Cancelled
	// Repeated: another message with the same job message started the
	// job's current run, and this one was sent before that run ended: a
	// repeated publish (a retried `jobfleet submit`), not a new run.
	Repeated
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

// Sizing is the class and memory the dispatcher chose for an attempt,
// and how it chose them.
type Sizing struct {
	Class  string
	Memory int64
	By     *jobfleet.SizedBy
}

// StartRun records that the intake message runID, sent at sent, starts a
// run of the job: sized, when the dispatcher could size it at once (one
// write for both), else queued. It returns Duplicate with the live run
// when another message started one, Finished when this message's run
// ended already, and Cancelled when the job was cancelled after the
// message was sent. A run that ended is replaced by the new one. A
// redelivered message finds its run as it is: Started, with that run.
func (s Store) StartRun(ctx context.Context, job *jobfleet.Job, body, runID string, sent, now time.Time, size *Sizing) (Start, *Run, error) {
	next := &Run{
		JobState: jobfleet.JobState{
			JobID: job.ID, Type: job.Type, Run: runID, Status: jobfleet.StatusQueued, Labels: job.Labels,
			Attempt: 1, CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
		},
		State: RunLive, BodySHA256: BodyHash(body), TaskToken: job.TaskToken, Seq: 1,
	}
	if size != nil {
		next.Status, next.Class, next.MemoryBytes, next.SizedBy = jobfleet.StatusSized, size.Class, size.Memory, size.By
	}
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
		repeated := cur.BodySHA256 == next.BodySHA256 && (cur.State == RunLive || (!sent.IsZero() && !sent.After(cur.EndedAt)))
		switch {
		case cur.Run == runID && cur.State == RunLive:
			return Started, cur, nil
		case cur.Run == runID:
			return Finished, cur, nil
		case cur.Status == jobfleet.StatusCancelled && !sent.IsZero() && !sent.After(cur.CancelledAt):
			return Cancelled, cur, nil
		case repeated:
			return Repeated, cur, nil
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

// errUnchanged tells updateRun that the run needs no write.
var errUnchanged = errors.New("unchanged")

// updateRun changes the current run of a job with f and writes it back if
// it did not change since it was read. f returns errUnchanged to leave the
// run as it is, or another error to give up with it; updateRun returns the
// run as it is afterwards.
func (s Store) updateRun(ctx context.Context, jobID string, now time.Time, f func(*Run) error) (*Run, error) {
	for range 5 {
		cur, etag, err := s.ReadRun(ctx, jobID)
		if err != nil {
			return nil, err
		}
		if err := f(cur); errors.Is(err, errUnchanged) {
			return cur, nil
		} else if err != nil {
			return cur, err
		}
		cur.Seq++
		cur.UpdatedAt = now.UTC()
		if _, err := s.write(ctx, s.RunKey(jobID), cur, false, etag); !errors.Is(err, ErrConflict) {
			return cur, err
		}
	}
	return nil, fmt.Errorf("updating the run of job %s: %w", jobID, ErrConflict)
}

// liveRun checks that cur is the live run runID: ErrStale when the run
// ended (a cancel, or a rerun of a run that ended), ErrForged when the job
// has another run now.
func liveRun(cur *Run, runID string) error {
	switch {
	case cur.Run != runID:
		return fmt.Errorf("%w: run %s is not job %s's current run %s", ErrForged, runID, cur.JobID, cur.Run)
	case cur.State != RunLive:
		return fmt.Errorf("%w: run %s of job %s ended (%s)", ErrStale, runID, cur.JobID, cur.Status)
	}
	return nil
}

// Sized records the size the dispatcher chose for an attempt. It returns
// ErrStale when the run ended meanwhile (it was cancelled): the attempt
// must not be forwarded.
func (s Store) Sized(ctx context.Context, jobID, runID string, attempt int, size Sizing, now time.Time) error {
	_, err := s.updateRun(ctx, jobID, now, func(cur *Run) error {
		if err := liveRun(cur, runID); err != nil {
			return err
		}
		if cur.Attempt > attempt || (cur.Attempt == attempt && cur.Status != jobfleet.StatusQueued && cur.Status != jobfleet.StatusSized && cur.Status != "") {
			return errUnchanged // a redelivery of a message the worker took already
		}
		cur.Status, cur.Attempt, cur.Class, cur.MemoryBytes, cur.SizedBy = jobfleet.StatusSized, attempt, size.Class, size.Memory, size.By
		return nil
	})
	return err
}

// Running records that a worker runs an attempt. It returns ErrStale when
// the run ended meanwhile (it was cancelled): the attempt must not run.
func (s Store) Running(ctx context.Context, jobID, runID string, a jobfleet.AttemptState, now time.Time) error {
	_, err := s.updateRun(ctx, jobID, now, func(cur *Run) error {
		if err := liveRun(cur, runID); err != nil {
			return err
		}
		if cur.Attempt > a.Attempt {
			return errUnchanged
		}
		cur.Status, cur.Attempt = jobfleet.StatusRunning, a.Attempt
		setAttempt(&cur.JobState, a)
		return nil
	})
	return err
}

// Requeued records how an attempt ended that is followed by a rerun: the
// job is queued again as attempt a.Attempt+1. A run that ended meanwhile
// keeps its status, with the attempt's outcome added.
func (s Store) Requeued(ctx context.Context, jobID, runID string, a jobfleet.AttemptState, now time.Time) error {
	_, err := s.updateRun(ctx, jobID, now, func(cur *Run) error {
		if cur.Run != runID {
			return errUnchanged
		}
		setAttempt(&cur.JobState, a)
		if last := cur.Attempts[len(cur.Attempts)-1]; last.Attempt == a.Attempt {
			cur.Outcome, cur.ExitCode = a.Outcome, a.ExitCode
		}
		if cur.State == RunLive && cur.Attempt <= a.Attempt {
			cur.Status, cur.Attempt, cur.Class, cur.MemoryBytes, cur.SizedBy = jobfleet.StatusQueued, a.Attempt+1, "", 0, nil
		}
		return nil
	})
	return err
}

// End is how a run ended.
type End struct {
	Status jobfleet.Status
	// Outcome is the outcome of the last attempt, when one ran.
	Outcome jobfleet.Outcome
	Reason  string
	// Attempt is the last attempt, when one ran.
	Attempt *jobfleet.AttemptState
	// Outputs and OutputsURI are what a job that succeeded left.
	Outputs    map[string]string
	OutputsURI string
}

// EndRun records that a run ended. When the run ended already (it was
// cancelled while its last attempt ran) it keeps its status and only adds
// the attempt; a run that is no longer the job's current run is left alone.
func (s Store) EndRun(ctx context.Context, jobID, runID string, end End, now time.Time) error {
	_, err := s.updateRun(ctx, jobID, now, func(cur *Run) error {
		if cur.Run != runID {
			return errUnchanged
		}
		if end.Attempt != nil {
			setAttempt(&cur.JobState, *end.Attempt)
			cur.ExitCode = end.Attempt.ExitCode
		}
		if cur.State == RunEnded {
			if end.Attempt == nil {
				return errUnchanged
			}
			return nil
		}
		cur.State, cur.Status, cur.Outcome, cur.Reason, cur.EndedAt = RunEnded, end.Status, end.Outcome, end.Reason, now.UTC()
		cur.Outputs, cur.OutputsURI = end.Outputs, end.OutputsURI
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// ErrEnded marks a cancel of a job that ended already.
var ErrEnded = errors.New("the job has ended")

// Cancel cancels a job: its live run ends as cancelled, and every message
// of the id sent before now is dropped unrun by whoever receives it. A job
// id jobfleet has not seen yet is recorded as cancelled, so that its
// message, if already sent, never runs. A job that ended already returns
// its run with ErrEnded.
func (s Store) Cancel(ctx context.Context, jobID, reason string, now time.Time) (*Run, error) {
	now = now.UTC()
	cancelled := &Run{
		JobState: jobfleet.JobState{
			JobID: jobID, Status: jobfleet.StatusCancelled, Reason: reason,
			CreatedAt: now, UpdatedAt: now, EndedAt: now, CancelledAt: now,
		},
		State: RunEnded, Seq: 1,
	}
	for range 5 {
		if _, err := s.write(ctx, s.RunKey(jobID), cancelled, true, ""); err == nil {
			return cancelled, nil
		} else if !errors.Is(err, ErrConflict) {
			return nil, err
		}
		cur, err := s.updateRun(ctx, jobID, now, func(cur *Run) error {
			switch {
			case cur.State == RunLive:
				cur.State, cur.Status, cur.Reason, cur.EndedAt = RunEnded, jobfleet.StatusCancelled, reason, now
			case cur.Status == jobfleet.StatusCancelled:
				// Cancelled again: messages sent since are dropped too.
			default:
				return ErrEnded
			}
			cur.CancelledAt = now
			return nil
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		return cur, err
	}
	return nil, fmt.Errorf("cancelling job %s: %w", jobID, ErrConflict)
}

// setAttempt adds an attempt to a job's state, or updates the one with its
// number, keeping what the update does not know (the pod, where it ran).
func setAttempt(st *jobfleet.JobState, a jobfleet.AttemptState) {
	for i := range st.Attempts {
		if st.Attempts[i].Attempt != a.Attempt {
			continue
		}
		old := st.Attempts[i]
		for _, f := range []struct{ to, from *string }{
			{&a.Pod, &old.Pod}, {&a.Node, &old.Node}, {&a.CapacityType, &old.CapacityType},
			{&a.InstanceType, &old.InstanceType}, {&a.Zone, &old.Zone},
		} {
			if *f.to == "" {
				*f.to = *f.from
			}
		}
		if a.StartedAt.IsZero() {
			a.StartedAt = old.StartedAt
		}
		st.Attempts[i] = a
		return
	}
	st.Attempts = append(st.Attempts, a)
	slices.SortFunc(st.Attempts, func(x, y jobfleet.AttemptState) int { return x.Attempt - y.Attempt })
}

// Reject records that the intake message runID of a job was dead-lettered
// before it started a run (its type is unknown), so that whoever waits for
// the job learns why. A live run of the id is left alone: the message was
// not it.
func (s Store) Reject(ctx context.Context, job *jobfleet.Job, body, runID, reason string, now time.Time) error {
	now = now.UTC()
	rejected := &Run{
		JobState: jobfleet.JobState{
			JobID: job.ID, Type: job.Type, Run: runID, Status: jobfleet.StatusDeadLettered, Reason: reason, Labels: job.Labels,
			CreatedAt: now, UpdatedAt: now, EndedAt: now,
		},
		State: RunEnded, BodySHA256: BodyHash(body), TaskToken: job.TaskToken, Seq: 1,
	}
	for range 5 {
		if _, err := s.write(ctx, s.RunKey(job.ID), rejected, true, ""); !errors.Is(err, ErrConflict) {
			return err
		}
		cur, etag, err := s.ReadRun(ctx, job.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if cur.State == RunLive || cur.Run == runID {
			return nil
		}
		rejected.Seq = cur.Seq + 1
		if _, err := s.write(ctx, s.RunKey(job.ID), rejected, false, etag); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("recording the dead letter of job %s: %w", job.ID, ErrConflict)
}

// Placed records where an attempt runs (its node's capacity type, instance
// type and zone), as the dispatcher learns it from the node, for an
// attempt whose worker could not tell. What is known already is kept. It
// reports false when the state shows no such attempt (yet).
func (s Store) Placed(ctx context.Context, jobID, runID string, attempt int, capacityType, instanceType, zone string, now time.Time) (bool, error) {
	found := false
	_, err := s.updateRun(ctx, jobID, now, func(cur *Run) error {
		if cur.Run != runID {
			return errUnchanged
		}
		for i := range cur.Attempts {
			a := &cur.Attempts[i]
			if a.Attempt != attempt {
				continue
			}
			found = true
			changed := false
			for _, f := range []struct {
				to   *string
				from string
			}{{&a.CapacityType, capacityType}, {&a.InstanceType, instanceType}, {&a.Zone, zone}} {
				if *f.to == "" && f.from != "" {
					*f.to, changed = f.from, true
				}
			}
			if !changed {
				return errUnchanged
			}
			return nil
		}
		return errUnchanged
	})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return found, err
}
