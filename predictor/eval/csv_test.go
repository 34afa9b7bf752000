package eval_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/jobfleet/jobfleet/predictor/eval"
)

func TestReadCSVErrors(t *testing.T) {
	t.Parallel()
	cols := eval.CSVColumns{Time: "t", Type: "type", Target: "mem", Features: []string{"procs"}}
	tests := []struct {
		name, csv, want string
	}{
		{name: "empty file", csv: "", want: "the file is empty"},
		{name: "missing columns", csv: "t,type\n1,a\n", want: `target: no column "mem"; feature: no column "procs" (columns: t, type)`},
		{name: "NaN feature", csv: "t,type,mem,procs\n1,a,5,NaN\n", want: "line 2 column procs: NaN is not a finite number"},
		{name: "NaN time", csv: "t,type,mem,procs\nNaN,a,5,1\n", want: "line 2 column t: NaN is not a finite number"},
		{name: "text target", csv: "t,type,mem,procs\n1,a,lots,1\n", want: `line 2 column mem: "lots" is not a number`},
		{name: "empty type", csv: "t,type,mem,procs\n1,a,5,1\n2, ,5,1\n", want: "line 3 column type: empty job type"},
		{name: "no usable rows", csv: "t,type,mem,procs\n1,a,-1,1\n2,a,0,1\n", want: "no usable rows: all 2 rows have a missing or non-positive mem"},
		{name: "ragged row", csv: "t,type,mem,procs\n1,a,5\n", want: "wrong number of fields"},
		{name: "empty time", csv: "t,type,mem,procs\n,a,5,1\n", want: "line 2 column t: no time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := eval.ReadCSV(strings.NewReader(tt.csv), cols)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadCSV() error = %v, want %q", err, tt.want)
			}
		})
	}
	for _, tc := range []struct {
		cols eval.CSVColumns
		want string
	}{
		{eval.CSVColumns{Time: "t", Type: "type", Target: "mem", Features: []string{""}}, "feature: an empty column name"},
		{eval.CSVColumns{Time: "t", Type: "type", Target: "mem", Labels: []string{""}}, "label: an empty column name"},
		{eval.CSVColumns{Type: "type", Target: "mem"}, "time is required"},
		{eval.CSVColumns{Time: "t", Type: "type", Target: "mem", Durations: []string{"run"}}, `duration: no column "run"`},
	} {
		if _, _, err := eval.ReadCSV(strings.NewReader("t,type,mem\n1,a,5\n"), tc.cols); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cols, err, tc.want)
		}
	}
	ds, stats, err := eval.ReadCSV(strings.NewReader("t,type,mem,procs\n1,a,5,-1\n2,a,-1,3\n3,b,7,4\n"), cols)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Rows != 3 || stats.Skipped != 1 || len(ds.Samples) != 2 || !math.IsNaN(ds.Samples[0].Features[0]) {
		t.Errorf("stats %+v, samples %+v: want one skipped row and -1 read as missing", stats, ds.Samples)
	}
}

// TestReadCSVDurations: a run ends at its time plus its durations; a
// missing duration counts as 0, and without duration columns the end is
// unknown (0).
func TestReadCSVDurations(t *testing.T) {
	t.Parallel()
	trace := "t,type,mem,wait,run\n100,a,5,20,300\n200,a,5,-1,50\n300,a,5,,\n"
	ds, _, err := eval.ReadCSV(strings.NewReader(trace), eval.CSVColumns{Time: "t", Type: "type", Target: "mem", Durations: []string{"wait", "run"}})
	if err != nil {
		t.Fatal(err)
	}
	var ended []float64
	for _, s := range ds.Samples {
		ended = append(ended, s.Ended)
	}
	if want := []float64{420, 250, 300}; !slices.Equal(ended, want) {
		t.Errorf("ends %v, want %v", ended, want)
	}
	if ds, _, err = eval.ReadCSV(strings.NewReader(trace), eval.CSVColumns{Time: "t", Type: "type", Target: "mem"}); err != nil {
		t.Fatal(err)
	}
	if ds.Samples[0].Ended != 0 {
		t.Errorf("without durations: end %v, want 0 (unknown)", ds.Samples[0].Ended)
	}
}

// Select keeps each run's baseline with it; FromRecords takes the
// allocation each run ran with as its baseline.
func TestDatasetBaselines(t *testing.T) {
	t.Parallel()
	ds, _, err := eval.ReadCSV(strings.NewReader("t,type,mem,a,b,req\n1,x,5,1,2,8\n2,x,6,3,4,\n"), eval.CSVColumns{Time: "t", Type: "type", Target: "mem", Features: []string{"a", "b"}, Baseline: "req"})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := ds.Select([]string{"b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Samples) != 2 || sel.Samples[0].Baseline != 8 || !math.IsNaN(sel.Samples[1].Baseline) || sel.Samples[1].Features[0] != 4 {
		t.Errorf("selected %+v, want baselines 8 and NaN with their runs", sel.Samples)
	}
	runs := ds.Runs()
	runs.Samples[0].Allocated, runs.Samples[1].Allocated = 7, math.NaN()
	rec := eval.FromRecords(runs)
	if rec.Samples[0].Baseline != 7 || !math.IsNaN(rec.Samples[1].Baseline) {
		t.Errorf("from records: baselines %v, %v; want the allocations 7 and NaN", rec.Samples[0].Baseline, rec.Samples[1].Baseline)
	}
}
