package jobview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
)

// maxReadFailures is how many reads of a job's state in a row may fail
// before Wait gives up.
const maxReadFailures = 8

// StopWait bounds how long Wait waits, after a cancel, for the attempt
// that ran to record that it stopped; a worker notices a cancel within
// seconds and stops its command within its stop grace.
const StopWait = 5 * time.Minute

// Wait polls a job's state, backing off from a second to poll, until the
// job ends, and returns its final state. A cancelled job ends when its
// running attempt stopped too (or StopWait after the cancel), so that
// nothing of it runs when Wait returns. A job jobfleet has not received
// yet is waited for. onChange, when set, sees every status the job is
// found in. Wait returns ctx's error when ctx ends first.
func Wait(ctx context.Context, store contract.Store, id string, poll time.Duration, onChange func(*jobfleet.JobState)) (*jobfleet.JobState, error) {
	pause, failures := time.Second, 0
	var last jobfleet.Status
	for {
		cur, _, err := store.ReadRun(ctx, id)
		switch {
		case err == nil:
			failures = 0
			if cur.Status != last && onChange != nil {
				onChange(&cur.JobState)
			}
			last = cur.Status
			if settled(&cur.JobState, time.Now()) {
				return &cur.JobState, nil
			}
		case errors.Is(err, contract.ErrNotFound):
			failures = 0 // not received by the dispatcher yet
		case ctx.Err() != nil:
		default:
			if failures++; failures >= maxReadFailures {
				return nil, fmt.Errorf("reading the state of job %s: %w", id, err)
			}
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
		pause = min(pause*3/2, max(poll, time.Second))
	}
}

// WriteOutputs writes a job's state to dir/result.json and each of its
// key/value outputs to dir/values/<key>; with files, it downloads the
// output files of a job that succeeded into dir/files/.
func WriteOutputs(ctx context.Context, store contract.Store, api contract.DownloadAPI, st *jobfleet.JobState, dir string, files bool) error {
	if err := os.MkdirAll(filepath.Join(dir, "values"), 0o755); err != nil {
		return fmt.Errorf("writing outputs: %w", err)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing outputs: %w", err)
	}
	for k, v := range st.Outputs {
		// Keys are shaped as label keys: plain file names.
		if !jobfleet.LabelKeyPattern.MatchString(k) {
			return fmt.Errorf("job %s has an output key %q that is not a file name", st.JobID, k)
		}
		if err := os.WriteFile(filepath.Join(dir, "values", k), []byte(v), 0o644); err != nil {
			return fmt.Errorf("writing outputs: %w", err)
		}
	}
	if !files || st.Status != jobfleet.StatusSucceeded || st.OutputsURI == "" {
		return nil
	}
	return store.Download(ctx, api, store.OutputsPrefix(st.JobID, st.Run), filepath.Join(dir, "files"))
}

// settled reports whether a job ended and none of its attempts runs.
func settled(st *jobfleet.JobState, now time.Time) bool {
	if !st.Status.Terminal() {
		return false
	}
	if n := len(st.Attempts); n == 0 || st.Attempts[n-1].Outcome != "" {
		return true
	}
	return now.Sub(st.CancelledAt) > StopWait
}
