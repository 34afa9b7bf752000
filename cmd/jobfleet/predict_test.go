package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/predictor"
	"github.com/jobfleet/jobfleet/predictor/eval"
)

func TestPredictEvalJSON(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, "", "predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
		"--target-col", "mem_used_kb", "--features", "procs_req,time_req_s", "--baseline-col", "mem_req_kb", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var report struct {
		TestJobs int `json:"test_jobs"`
		Skipped  int `json:"skipped"`
		Methods  []struct {
			Name           string  `json:"name"`
			Coverage       float64 `json:"coverage"`
			Slack          float64 `json:"slack"`
			OverallocRatio float64 `json:"overalloc_ratio"`
			MeanAlloc      float64 `json:"mean_alloc"`
		} `json:"methods"`
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, stdout)
	}
	if report.Skipped != 31 || report.TestJobs == 0 {
		t.Errorf("test_jobs %d, skipped %d; want the 31 rows without memory skipped", report.TestJobs, report.Skipped)
	}
	names := []string{}
	for _, m := range report.Methods {
		names = append(names, m.Name)
		if m.Coverage <= 0 || m.MeanAlloc <= 0 {
			t.Errorf("method %s: %+v", m.Name, m)
		}
	}
	if got := strings.Join(names, ","); got != "predictor,type-quantile,vpa,fixed-formula,baseline" {
		t.Errorf("methods = %s", got)
	}
}

func TestPredictEvalTableAndSplit(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, "", "predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "user",
		"--target-col", "mem_used_kb", "--split", "0.8", "--by-type")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"method", "coverage", "slack", "predictor", "vpa", "per type", "predictor by what sized it"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

// The tables by month and by type put the predictor's worst coverage
// first, the header says what the predictor used, the footer defines
// every column, and the baseline is scored only on the jobs with a value.
func TestPredictEvalByMonthAndType(t *testing.T) {
	t.Parallel()
	args := []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "user",
		"--target-col", "mem_used_kb", "--features", "procs_req,time_req_s", "--baseline-col", "mem_req_kb",
		"--retrain-every", "1d", "--window", "7d", "--by", "month,type"}
	code, stdout, stderr := runCLI(t, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var report eval.Report
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatal(err)
	}
	if len(report.Months) != 3 || len(report.Types) != 5 {
		t.Fatalf("%d months (want 3 30-day periods), %d types (want 5)", len(report.Months), len(report.Types))
	}
	jobs := 0
	for _, m := range report.Months {
		jobs += m.Jobs
	}
	if jobs != report.TestJobs {
		t.Errorf("the months hold %d jobs of %d", jobs, report.TestJobs)
	}
	if p := report.Predictor; p.Strategy == "" || !slices.Equal(p.Features, []string{"procs_req", "time_req_s"}) || p.Order != "given" || p.Retrainings == 0 {
		t.Errorf("predictor setup %+v", p)
	}
	base := report.Methods[len(report.Methods)-1]
	if base.Name != eval.MethodBaseline || base.Missing == 0 || base.Jobs+base.Missing != report.TestJobs || base.Coverage != 1 {
		// Every job of the trace with a request got twice its peak.
		t.Errorf("baseline %+v: want it scored on the %d jobs with a request only", base, report.TestJobs-base.Missing)
	}

	code, stdout, stderr = runCLI(t, "", append(args, "--min-group-jobs", "0")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"predictor: strategy", "features: procs_req, time_req_s (in the order given;", "missing)",
		"per month, the 3 of 3 with at least 0 test jobs, the predictor's worst coverage first", "per type, the 5 of 5 with at least 0 test jobs"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	// The footer defines every column the tables head.
	checkColumnsDefined(t, stdout[strings.LastIndex(stdout, "\nColumns:"):], stdout)
	// Worst first: the coverages of the month table's rows ascend.
	section := stdout[strings.Index(stdout, "per month"):strings.Index(stdout, "per type")]
	var covs []float64
	for _, line := range strings.Split(section, "\n")[2:] {
		f := strings.Fields(line)
		if len(f) > 3 {
			v, err := strconv.ParseFloat(f[len(f)-(len(report.Methods)*2)], 64)
			if err == nil {
				covs = append(covs, v)
			}
		}
	}
	if len(covs) != 3 || !slices.IsSorted(covs) {
		t.Errorf("month coverages %v, want 3 in ascending order:\n%s", covs, section)
	}
	// By default only months of at least 500 test jobs are shown.
	code, stdout, _ = runCLI(t, "", args...)
	if code != 0 || !strings.Contains(stdout, "per month, the 2 of 3 with at least 500 test jobs") || !strings.Contains(stdout, "per type, the 0 of 5 with at least 1000 test jobs") {
		t.Errorf("exit %d, default group sizes:\n%s", code, stdout)
	}
}

// --match-coverage finds the predictor's quantile that reaches another
// method's coverage and reports the predictor's slack there.
func TestPredictEvalMatchCoverage(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, "", "predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "user",
		"--target-col", "mem_used_kb", "--features", "procs_req,time_req_s", "--retrain-every", "1d", "--window", "7d",
		"--match-coverage", "vpa", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out struct {
		eval.Report
		Match eval.Match `json:"match_coverage"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	var vpa eval.MethodResult
	for _, m := range out.Methods {
		if m.Name == eval.MethodVPA {
			vpa = m
		}
	}
	m := out.Match
	if m.Method != "vpa" || m.Coverage != vpa.Coverage || !(m.Quantile > 0.5 && m.Quantile < 0.999) || m.Evaluations < 3 {
		t.Fatalf("match %+v against vpa %+v", m, vpa)
	}
	// Checked by hand against a sweep of --quantile: at VPA's coverage the
	// predictor allocates less.
	if !(m.Slack > 0 && m.Slack < vpa.Slack && m.MeanAlloc < vpa.MeanAlloc) {
		t.Errorf("at vpa's coverage the predictor's slack %.3f, mean %.0f; vpa's %.3f, %.0f", m.Slack, m.MeanAlloc, vpa.Slack, vpa.MeanAlloc)
	}
}

func TestPredictTrainWritesModel(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{predictor.StrategyEstimators, predictor.StrategyGroups} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			m := trainCLI(t, "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
				"--target-col", "mem_used_kb", "--features", "procs_req", "--strategy", strategy)
			if m.Strategy() != strategy || m.Features()[0] != "procs_req" {
				t.Fatalf("model of strategy %s, features %v", m.Strategy(), m.Features())
			}
			// Each of the trace's five applications is sized by its own
			// runs; an application it never saw by all runs.
			for _, app := range []string{"1", "2", "3", "4", "5"} {
				if p := m.Predict(predictor.Job{Type: app}); p.Source != predictor.SourceType {
					t.Errorf("type %s sized by %s", app, p.Level)
				}
			}
			if p := m.Predict(predictor.Job{Type: "6"}); p.Source != predictor.SourceGlobal {
				t.Errorf("an unseen type sized by %s", p.Level)
			}
		})
	}
}

// TestPredictTrainOrdersRecordFeatures trains the group strategy from run
// records whose "tenant" sets their peak and whose "rows" says nothing:
// --features picks and orders the features; without it the model orders
// them itself and puts tenant first, though by name rows comes first. A
// feature no record has is an error.
func TestPredictTrainOrdersRecordFeatures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var records []jobfleet.RunRecord
	now := time.Now().UTC()
	for i := range 400 {
		tenant := i % 4
		records = append(records, jobfleet.RunRecord{
			JobID: fmt.Sprintf("job-%d", i), Type: "etl", Attempt: 1, Outcome: jobfleet.OutcomeSucceeded,
			Features:  map[string]float64{"rows": float64(i % 97), "tenant": float64(tenant)},
			PeakBytes: int64(100*(1+tenant)+i%5) << 20, StartedAt: now.Add(-time.Duration(400-i) * time.Hour), EndedAt: now.Add(-time.Duration(399-i) * time.Hour),
		})
	}
	if err := writeRecords(dir, records); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		features []string
		want     []string
	}{
		{"as given", []string{"--features", "rows,tenant"}, []string{"rows", "tenant"}},
		{"a subset", []string{"--features", "tenant"}, []string{"tenant"}},
		{"ordered by the model", nil, []string{"tenant", "rows"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := trainCLI(t, append([]string{"--records", dir, "--strategy", "groups"}, tt.features...)...)
			if !slices.Equal(m.Features(), tt.want) {
				t.Errorf("model features %v, want %v", m.Features(), tt.want)
			}
		})
	}
	code, _, stderr := runCLI(t, "", "predict", "train", "--records", dir, "--features", "tenant,entities", "--out", filepath.Join(t.TempDir(), "model.json"))
	if code == 0 || !strings.Contains(stderr, `feature "entities": no run has it`) {
		t.Errorf("an unknown feature: exit %d, stderr %q", code, stderr)
	}
}

// trainCLI runs `jobfleet predict train` with args and reads the model it
// wrote.
func trainCLI(t *testing.T, args ...string) *predictor.Model {
	t.Helper()
	out := filepath.Join(t.TempDir(), "model.json")
	code, _, stderr := runCLI(t, "", append(append([]string{"predict", "train"}, args...), "--out", out)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := predictor.ReadModel(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPredictErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "missing column", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "tenant", "--target-col", "mem_used_kb"}, want: `type: no column "tenant"`},
		{name: "missing flags", args: []string{"predict", "eval", "--csv", "testdata/trace.csv"}, want: "--csv needs --time-col, --type-col, --target-col"},
		{name: "baseline to match without one", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb", "--match-coverage", "baseline"}, want: "--match-coverage baseline: needs --baseline-col"},
		{name: "records and a column flag", args: []string{"predict", "eval", "--records", "testdata", "--type-col", "app"}, want: "--records: the column flags"},
		{name: "records and duration columns", args: []string{"predict", "eval", "--records", "testdata", "--duration-cols", "run_s"}, want: "--records: --duration-cols names a CSV's columns"},
		{name: "records and a wait column", args: []string{"predict", "eval", "--records", "testdata", "--wait-col", "wait_s"}, want: "--records: --wait-col names a CSV's column"},
		{name: "wait column without ends", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb", "--wait-col", "wait_s"}, want: "--wait-col wait_s: must be one of --duration-cols"},
		{name: "wait column not among the durations", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb", "--duration-cols", "run_s", "--wait-col", "wait_s"}, want: "--wait-col wait_s: must be one of --duration-cols"},
		{name: "missing wait column", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb", "--duration-cols", "wait_s,run_s,queued_s", "--wait-col", "queued_s"}, want: `wait: no column "queued_s"`},
		{name: "missing duration column", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb", "--duration-cols", "wait_s,ran_s"}, want: `duration: no column "ran_s"`},
		{name: "train: records and a column flag", args: []string{"predict", "train", "--records", "testdata", "--target-col", "mem", "--out", "m.json"}, want: "--records: the column flags"},
		{name: "train: negative window", args: []string{"predict", "train", "--records", "testdata", "--window=-1h", "--out", "m.json"}, want: "--window -1h0m0s: not negative"},
		{name: "no source", args: []string{"predict", "train", "--out", "m.json"}, want: "give --csv or --records"},
		{name: "zero online rate", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb", "--online-rate", "0"}, want: "--online-rate 0: above 0 and at most 1"},
		{name: "online rate above 1", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb", "--online-rate", "1.5"}, want: "--online-rate 1.5: above 0 and at most 1"},
		{name: "bad quantile", args: []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb", "--quantile", "1.2"}, want: "quantile 1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCLI(t, "", tt.args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q, want %q", code, stderr, tt.want)
			}
		})
	}
}

// TestPredictEvalSplitRefusesWalkingForward: --split trains once, so the
// walking-forward flags would be ignored; they are refused instead.
func TestPredictEvalSplitRefusesWalkingForward(t *testing.T) {
	t.Parallel()
	for _, extra := range [][]string{{"--retrain-every", "7d"}, {"--window", "30d"}} {
		args := append([]string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "user",
			"--target-col", "mem_used_kb", "--split", "0.8"}, extra...)
		code, _, stderr := runCLI(t, "", args...)
		if code == 0 || !strings.Contains(stderr, "--split trains once") {
			t.Errorf("%v: exit %d\n%s", extra, code, stderr)
		}
	}
}

// TestPredictEvalCoverageDigits: coverage is printed with four decimals,
// so that 0.8998 never reads as 0.900.
func TestPredictEvalCoverageDigits(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	r := &eval.Report{TestJobs: 10000, Methods: []eval.MethodResult{{Name: "predictor", Coverage: 0.8998, Slack: 0.21}}}
	if err := printReport(&b, r, -1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "0.8998") {
		t.Errorf("coverage 0.8998 printed as:\n%s", b.String())
	}
	if strings.Contains(b.String(), "strategy by retraining") {
		t.Errorf("one strategy throughout, yet:\n%s", b.String())
	}
}

// TestPredictEvalReportsStrategySwitches: when auto chose differently
// across retrainings, the header says how often each and how many times
// it changed.
func TestPredictEvalReportsStrategySwitches(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	r := &eval.Report{TestJobs: 100, Methods: []eval.MethodResult{{Name: "predictor"}}, Predictor: eval.Setup{
		Strategy: "groups", Retrainings: 10, Strategies: map[string]int{"groups": 7, "estimators": 3}, Switches: 2,
	}}
	if err := printReport(&b, r, -1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "strategy by retraining: estimators 3, groups 7; auto changed it 2 times") {
		t.Errorf("header:\n%s", b.String())
	}
}

// predict explain prints the allocation Predict gives and the group
// that decided it, with the runs behind it and the margin.
func TestPredictExplain(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{predictor.StrategyGroups, predictor.StrategyEstimators} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "model.json")
			code, _, stderr := runCLI(t, "", "predict", "train", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
				"--target-col", "mem_used_kb", "--features", "procs_req,time_req_s", "--strategy", strategy, "--out", path)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := predictor.ReadModel(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCLI(t, "", "predict", "explain", "--model", path, "--type", "3", "--feature", "procs_req=8,time_req_s=3600", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var e explanation
			if err := json.Unmarshal([]byte(stdout), &e); err != nil {
				t.Fatal(err)
			}
			want := m.Predict(predictor.Job{Type: "3", Features: map[string]float64{"procs_req": 8, "time_req_s": 3600}})
			if !reflect.DeepEqual(e.Prediction, want) || e.Allocation != want.Allocation() || e.Strategy != strategy || e.Quantile != 0.9 || e.Runs == 0 || e.Margin < 1 {
				t.Fatalf("explanation %+v; Predict gives %+v", e, want)
			}
			if strategy == predictor.StrategyGroups {
				if e.Group != "3, procs_req=8, time_req_s=3600" || e.Level != "type and procs_req, time_req_s" {
					t.Errorf("group %q at level %q", e.Group, e.Level)
				}
				if math.Abs(e.Base*e.Margin-e.Memory) > 1e-6*e.Memory {
					t.Errorf("base %v times margin %v is not the prediction %v", e.Base, e.Margin, e.Memory)
				}
			}
			code, stdout, _ = runCLI(t, "", "predict", "explain", "--model", path, "--type", "3")
			if code != 0 || !strings.Contains(stdout, "runs behind it") || !strings.Contains(stdout, "features missing") || !strings.Contains(stdout, "procs_req, time_req_s (a group with them unset") {
				t.Errorf("exit %d:\n%s", code, stdout)
			}
			code, _, stderr = runCLI(t, "", "predict", "explain", "--model", path, "--type", "3", "--feature", "rows=1")
			if code == 0 || !strings.Contains(stderr, "--feature rows: the model reads no such feature") {
				t.Errorf("exit %d: %s", code, stderr)
			}
		})
	}
}

// --group-by reads a CSV column as a label the model groups by; explain
// takes the job's labels.
func TestPredictGroupBy(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "model.json")
	code, _, stderr := runCLI(t, "", "predict", "train", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
		"--target-col", "mem_used_kb", "--group-by", "user", "--features", "procs_req", "--out", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, "", "predict", "explain", "--model", path, "--type", "3", "--label", "user=3", "--feature", "procs_req=8", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var e explanation
	if err := json.Unmarshal([]byte(stdout), &e); err != nil {
		t.Fatal(err)
	}
	if e.Level != "type and user and procs_req" || e.Group != "3, user=3, procs_req=8" || e.Runs == 0 {
		t.Errorf("explanation %+v", e)
	}
	code, _, stderr = runCLI(t, "", "predict", "explain", "--model", path, "--type", "3", "--label", "team=ml")
	if code == 0 || !strings.Contains(stderr, "--label team: the model groups type 3 by no such label (it groups by: user)") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	// The same groups as the user read as a first (numeric) feature.
	evaluate := func(args ...string) eval.MethodResult {
		code, stdout, stderr := runCLI(t, "", append([]string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
			"--target-col", "mem_used_kb", "--retrain-every", "1d", "--window", "7d", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var r eval.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatal(err)
		}
		return r.Methods[0]
	}
	byLabel, byFeature := evaluate("--group-by", "user", "--features", "procs_req"), evaluate("--features", "user,procs_req")
	if byLabel.Coverage != byFeature.Coverage || byLabel.Slack != byFeature.Slack {
		t.Errorf("--group-by user %+v, --features user,procs_req %+v", byLabel, byFeature)
	}
	// The header says what keyed the groups and that no CSV column was
	// read as a feature.
	code, stdout, stderr = runCLI(t, "", "predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
		"--target-col", "mem_used_kb", "--retrain-every", "1d", "--window", "7d", "--group-by", "user")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"strategy groups (the quantile of the job's group of past runs: type, then labels user, then its features",
		"features: none (a CSV's columns are read only when --features names them)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`\n\s+labels\s+\d+\s+0\.\d{4}`).MatchString(stdout) {
		t.Errorf("no row of jobs sized by their labels' group:\n%s", stdout)
	}
}

// checkColumnsDefined checks that defs, a footer or a help, defines every
// column the tables of out head.
func checkColumnsDefined(t *testing.T, defs, out string) {
	t.Helper()
	defined := map[string]bool{}
	for _, line := range strings.Split(defs, "\n") {
		// A definition: the column's name, two spaces or more, its text.
		if name, text, ok := strings.Cut(strings.TrimSpace(line), "  "); ok && strings.TrimSpace(text) != "" {
			defined[name] = true
		}
	}
	if i := strings.Index(out, "\nColumns:"); i >= 0 {
		out = out[:i] // the tables, not their footer
	}
	heads := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "method ") && !strings.HasPrefix(strings.TrimSpace(line), "sized by ") {
			continue
		}
		heads++
		for _, col := range regexp.MustCompile(`\S+(?: \S+)?`).FindAllString(strings.TrimSpace(line), -1) {
			if col != "method" && !defined[col] {
				t.Errorf("column %q of %q is not defined in:\n%s", col, line, defs)
			}
		}
	}
	if heads == 0 {
		t.Errorf("no table in:\n%s", out)
	}
}

// TestPredictEvalHelpDefinesColumns: predict eval --help defines every
// column of its tables, as the footer does.
func TestPredictEvalHelpDefinesColumns(t *testing.T) {
	t.Parallel()
	code, help, stderr := runCLI(t, "", "predict", "eval", "--help")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, out, stderr := runCLI(t, "", "predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
		"--target-col", "mem_used_kb", "--features", "procs_req", "--retrain-every", "1d", "--window", "7d")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkColumnsDefined(t, help, out)
}

// explanation is what predict explain --json prints.
type explanation struct {
	predictor.Prediction
	Allocation   float64  `json:"allocation"`
	Strategy     string   `json:"strategy"`
	Quantile     float64  `json:"quantile"`
	FeaturesRead []string `json:"features_read"`
	Ignored      []string `json:"features_ignored"`
}

// TestPredictEvalRecords evaluates on run records: the OOM-killed runs
// are left out and counted, the baseline is the allocation each job ran
// with, and months are calendar months.
func TestPredictEvalRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	oom := 0
	var records []jobfleet.RunRecord
	for i := range 2000 {
		tenant := i % 4
		at := start.Add(time.Duration(i) * 45 * time.Minute) // about 62 days
		r := jobfleet.RunRecord{
			JobID: fmt.Sprintf("job-%d", i), Type: []string{"etl", "report"}[i%2], Attempt: 1, Outcome: jobfleet.OutcomeSucceeded,
			Features:       map[string]float64{"rows": float64(i % 97), "tenant": float64(tenant)},
			AllocatedBytes: 1 << 30, PeakBytes: int64(100*(1+tenant)+i%50) << 20, StartedAt: at, EndedAt: at.Add(time.Minute),
		}
		if i%40 == 0 {
			r.Outcome, r.PeakBytes = jobfleet.OutcomeOOM, 1<<30
			oom++
		}
		records = append(records, r)
	}
	if err := writeRecords(dir, records); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "predict", "eval", "--records", dir, "--features", "tenant", "--by", "month,type", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r eval.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Censored != oom {
		t.Errorf("%d OOM-killed runs left out, want %d", r.Censored, oom)
	}
	var baseline *eval.MethodResult
	for i, m := range r.Methods {
		if m.Name == eval.MethodBaseline {
			baseline = &r.Methods[i]
		}
	}
	// Every successful run fit its 1 GiB.
	if baseline == nil || baseline.Coverage != 1 || baseline.MeanAlloc != 1<<30 || baseline.Jobs != r.TestJobs {
		t.Fatalf("baseline %+v over %d test jobs", baseline, r.TestJobs)
	}
	if r.TestJobs == 0 || r.Methods[0].Coverage < 0.85 || !slices.Equal(r.Predictor.Features, []string{"tenant"}) {
		t.Errorf("predictor %+v on %d test jobs, features %v", r.Methods[0], r.TestJobs, r.Predictor.Features)
	}
	var months []string
	for _, m := range r.Months {
		months = append(months, m.Name)
	}
	if !slices.Equal(months, []string{"2026-07", "2026-08", "2026-09"}) || len(r.Types) != 2 {
		t.Errorf("months %v (want from July 31, after the first 30-day window, to September 2), %d types", months, len(r.Types))
	}
	code, _, stderr = runCLI(t, "", "predict", "eval", "--records", dir, "--csv", "testdata/trace.csv")
	if code == 0 || !strings.Contains(stderr, "--csv and --records are two sources of runs") {
		t.Errorf("both sources: exit %d, %s", code, stderr)
	}
}

// TestPredictEvalDurationCols: with --duration-cols, a retraining learns
// only from the runs that had ended. Day 1's long runs of 1000 are still
// going when day 2's are sized, so the methods know only day 0's runs of
// 100; without the flag, a run counts as ended when it started.
func TestPredictEvalDurationCols(t *testing.T) {
	t.Parallel()
	var trace strings.Builder
	trace.WriteString("submit_s,wait_s,run_s,app,mem_kb\n")
	for _, day := range []struct {
		start, run, peak, n int
	}{{0, 600, 100, 100}, {86400, 4 * 86400, 1000, 100}, {2 * 86400, 600, 1000, 50}} {
		for i := range day.n {
			fmt.Fprintf(&trace, "%d,-1,%d,a,%d\n", day.start+60*i, day.run, day.peak)
		}
	}
	csv := filepath.Join(t.TempDir(), "trace.csv")
	if err := os.WriteFile(csv, []byte(trace.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	coverage := func(extra ...string) float64 {
		t.Helper()
		args := append([]string{"predict", "eval", "--csv", csv, "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_kb",
			"--retrain-every", "1d", "--window", "2d", "--json"}, extra...)
		code, stdout, stderr := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", extra, code, stderr)
		}
		var report eval.Report
		if err := json.Unmarshal([]byte(stdout), &report); err != nil {
			t.Fatal(err)
		}
		if report.TestJobs != 50 {
			t.Fatalf("%v: %d test jobs, want day 2's 50", extra, report.TestJobs)
		}
		return report.Methods[slices.IndexFunc(report.Methods, func(m eval.MethodResult) bool { return m.Name == eval.MethodTypeQuantile })].Coverage
	}
	if c := coverage("--duration-cols", "wait_s,run_s"); c != 0 {
		t.Errorf("with --duration-cols: type-quantile covered %.2f of day 2, want 0 (day 1's runs had not ended)", c)
	}
	if c := coverage(); c != 1 {
		t.Errorf("without --duration-cols: type-quantile covered %.2f of day 2, want 1", c)
	}
}

// TestPredictEvalOnlineRate: with runs that end, predict eval replays the
// dispatcher's raise after misses unless --online-rate is negative, and
// says which in its header; without ends it evaluates the model alone.
func TestPredictEvalOnlineRate(t *testing.T) {
	t.Parallel()
	base := []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "user",
		"--target-col", "mem_used_kb", "--features", "procs_alloc"}
	for _, tt := range []struct {
		name  string
		extra []string
		want  string
		rate  float64
	}{
		{"default", []string{"--duration-cols", "wait_s,run_s"}, "raised after misses between retrainings, as the dispatcher does: rate 0.05 per run", 0.05},
		{"another rate", []string{"--duration-cols", "wait_s,run_s", "--online-rate", "0.1"}, "rate 0.1 per run", 0.1},
		{"the model alone", []string{"--duration-cols", "wait_s,run_s", "--online-rate=-1"}, "the model alone, not raised after misses", 0},
		{"no ends", nil, "the model alone, not raised after misses", 0},
		{"sized when submitted", []string{"--duration-cols", "wait_s,run_s"}, "sized when submitted only (--wait-col", 0.05},
		{"sized again at start", []string{"--duration-cols", "wait_s,run_s", "--wait-col", "wait_s"}, "sized again when they started, as the worker sends back a job whose group's raise rose while it waited", 0.05},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, "", append(slices.Clone(base), tt.extra...)...)
			if code != 0 || !strings.Contains(stdout, tt.want) {
				t.Fatalf("exit %d, want %q in\n%s%s", code, tt.want, stdout, stderr)
			}
			code, stdout, stderr = runCLI(t, "", append(append(slices.Clone(base), tt.extra...), "--json")...)
			var report eval.Report
			if err := json.Unmarshal([]byte(stdout), &report); code != 0 || err != nil {
				t.Fatalf("exit %d, %v: %s", code, err, stderr)
			}
			if report.Predictor.OnlineRate != tt.rate {
				t.Errorf("online rate %v in the JSON, want %v", report.Predictor.OnlineRate, tt.rate)
			}
			if atStart := slices.Contains(tt.extra, "--wait-col"); report.Predictor.SizedAtStart != atStart {
				t.Errorf("sized_at_start %v in the JSON, want %v", report.Predictor.SizedAtStart, atStart)
			}
		})
	}
}

// predict explain says when the group's floor decides: the allocation is
// the floor, above the model's own size.
func TestPredictExplainFloor(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{Features: []string{"procs"}}
	for h := range 30 * 24 {
		peak := 100.0
		if h >= 25*24 {
			peak = 2.5 // five days of tiny jobs
		}
		ds.Samples = append(ds.Samples, predictor.Sample{Time: float64(h) * 3600, Type: "a", Features: []float64{4}, Peak: peak})
	}
	m, err := predictor.Train(t.Context(), ds, predictor.Options{Strategy: predictor.StrategyGroups, Tuning: predictor.Tuning{GroupHalfLife: 24 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	p := m.Predict(predictor.Job{Type: "a", Features: map[string]float64{"procs": 4}})
	if !(p.Floor > p.Memory) {
		t.Fatalf("the model gives %+v: want a floor above its own size", p)
	}
	path := filepath.Join(t.TempDir(), "model.json")
	if err := predictor.Save(t.Context(), nil, path, m); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "predict", "explain", "--model", path, "--type", "a", "--feature", "procs=4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{fmt.Sprintf("allocation         %.6g ", p.Floor), fmt.Sprintf("floor              %.6g ", p.Floor), fmt.Sprintf("above its recent %.6g)", p.Memory)} {
		if !strings.Contains(stdout, want) {
			t.Errorf("explain lacks %q:\n%s", want, stdout)
		}
	}
}

// TestPredictExplainRaise: explain shows the raise a model carries from
// the misses of the one it replaced, as the dispatcher starts the job's
// group at it.
func TestPredictExplainRaise(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{Features: []string{"procs"}}
	for h := range 30 * 24 {
		ds.Samples = append(ds.Samples, predictor.Sample{Time: float64(h) * 3600, Type: "a", Features: []float64{4}, Peak: 100})
	}
	m, err := predictor.Train(t.Context(), ds, predictor.Options{Strategy: predictor.StrategyGroups})
	if err != nil {
		t.Fatal(err)
	}
	job := predictor.Job{Type: "a", Features: map[string]float64{"procs": 4}}
	r := online.New(0, nil)
	for range 20 {
		r.Observe(m, job, m.Predict(job).Memory, true) // log 0.9: half carries
	}
	p := m.Predict(job)
	path := filepath.Join(t.TempDir(), "model.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Carry(m, m).Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	code, stdout, stderr := runCLI(t, "", "predict", "explain", "--model", path, "--type", "a", "--feature", "procs=4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	raise := math.Exp(0.45)
	for _, want := range []string{fmt.Sprintf("allocation         %.6g ", p.Memory*raise), fmt.Sprintf("raise              x%.3f ", raise)} {
		if !strings.Contains(stdout, want) {
			t.Errorf("explain lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, stderr = runCLI(t, "", "predict", "explain", "--model", path, "--type", "a", "--feature", "procs=4", "--json")
	var got struct {
		Raise, Allocation float64
	}
	if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %s %s", code, err, stdout, stderr)
	}
	if math.Abs(got.Raise-raise) > 1e-9 || math.Abs(got.Allocation-p.Memory*raise) > 1e-6*got.Allocation {
		t.Errorf("explain --json: raise %v, allocation %v; want x%v and %v", got.Raise, got.Allocation, raise, p.Memory*raise)
	}
}

// TestPredictExplainTypeFeatures: for a type whose registry entry lists
// its features, explain says which it reads and rejects another.
func TestPredictExplainTypeFeatures(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{Features: []string{"rows", "noise"}}
	for h := range 30 * 24 {
		ds.Samples = append(ds.Samples, predictor.Sample{Time: float64(h) * 3600, Type: "a", Features: []float64{4, float64(h)}, Peak: 100})
	}
	m, err := predictor.Train(t.Context(), ds, predictor.Options{Tuning: predictor.Tuning{FeaturesByType: map[string][]string{"a": {"rows"}}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.json")
	if err := predictor.Save(t.Context(), nil, path, m); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "predict", "explain", "--model", path, "--type", "a", "--feature", "rows=4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "features read      rows  (the type's own list"; !strings.Contains(stdout, want) || strings.Contains(stdout, "features missing") {
		t.Errorf("explain lacks %q, or reports noise missing:\n%s", want, stdout)
	}
	code, stdout, stderr = runCLI(t, "", "predict", "explain", "--model", path, "--type", "a", "--feature", "rows=4", "--json")
	var e explanation
	if err := json.Unmarshal([]byte(stdout), &e); code != 0 || err != nil || !slices.Equal(e.FeaturesRead, []string{"rows"}) {
		t.Errorf("exit %d, %v: features read %v, want [rows]: %s", code, err, e.FeaturesRead, stderr)
	}
	// A feature the type does not read is ignored, as the dispatcher
	// ignores it: the same size, and explain says so.
	code, withNoise, stderr := runCLI(t, "", "predict", "explain", "--model", path, "--type", "a", "--feature", "rows=4,noise=3", "--json")
	var n explanation
	if err := json.Unmarshal([]byte(withNoise), &n); code != 0 || err != nil || n.Allocation != e.Allocation || !slices.Equal(n.Ignored, []string{"noise"}) {
		t.Errorf("exit %d, %v: with noise sized %v, ignoring %v; want %v, ignoring [noise]: %s", code, err, n.Allocation, n.Ignored, e.Allocation, stderr)
	}
	code, stdout, _ = runCLI(t, "", "predict", "explain", "--model", path, "--type", "a", "--feature", "rows=4,noise=3")
	if want := "features ignored   noise  (not read for this type)"; code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("exit %d: explain lacks %q:\n%s", code, want, stdout)
	}
}

// TestPredictRecordsGroupBy: run records' labels key the groups of
// predict eval and predict train with --group-by: two users of one type,
// ten times apart, are each sized by their own runs, far tighter than by
// the type's; a label no record carries is rejected.
func TestPredictRecordsGroupBy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	var records []jobfleet.RunRecord
	for i := range 2000 {
		user, peak, alloc := "ana", int64(100+i%10)<<20, int64(2<<30)
		if i%2 == 1 {
			// bo's allocation held 80% of its runs.
			user, peak, alloc = "bo", int64(1000+i%10)<<20, 1008<<20
		}
		at := start.Add(time.Duration(i) * 45 * time.Minute)
		records = append(records, jobfleet.RunRecord{
			JobID: fmt.Sprintf("job-%d", i), Type: "etl", Attempt: 1, Outcome: jobfleet.OutcomeSucceeded, Labels: map[string]string{"user": user},
			AllocatedBytes: alloc, PeakBytes: peak, StartedAt: at, EndedAt: at.Add(time.Minute),
		})
	}
	if err := writeRecords(dir, records); err != nil {
		t.Fatal(err)
	}
	evaluate := func(args ...string) eval.Report {
		t.Helper()
		code, stdout, stderr := runCLI(t, "", append([]string{"predict", "eval", "--records", dir, "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var r eval.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	byUser, byType := evaluate("--group-by", "user"), evaluate()
	if !slices.Equal(byUser.Predictor.GroupBy, []string{"user"}) || len(byUser.Sources) == 0 || byUser.Sources[0].Source != predictor.SourceLabels || byUser.Sources[0].Jobs < byUser.TestJobs*9/10 {
		t.Errorf("by user: group by %v, sized by %+v of %d test jobs; want most by their labels", byUser.Predictor.GroupBy, byUser.Sources, byUser.TestJobs)
	}
	if u, ty := byUser.Methods[0], byType.Methods[0]; u.Coverage < 0.85 || !(u.Slack < ty.Slack/3) {
		t.Errorf("by user: coverage %.4f, slack %.3f; by type alone: slack %.3f; want a third of it at most", u.Coverage, u.Slack, ty.Slack)
	}
	// At the coverage of the allocations the jobs ran with (the records'
	// baseline), the predictor by user needs less slack than they had.
	code, stdout, stderr := runCLI(t, "", "predict", "eval", "--records", dir, "--group-by", "user", "--match-coverage", "baseline", "--json")
	var matched struct {
		eval.Report
		Match *eval.Match `json:"match_coverage"`
	}
	if err := json.Unmarshal([]byte(stdout), &matched); code != 0 || err != nil || matched.Match == nil {
		t.Fatalf("exit %d, %v: %s", code, err, stderr)
	}
	base := matched.Methods[len(matched.Methods)-1]
	if m := matched.Match; base.Name != eval.MethodBaseline || !(base.Coverage > 0.85 && base.Coverage < 1) || math.Abs(m.Coverage-base.Coverage) > 1e-9 || !(m.Slack < base.Slack) {
		t.Errorf("baseline %+v; matched %+v: want the predictor's slack at the baseline's coverage below the baseline's", base, m)
	}

	// The registry's per-type groupBy does for its type what --group-by
	// does for all.
	registry := filepath.Join(t.TempDir(), "jobtypes.yaml")
	if err := os.WriteFile(registry, []byte("pools:\n  - name: cpu\ntypes:\n  - name: etl\n    image: i\n    command: [c]\n    pool: cpu\n    predictor: {groupBy: [user]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	byRegistry := evaluate("--registry", registry)
	if r, u := byRegistry.Methods[0], byUser.Methods[0]; len(byRegistry.Sources) == 0 || byRegistry.Sources[0].Source != predictor.SourceLabels || r.Coverage != u.Coverage || r.Slack != u.Slack {
		t.Errorf("with the registry: %+v sized by %+v; want as --group-by user, %+v", r, byRegistry.Sources, u)
	}
	// A label the type groups by that none of its runs carries is
	// warned of, naming it: its runs are grouped without it.
	team := filepath.Join(t.TempDir(), "team.yaml")
	if err := os.WriteFile(team, []byte("pools:\n  - name: cpu\ntypes:\n  - name: etl\n    image: i\n    command: [c]\n    pool: cpu\n    predictor: {groupBy: [user, team]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"predict", "eval", "--records", dir, "--registry", team}, {"predict", "train", "--records", dir, "--window", "0", "--registry", team, "--out", filepath.Join(t.TempDir(), "m.json")}} {
		code, _, stderr := runCLI(t, "", cmd...)
		if code != 0 || !strings.Contains(stderr, "names labels none of its runs carries") || !strings.Contains(stderr, `"labels":["team"]`) {
			t.Errorf("%s with a label no run carries: exit %d, want a warning naming team: %s", cmd[1], code, stderr)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("pools: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "", "predict", "eval", "--records", dir, "--registry", bad); code == 0 || !strings.Contains(stderr, "--registry: ") || !strings.Contains(stderr, "bad.yaml:1") {
		t.Errorf("a broken registry: exit %d, %q", code, stderr)
	}

	model := filepath.Join(t.TempDir(), "model.json")
	if code, _, stderr := runCLI(t, "", "predict", "train", "--records", dir, "--window", "0", "--group-by", "user", "--out", model); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	size := func(user string) explanation {
		t.Helper()
		code, stdout, stderr := runCLI(t, "", "predict", "explain", "--model", model, "--type", "etl", "--label", "user="+user, "--json")
		var e explanation
		if err := json.Unmarshal([]byte(stdout), &e); code != 0 || err != nil {
			t.Fatalf("explain: exit %d, %v: %s", code, err, stderr)
		}
		return e
	}
	if ana, bo := size("ana"), size("bo"); ana.Source != predictor.SourceLabels || !(ana.Allocation > 109<<20 && ana.Allocation < 500<<20) || !(bo.Allocation > 1009<<20 && bo.Allocation < 2<<30) {
		t.Errorf("ana sized %.4g by %s, bo %.4g: want each just above its own runs' peaks", ana.Allocation, ana.Source, bo.Allocation)
	}

	for _, cmd := range [][]string{{"eval"}, {"train", "--window", "0", "--out", model}} {
		args := append(append([]string{"predict"}, cmd...), "--records", dir, "--group-by", "user,team")
		code, _, stderr := runCLI(t, "", args...)
		if want := `--group-by user,team: no run record carries the label "team" (they carry: user)`; code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("%s with a label no record carries: exit %d, %q; want %q", cmd[0], code, stderr, want)
		}
	}
}

// TestPredictCSVRegistry: with --registry, a CSV's column that a type's
// predictor.groupBy names is read as that type's label.
func TestPredictCSVRegistry(t *testing.T) {
	t.Parallel()
	registry := filepath.Join(t.TempDir(), "jobtypes.yaml")
	if err := os.WriteFile(registry, []byte("pools:\n  - name: cpu\ntypes:\n  - name: \"3\"\n    image: i\n    command: [c]\n    pool: cpu\n    predictor: {groupBy: [user], features: [procs_req]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "model.json")
	code, _, stderr := runCLI(t, "", "predict", "train", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
		"--target-col", "mem_used_kb", "--features", "procs_req,time_req_s", "--registry", registry, "--out", model)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m, err := predictor.Load(t.Context(), nil, model)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.LabelsFor("3"); !slices.Equal(got, []string{"user"}) || !slices.Equal(m.FeaturesFor("3"), []string{"procs_req"}) || len(m.LabelsFor("16")) != 0 {
		t.Errorf("type 3 grouped by %v reading %v, type 16 by %v; want user and procs_req for 3 alone", got, m.FeaturesFor("3"), m.LabelsFor("16"))
	}
	p := m.Predict(predictor.Job{Type: "3", Labels: map[string]string{"user": "3"}, Features: map[string]float64{"procs_req": 2}})
	if p.Source != predictor.SourceLabels {
		t.Errorf("a job of type 3 by user 3 sized by %s (%s): want its labels' group, read from the user column", p.Source, p.Group)
	}

	// predict eval reads the label column too, and says what the
	// registry set, in its header and its JSON.
	args := []string{"predict", "eval", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app", "--target-col", "mem_used_kb",
		"--features", "procs_req,time_req_s", "--strategy", "groups", "--registry", registry}
	code, stdout, stderr := runCLI(t, "", append(args, "--json")...)
	var r eval.Report
	if err := json.Unmarshal([]byte(stdout), &r); code != 0 || err != nil {
		t.Fatalf("eval: exit %d, %v: %s", code, err, stderr)
	}
	if !slices.ContainsFunc(r.Sources, func(s eval.SourceResult) bool { return s.Source == predictor.SourceLabels && s.Jobs > 0 }) {
		t.Errorf("eval with the registry: sized by %+v, want some jobs by their labels", r.Sources)
	}
	if !slices.Equal(r.Predictor.GroupByType["3"], []string{"user"}) || !slices.Equal(r.Predictor.FeaturesByType["3"], []string{"procs_req"}) {
		t.Errorf("eval's predictor %+v: want type 3 by user, reading procs_req", r.Predictor)
	}
	code, stdout, _ = runCLI(t, "", args...)
	for _, want := range []string{"type 3: groups by labels user (--registry)", "type 3: reads only features procs_req (--registry)"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("exit %d: the header lacks %q:\n%.600s", code, want, stdout)
		}
	}

	// A registry feature the model would not read, and labels with the
	// estimators, are refused, naming the flags.
	code, _, stderr = runCLI(t, "", "predict", "train", "--csv", "testdata/trace.csv", "--time-col", "submit_s", "--type-col", "app",
		"--target-col", "mem_used_kb", "--features", "time_req_s", "--registry", registry, "--out", model)
	if want := `--features time_req_s: type "3" of --registry lists feature "procs_req", which the model would not read`; code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("a registry feature left out of --features: exit %d, %q; want %q", code, stderr, want)
	}
	code, _, stderr = runCLI(t, "", append(slices.Clone(args[:len(args)-4]), "--strategy", "estimators", "--registry", registry)...)
	if want := `type "3" sets predictor.groupBy, whose labels key the groups strategy's groups: not with --strategy estimators`; code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("the registry's labels with the estimators: exit %d, %q; want %q", code, stderr, want)
	}

	// A label column the registry names and the CSV lacks is named as
	// the registry's; a registry type no run has is warned of.
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, []byte("pools:\n  - name: cpu\ntypes:\n  - name: \"3\"\n    image: i\n    command: [c]\n    pool: cpu\n    predictor: {groupBy: [team]}\n  - name: nightly\n    image: i\n    command: [c]\n    pool: cpu\n    predictor: {features: [procs_req]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "", append(slices.Clone(args[:len(args)-2]), "--registry", other)...)
	if want := `no column "team"`; code == 0 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "the --registry types' predictor.groupBy: team") {
		t.Errorf("a registry label the CSV lacks: exit %d, %q", code, stderr)
	}
	if err := os.WriteFile(other, []byte("pools:\n  - name: cpu\ntypes:\n  - name: nightly\n    image: i\n    command: [c]\n    pool: cpu\n    predictor: {features: [procs_req]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "", append(slices.Clone(args[:len(args)-2]), "--registry", other)...)
	if code != 0 || !strings.Contains(stderr, `"type":"nightly"`) || !strings.Contains(stderr, "--registry sets predictor settings for a type no run has") {
		t.Errorf("a registry type no run has: exit %d, want a warning naming it: %s", code, stderr)
	}
}
