package eval_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/predictor"
	"github.com/jobfleet/jobfleet/predictor/eval"
	"github.com/jobfleet/jobfleet/predictor/internal/testruns"
)

// week is the retraining interval of the tests that walk forward through
// months of runs: a day, the default, retrains seven times as often.
const week = 7 * 24 * time.Hour

// TestEvaluateWithFeatureOrderAuto evaluates a model that orders its
// features itself: the evaluation hands it each job's features in the
// model's order, so the result is that of the dataset listing them so.
func TestEvaluateWithFeatureOrderAuto(t *testing.T) {
	t.Parallel()
	ds := testruns.Keyed()
	reordered, err := ds.Select([]string{"key", "noise"})
	if err != nil {
		t.Fatal(err)
	}
	want, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(reordered), eval.Options{RetrainEvery: week, Train: predictor.Options{Strategy: predictor.StrategyGroups}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), eval.Options{RetrainEvery: week, Train: predictor.Options{Strategy: predictor.StrategyGroups, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderAuto}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Methods[0] != want.Methods[0] {
		t.Errorf("predictor %+v, want %+v as with the features in the chosen order", got.Methods[0], want.Methods[0])
	}
}

// TestEvaluateSelectsFeatures evaluates with predictor.Options.Features naming one of
// two features: every method reads that one, as if the dataset had only it.
func TestEvaluateSelectsFeatures(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(17, 18))
	ds := testruns.Drifting(8)
	withNoise := &predictor.Dataset{Features: []string{"noise", "procs"}}
	for _, s := range ds.Samples {
		s.Features = []float64{rng.Float64(), s.Features[0]}
		withNoise.Samples = append(withNoise.Samples, s)
	}
	want, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), eval.Options{RetrainEvery: week}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(withNoise), eval.Options{RetrainEvery: week, Train: predictor.Options{Features: []string{"procs"}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got.Methods {
		if m != want.Methods[i] {
			t.Errorf("%s: %+v, want %+v as with procs alone", m.Name, m, want.Methods[i])
		}
	}
}

// TestGroupModelAdaptsToReachCoverage walks forward through runs where the
// initial margin falls short: adapting it from the deployed allocations
// brings coverage to the target, where keeping it does not. The model
// alone: the dispatcher's raise after misses would lift both.
func TestGroupModelAdaptsToReachCoverage(t *testing.T) {
	t.Parallel()
	ds := testruns.Drifting(60)
	coverage := func(rate float64) float64 {
		r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), eval.Options{RetrainEvery: week, OnlineRate: -1, Train: predictor.Options{Strategy: predictor.StrategyGroups, Tuning: predictor.Tuning{AdaptRate: rate}}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return r.Methods[0].Coverage
	}
	kept, adapted := coverage(1e-9), coverage(0.3)
	t.Logf("coverage with the initial margin kept %.3f, adapted %.3f", kept, adapted)
	if kept > 0.85 {
		t.Fatalf("the initial margin already covers %.3f: the runs do not need adapting", kept)
	}
	if math.Abs(adapted-0.9) > 0.02 {
		t.Errorf("coverage with the adapted margin %.3f, want within 0.02 of 0.90", adapted)
	}
}

// A label and the same values as a first numeric feature give the same
// groups, so the same sizes.
func TestGroupByMatchesFirstFeature(t *testing.T) {
	var asLabel, asFeature predictor.Dataset
	asLabel.Features, asFeature.Features = []string{"rows"}, []string{"user", "rows"}
	for i := range 3000 {
		user, rows := float64(i%7), float64(i%5)
		peak := (1 + user) * (1 + rows) * (1 + float64(i%13)/20) * 1e8
		asLabel.Samples = append(asLabel.Samples, predictor.Sample{Time: float64(i * 300), Type: fmt.Sprint("t", i%3), Peak: peak, Features: []float64{rows},
			Labels: map[string]string{"user": fmt.Sprint(user)}, Allocated: math.NaN()})
		asFeature.Samples = append(asFeature.Samples, predictor.Sample{Time: float64(i * 300), Type: fmt.Sprint("t", i%3), Peak: peak, Features: []float64{user, rows},
			Allocated: math.NaN()})
	}
	opts := eval.Options{RetrainEvery: 86400 * 1e9, Window: 3 * 86400 * 1e9}
	byLabel := opts
	byLabel.Train.GroupBy = []string{"user"}
	byLabel.Train.Strategy, opts.Train.Strategy = predictor.StrategyGroups, predictor.StrategyGroups
	r1, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(&asLabel), byLabel, 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(&asFeature), opts, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Methods[0].Coverage != r2.Methods[0].Coverage || r1.Methods[0].Slack != r2.Methods[0].Slack {
		t.Errorf("by label %+v, as a first feature %+v", r1.Methods[0], r2.Methods[0])
	}
}

// TestPredictorWithoutModelIsLeftOut: test jobs the predictor's model has
// nothing to size by (too few runs for an estimator; the dispatcher takes
// the type's default) are left out of every method and counted, not
// scored as allocations of zero.
func TestPredictorWithoutModelIsLeftOut(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{Features: []string{"rows"}}
	add := func(day, n int) {
		for i := range n {
			x := float64(len(ds.Samples))
			ds.Samples = append(ds.Samples, predictor.Sample{Time: float64(day)*86400 + float64(i)*60, Type: "a", Features: []float64{x}, Peak: 100 + x})
		}
	}
	// Ten runs on each of the first two days, too few for an estimator;
	// forty on each of the next three.
	add(0, 10)
	add(1, 10)
	add(2, 40)
	add(3, 40)
	add(4, 40)
	opts := eval.Options{RetrainEvery: 24 * time.Hour, Window: 24 * time.Hour, Train: predictor.Options{Strategy: predictor.StrategyEstimators}}
	r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), opts, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Days 1 and 2 are sized from 10 runs each: left out.
	if r.Unsized != 50 || r.TestJobs != 80 {
		t.Errorf("%d unsized, %d test jobs; want 50 and 80", r.Unsized, r.TestJobs)
	}
	for _, m := range r.Methods {
		if m.Jobs != r.TestJobs || m.Missing != 0 {
			t.Errorf("%s scored on %d jobs (%d missing), want all %d", m.Name, m.Jobs, m.Missing, r.TestJobs)
		}
	}
	opts.RetrainEvery, opts.Window, opts.Split = 0, 0, 0.1
	if _, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), opts, 0); err == nil || !strings.Contains(err.Error(), "the predictor sized none of the") {
		t.Errorf("nothing sized: error %v", err)
	}
}

const day = 86400.0

// addRuns adds n runs of type a, a minute apart from start, each lasting
// length seconds with the peak given.
func addRuns(ds *predictor.Dataset, start, length, peak float64, n int) {
	for i := range n {
		at := start + float64(i)*60
		ds.Samples = append(ds.Samples, predictor.Sample{Time: at, Ended: at + length, Type: "a", Peak: peak})
	}
}

// TestEvaluateTrainsOnEndedRuns: walking forward, a retraining learns only
// from the runs that had ended by then, as the dispatcher's retraining
// reads only the records of ended runs. A run still going is not known.
func TestEvaluateTrainsOnEndedRuns(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{}
	addRuns(ds, 0, 600, 100, 100)      // day 0: short runs of 100
	addRuns(ds, day, 4*day, 1000, 100) // day 1: runs of 1000 that end on day 5
	addRuns(ds, 2*day, 600, 1000, 50)  // day 2: tested
	opts := eval.Options{RetrainEvery: 24 * time.Hour, Window: 2 * 24 * time.Hour, Train: predictor.Options{Strategy: predictor.StrategyGroups}}
	coverage := func(ds *predictor.Dataset) map[string]float64 {
		t.Helper()
		r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), opts, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.TestJobs != 50 {
			t.Fatalf("%d test jobs, want the 50 of day 2", r.TestJobs)
		}
		out := map[string]float64{}
		for _, m := range r.Methods {
			out[m.Name] = m.Coverage
		}
		return out
	}
	// Day 1's runs had not ended when day 2's jobs were sized: every method
	// knew only runs of 100.
	for name, c := range coverage(ds) {
		if c != 0 {
			t.Errorf("%s covered %.2f of day 2 from runs that had not ended; want 0", name, c)
		}
	}
	// Trained once (--split), the same: day 2's runs are the last 50.
	split := opts
	split.RetrainEvery, split.Window, split.Split = 0, 0, 0.8
	r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), split, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.TestJobs != 50 || r.Methods[1].Coverage != 0 {
		t.Errorf("split: %s covered %.2f of %d test jobs, want 0 of day 2's 50", r.Methods[1].Name, r.Methods[1].Coverage, r.TestJobs)
	}
	// Without ends, a run counts as ended when it started: day 1's runs of
	// 1000 are known.
	for i := range ds.Samples {
		ds.Samples[i].Ended = 0
	}
	if c := coverage(ds)[eval.MethodTypeQuantile]; c != 1 {
		t.Errorf("type-quantile covered %.2f of day 2 when runs count as ended when they start; want 1", c)
	}
}

// TestEvaluateWindowIsOfEnds: a retraining learns from the runs that ended
// within the window before it, however long ago they started, and not
// from those that ended before it; test runs sized when no run had ended
// are left out and counted as unsized.
func TestEvaluateWindowIsOfEnds(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{}
	addRuns(ds, 0, 9.5*day, 1000, 100)   // start before the window, end in it
	addRuns(ds, day, 600, 10, 1000)      // end long before the window
	addRuns(ds, 8.2*day, 600, 10, 100)   // sized before any run ended; end in the window
	addRuns(ds, 10.2*day, 600, 1000, 50) // tested: like the long runs
	opts := eval.Options{RetrainEvery: 24 * time.Hour, Window: 2 * 24 * time.Hour}
	r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), opts, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.TestJobs != 50 || r.Unsized != 100 {
		t.Fatalf("%d test jobs, %d unsized; want day 10's 50, and day 8's 100 unsized", r.TestJobs, r.Unsized)
	}
	// Day 10's window holds 100 runs of 1000 and 100 of 10: its 0.9
	// quantile is 1000. With day 1's runs, or without the long ones, it
	// would be 10.
	for _, m := range r.Methods {
		if m.Name == eval.MethodTypeQuantile && m.Coverage != 1 {
			t.Errorf("type-quantile covered %.2f of day 10, want 1", m.Coverage)
		}
	}
}

// TestEvaluateKeepsModelsOverAGap: when no run ended within the window
// before a retraining (a gap in the runs longer than the window), the
// dispatcher's retraining fails and its model stays; so do the methods,
// and the runs after the gap are sized by them. When nothing had ended
// before the first test runs, a split has nothing to train on.
func TestEvaluateKeepsModelsOverAGap(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{}
	for _, start := range []float64{0, 2 * day, 10 * day} {
		addRuns(ds, start, 600, 100, 50)
	}
	r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), eval.Options{RetrainEvery: 24 * time.Hour, Window: 2 * 24 * time.Hour}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.TestJobs != 100 || r.Unsized != 0 {
		t.Errorf("%d test jobs, %d unsized; want days 2 and 10 sized, 100", r.TestJobs, r.Unsized)
	}
	for i := range ds.Samples {
		ds.Samples[i].Ended = 20 * day // all still going when the test runs begin
	}
	if _, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), eval.Options{Split: 0.5}, 0); err == nil || !strings.Contains(err.Error(), "none had ended when the test runs began") {
		t.Errorf("split with nothing ended: error %v", err)
	}
}

// TestEvaluateNegativeTimes: times are seconds on any epoch; a trace whose
// times are negative evaluates as the same trace shifted to positive ones.
func TestEvaluateNegativeTimes(t *testing.T) {
	t.Parallel()
	ds := eval.WithoutBaselines(eval.Synthetic(3000, 45, 7))
	shifted := &eval.Dataset{Features: ds.Features, Samples: slices.Clone(ds.Samples)}
	for i := range shifted.Samples {
		shifted.Samples[i].Time -= 90 * 86400
	}
	opts := eval.Options{RetrainEvery: week, ByMonth: true}
	want, err := eval.Evaluate(t.Context(), ds, opts, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := eval.Evaluate(t.Context(), shifted, opts, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got.Methods {
		if math.Abs(m.Coverage-want.Methods[i].Coverage) > 1e-9 || math.Abs(m.Slack-want.Methods[i].Slack) > 1e-9 {
			t.Errorf("%s: %.4f / %.4f shifted, %.4f / %.4f not", m.Name, m.Coverage, m.Slack, want.Methods[i].Coverage, want.Methods[i].Slack)
		}
	}
	// Shifted by three 30-day periods, the runs fall into periods alike.
	jobs := func(r *eval.Report) (n []int) {
		for _, m := range r.Months {
			n = append(n, m.Jobs)
		}
		return n
	}
	if !slices.Equal(jobs(got), jobs(want)) {
		t.Errorf("jobs per 30-day period %v shifted, %v not", jobs(got), jobs(want))
	}
}

// TestEvaluateRaisesGroupsAfterMisses: between retrainings the predictor's
// sizes rise after the misses of the runs it sized, as each of them ends,
// as the dispatcher raises them from its run records; the model alone
// misses the whole day, and the other methods are the same either way.
func TestEvaluateRaisesGroupsAfterMisses(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{}
	addRuns(ds, 0, 600, 100, 100)  // day 0: runs of 100
	addRuns(ds, day, 60, 150, 200) // day 1: runs of 150, each over before the next
	opts := eval.Options{RetrainEvery: 24 * time.Hour, Window: 24 * time.Hour, Train: predictor.Options{Strategy: predictor.StrategyGroups}}
	evaluate := func(rate float64) map[string]eval.MethodResult {
		t.Helper()
		o := opts
		o.OnlineRate = rate
		r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), o, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.TestJobs != 200 {
			t.Fatalf("%d test jobs, want the 200 of day 1", r.TestJobs)
		}
		out := map[string]eval.MethodResult{}
		for _, m := range r.Methods {
			out[m.Name] = m
		}
		return out
	}
	alone, raised := evaluate(-1), evaluate(0)
	if c := alone[eval.MethodPredictor].Coverage; c != 0 {
		t.Errorf("the model alone covers %.3f of day 1, want none: it learned runs of 100", c)
	}
	// 1.15 * 100 * e^(0.045 n) covers 150 after n = 6 misses; from then
	// on, a run that fits lowers it by 0.005 and a miss raises it by 0.045,
	// so it misses about one run in ten, q's share: 6 + 194/10 of 200.
	if c := raised[eval.MethodPredictor].Coverage; math.Abs(c-0.87) > 0.02 {
		t.Errorf("raised after misses, the predictor covers %.3f of day 1, want about 0.87", c)
	}
	for name, m := range alone {
		if name != eval.MethodPredictor && m != raised[name] {
			t.Errorf("%s: %+v with the raise, want %+v as without", name, raised[name], m)
		}
	}
	// A run tells its outcome when it ends: a burst sized at once is
	// sized before any of it ends, and the raise cannot answer it.
	burst := &predictor.Dataset{}
	addRuns(burst, 0, 600, 100, 100)
	for range 200 {
		burst.Samples = append(burst.Samples, predictor.Sample{Time: day, Ended: day + 600, Type: "a", Peak: 150})
	}
	r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(burst), opts, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Methods[0].Coverage; c != 0 {
		t.Errorf("a burst sized at once: coverage %.3f, want none, as the model alone", c)
	}
}

// TestEvaluateSizesAgainWhenRunsStart: a burst submitted at once whose
// runs start one after another, as a class queue drains, is sized again
// as each starts, and the raise the first runs' misses put on the group
// answers the rest, as jobfleet's worker sends such a job back to be
// sized again. The raise learns from the sizes the runs were first given,
// so what it gives the runs after the burst is the same either way.
func TestEvaluateSizesAgainWhenRunsStart(t *testing.T) {
	t.Parallel()
	ds := &predictor.Dataset{}
	addRuns(ds, 0, 600, 100, 100) // day 0: runs of 100
	var started []float64
	for i := range 200 { // day 1: a burst of 150, one run at a time
		start := day + float64(i)*60
		ds.Samples = append(ds.Samples, predictor.Sample{Time: day, Ended: start + 60, Type: "a", Peak: 150})
		started = append(started, start)
	}
	addRuns(ds, 31*day, 30, 150, 100) // day 31: runs of 150 again, each over before the next
	opts := eval.Options{RetrainEvery: 24 * time.Hour, Window: 24 * time.Hour, ByMonth: true, Train: predictor.Options{Strategy: predictor.StrategyGroups}}
	evaluate := func(atStart bool) *eval.Report {
		t.Helper()
		in := eval.WithoutBaselines(ds)
		if atStart {
			for i := range started {
				in.Samples[100+i].Started = started[i]
			}
		}
		r, err := eval.Evaluate(t.Context(), in, opts, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.TestJobs != 300 || len(r.Months) != 2 {
			t.Fatalf("%d test jobs in %d months, want the 300 of days 1 and 31 in 2", r.TestJobs, len(r.Months))
		}
		return r
	}
	submitted, atStart := evaluate(false), evaluate(true)
	if c := submitted.Months[0].Methods[0].Coverage; c != 0 {
		t.Errorf("sized when submitted, the burst is covered %.3f, want none: it was sized before any of it ended", c)
	}
	if submitted.Predictor.SizedAtStart || submitted.Predictor.Resized != 0 {
		t.Errorf("without starts: sized at start %v, %d resized, want neither", submitted.Predictor.SizedAtStart, submitted.Predictor.Resized)
	}
	// 1.15 * 100 * e^(0.045 n) covers 150 after n = 6 misses.
	if c := atStart.Months[0].Methods[0].Coverage; c < 0.95 {
		t.Errorf("sized again when they start, the burst is covered %.3f, want 0.95 or more", c)
	}
	if !atStart.Predictor.SizedAtStart || atStart.Predictor.Resized < 190 {
		t.Errorf("with starts: sized at start %v, %d resized, want most of the burst", atStart.Predictor.SizedAtStart, atStart.Predictor.Resized)
	}
	if got, want := atStart.Months[1].Methods[0], submitted.Months[1].Methods[0]; got != want {
		t.Errorf("day 31 with the burst sized again: %+v, want %+v as without: the raise learns from the first sizes", got, want)
	}
}

// TestEvaluateMarginMeasuresTheModel: the margin adapts on the model's own
// sizes, not the raised ones, as the dispatcher's retraining reads them
// from the records (predicted_bytes). On day 1 the model's 115 misses every
// run of 150 while the raise covers most of them; day 2's model has
// learned 150 and its margin rose for the model's misses: 150 * 1.15 *
// e^(0.3 * (1 - 0.1)), raised at first by half the raise day 1 ended
// with, which day 2's runs, all fitting, bring down.
func TestEvaluateMarginMeasuresTheModel(t *testing.T) {
	t.Parallel()
	opts := eval.Options{RetrainEvery: 24 * time.Hour, Window: 24 * time.Hour, Train: predictor.Options{Strategy: predictor.StrategyGroups}}
	total := func(days int) float64 {
		t.Helper()
		ds := &predictor.Dataset{}
		addRuns(ds, 0, 600, 100, 100)  // day 0: runs of 100
		addRuns(ds, day, 60, 150, 200) // day 1: runs of 150, each over before the next
		if days > 2 {
			addRuns(ds, 2*day, 60, 100, 100) // day 2: runs of 100
		}
		r, err := eval.Evaluate(t.Context(), eval.WithoutBaselines(ds), opts, 0)
		if err != nil {
			t.Fatal(err)
		}
		return r.Methods[0].MeanAlloc * float64(r.Methods[0].Jobs)
	}
	// The raise on day 1: the model's 115 raised until runs of 150 fit,
	// each run ending before the next is sized.
	raise := 0.0
	for range 200 {
		if 150 > 115*math.Exp(raise) {
			raise += online.DefaultRate * 0.9
		} else {
			raise = max(raise-online.DefaultRate*0.1, 0)
		}
	}
	model := 150 * 1.15 * math.Exp(0.3*0.9)
	raise *= online.CarryShare
	want := 0.0
	for range 100 {
		want += model * math.Exp(raise) / 100
		raise = max(raise-online.DefaultRate*0.1, 0)
	}
	if day2 := (total(3) - total(2)) / 100; math.Abs(day2-want) > 1e-6*want {
		t.Errorf("day 2 sized at %v on average, want %v: the margin after the model missed every run of day 1, and half day 1's raise", day2, want)
	}
}
