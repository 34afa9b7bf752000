package simulate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/csvtable"
	"github.com/jobfleet/jobfleet/internal/runrecords"
)

// Job is one job of a trace: what it needed, as measured when it ran.
type Job struct {
	ID string
	// Submit is when the job was submitted, in seconds on the trace's clock.
	Submit float64
	Type   string
	// Runtime is the seconds of work the job needs.
	Runtime float64
	// Peak is the most memory the job used, in bytes. When Censored, the
	// job was only ever OOM-killed and Peak is a lower bound: it needed more.
	Peak     float64
	Censored bool
	// Known is when what the job needed became known (it ended): learning
	// sizing methods see it from then on.
	Known float64
	// Requested is the memory the user asked for, NaN when unknown.
	Requested float64
	// CPU in cores (0: the policy's default) and GPUs.
	CPU  float64
	GPUs int
	// Labels are the job's labels (team, user, ...), Features its numeric
	// features in the trace's Features order (NaN: missing).
	Labels   map[string]string
	Features []float64
}

// Trace is a set of jobs, sorted by submit time.
type Trace struct {
	Jobs     []Job
	Features []string
	// Skipped counts rows or jobs that could not be used, with why.
	Skipped map[string]int
}

func (t *Trace) skip(why string) {
	if t.Skipped == nil {
		t.Skipped = map[string]int{}
	}
	t.Skipped[why]++
}

func (t *Trace) sort() {
	slices.SortStableFunc(t.Jobs, func(a, b Job) int { return cmp.Compare(a.Submit, b.Submit) })
}

// CSVColumns names the columns a CSV trace is read from. Time, Type,
// Runtime and Peak are required.
type CSVColumns struct {
	ID       string
	Time     string // seconds
	Type     string
	Runtime  string // seconds
	Peak     string
	Request  string
	CPU      string
	GPU      string
	Labels   []string
	Features []string
	// MemoryUnit is the bytes in one unit of the memory columns (1024 for
	// the KB of SWF traces). Default 1.
	MemoryUnit float64
}

// maxTime bounds submit times (about 3,000 years of seconds): beyond it,
// adding a week is lost to rounding.
const maxTime = 1e11

// ReadCSV reads a CSV trace with a header row. Rows without a positive
// runtime or peak memory (-1 or empty in SWF traces) are skipped and
// counted; unreadable numbers are errors naming the line and column.
func ReadCSV(r io.Reader, cols CSVColumns) (*Trace, error) {
	if cols.MemoryUnit == 0 {
		cols.MemoryUnit = 1
	}
	tab, err := csvtable.Open(r)
	if err != nil {
		return nil, err
	}
	idCol := tab.Column("--id-col", cols.ID)
	timeCol := tab.Require("--time-col", cols.Time, false)
	typeCol := tab.Require("--type-col", cols.Type, false)
	runCol := tab.Require("--runtime-col", cols.Runtime, false)
	peakCol := tab.Require("--peak-col", cols.Peak, false)
	reqCol := tab.Column("--request-col", cols.Request)
	cpuCol := tab.Column("--cpu-col", cols.CPU)
	gpuCol := tab.Column("--gpu-col", cols.GPU)
	labelCols := make([]int, len(cols.Labels))
	for i, l := range cols.Labels {
		labelCols[i] = tab.Require("--label-cols", l, true)
	}
	featureCols := make([]int, len(cols.Features))
	for i, f := range cols.Features {
		featureCols[i] = tab.Require("--features", f, true)
	}
	if err := tab.Missing(); err != nil {
		return nil, err
	}
	t := &Trace{Features: slices.Clone(cols.Features)}
	// num reads a number; negative values mark a missing one in SWF
	// traces (-1).
	num := func(col int) (float64, error) {
		v, err := tab.Float(col)
		if v < 0 {
			v = math.NaN()
		}
		return v, err
	}
	for {
		ok, err := tab.Next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		var submit, runtime, peak, req, cpu, gpu float64
		for _, f := range []struct {
			col int
			dst *float64
		}{{timeCol, &submit}, {runCol, &runtime}, {peakCol, &peak}, {reqCol, &req}, {cpuCol, &cpu}, {gpuCol, &gpu}} {
			if *f.dst, err = num(f.col); err != nil {
				return nil, err
			}
		}
		switch {
		case math.IsNaN(submit) || submit > maxTime:
			return nil, tab.Errorf(timeCol, "%q is not a submit time in seconds (0 to %g)", tab.String(timeCol), maxTime)
		case !math.IsNaN(gpu) && (gpu > 64 || gpu != math.Trunc(gpu)):
			return nil, tab.Errorf(gpuCol, "%q is not a number of GPUs (0 to 64)", tab.String(gpuCol))
		case !(runtime > 0):
			t.skip("no positive runtime")
			continue
		case !(peak > 0):
			t.skip("no positive peak memory")
			continue
		}
		j := Job{Submit: submit, Known: submit + runtime, Type: tab.String(typeCol), Runtime: runtime, Peak: peak * cols.MemoryUnit, Requested: req * cols.MemoryUnit}
		if j.Type == "" {
			return nil, tab.Errorf(typeCol, "empty job type")
		}
		j.ID = tab.String(idCol)
		if idCol < 0 {
			j.ID = strconv.Itoa(tab.Row())
		}
		if !math.IsNaN(cpu) {
			j.CPU = cpu
		}
		if !math.IsNaN(gpu) {
			j.GPUs = int(gpu)
		}
		if len(labelCols) > 0 {
			j.Labels = make(map[string]string, len(labelCols))
			for i, c := range labelCols {
				j.Labels[cols.Labels[i]] = tab.String(c)
			}
		}
		j.Features = make([]float64, len(featureCols))
		for i, c := range featureCols {
			if j.Features[i], err = num(c); err != nil {
				return nil, err
			}
		}
		t.Jobs = append(t.Jobs, j)
	}
	if len(t.Jobs) == 0 {
		return nil, errors.New("no usable rows: every row lacks a positive runtime or peak memory")
	}
	t.sort()
	return t, nil
}

// FromRecords turns run records into jobs, one per job and run: submitted
// when its first attempt started, needing the peak and the work of its
// successful attempt (plus what interrupted attempts had checkpointed). A
// job that was only OOM-killed is censored at the most memory it was
// given; jobs that never succeeded otherwise are skipped and counted.
func FromRecords(records []*jobfleet.RunRecord) *Trace {
	byJob := map[string][]*jobfleet.RunRecord{}
	var order []string
	for _, r := range records {
		key := r.JobID + "\x00" + r.Run
		if _, ok := byJob[key]; !ok {
			order = append(order, key)
		}
		byJob[key] = append(byJob[key], r)
	}
	names := map[string]bool{}
	for _, r := range records {
		for k := range r.Features {
			names[k] = true
		}
	}
	t := &Trace{}
	for k := range names {
		t.Features = append(t.Features, k)
	}
	slices.Sort(t.Features)
	for _, key := range order {
		attempts := byJob[key]
		slices.SortFunc(attempts, func(a, b *jobfleet.RunRecord) int { return a.StartedAt.Compare(b.StartedAt) })
		first := attempts[0]
		j := Job{ID: first.JobID, Submit: float64(first.StartedAt.UnixNano()) / 1e9, Type: first.Type, Requested: math.NaN(), GPUs: first.GPUs, Labels: first.Labels}
		var succeeded bool
		var oomAlloc, saved, longest float64
		var ended time.Time
		for _, a := range attempts {
			longest = max(longest, a.DurationSecs)
			if a.EndedAt.After(ended) {
				ended = a.EndedAt
			}
			switch a.Outcome {
			case jobfleet.OutcomeSucceeded:
				succeeded = true
				j.Runtime = a.DurationSecs + saved
				j.Peak = max(j.Peak, float64(a.PeakBytes))
				continue
			case jobfleet.OutcomeOOM:
				oomAlloc = max(oomAlloc, float64(a.AllocatedBytes))
			case jobfleet.OutcomeInterrupted, jobfleet.OutcomeEvicted:
				j.Peak = max(j.Peak, float64(a.PeakBytes))
			}
			// The work this attempt checkpointed is not redone by the next;
			// a checkpoint from before its start is the one it restored.
			if a.LastCheckpointAt.After(a.StartedAt) {
				saved += a.LastCheckpointAt.Sub(a.StartedAt).Seconds()
			}
		}
		switch {
		case succeeded && (j.Peak <= 0 || j.Runtime <= 0):
			t.skip("succeeded without a measured peak or runtime")
			continue
		case succeeded:
			if oomAlloc >= j.Peak {
				j.Peak = oomAlloc + 1 // it was killed at this allocation: it needed more
			}
		case oomAlloc > 0 && longest > 0:
			j.Peak, j.Censored, j.Runtime = oomAlloc, true, longest
		default:
			t.skip("never succeeded or OOM-killed")
			continue
		}
		j.Known = float64(ended.UnixNano()) / 1e9
		j.Features = make([]float64, len(t.Features))
		for i, name := range t.Features {
			v, ok := first.Features[name]
			if !ok {
				v = math.NaN()
			}
			j.Features[i] = v
		}
		t.Jobs = append(t.Jobs, j)
	}
	t.sort()
	return t
}

// LoadRecords reads a trace from run records in a directory or under an
// s3://bucket/prefix (api may be nil for a directory).
func LoadRecords(ctx context.Context, api runrecords.S3API, source string) (*Trace, error) {
	var records []*jobfleet.RunRecord
	stats, err := runrecords.Read(ctx, api, source, time.Time{}, func(r *jobfleet.RunRecord) { records = append(records, r) })
	if err != nil {
		return nil, err
	}
	t := FromRecords(records)
	for range stats.Malformed {
		t.skip("malformed records or files")
	}
	for range stats.Duplicates {
		t.skip("records stored twice (read once)")
	}
	if len(t.Jobs) == 0 {
		return nil, fmt.Errorf("no usable jobs in %s: %d records in %d files, %d malformed", source, stats.Records, stats.Files, stats.Malformed)
	}
	return t, nil
}
