package main

import (
	"context"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/simulate"
)

// jobfleet local --records-dir writes the demo's run records where
// jobfleet simulate (and predict train --records) read them.
func TestWriteRecordsReadBySimulate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC)
	var records []jobfleet.RunRecord
	for i := range 4 {
		start := t0.Add(time.Duration(i) * 30 * time.Second)
		records = append(records, jobfleet.RunRecord{JobID: string(rune('a' + i)), Type: "train", Attempt: 1, Outcome: jobfleet.OutcomeSucceeded,
			AllocatedBytes: 2 << 30, PeakBytes: 1 << 30, StartedAt: start, EndedAt: start.Add(time.Minute), DurationSecs: 60})
	}
	if err := writeRecords(dir, records); err != nil {
		t.Fatal(err)
	}
	trace, err := simulate.LoadRecords(context.Background(), nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	// The records end on two days: two partitions, four jobs.
	if len(trace.Jobs) != 4 || trace.Jobs[0].Peak != 1<<30 || trace.Jobs[0].Runtime != 60 {
		t.Fatalf("jobs %+v", trace.Jobs)
	}
}
