package eval

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"time"

	"gonum.org/v1/gonum/stat"

	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/internal/quantreg"
	"github.com/jobfleet/jobfleet/predictor"
)

// Sample is a run evaluated: the predictor's sample, and what a
// comparison method allocated it.
type Sample struct {
	predictor.Sample
	// Baseline is what the comparison method allocated the run (the
	// memory its user requested, or the allocation it ran with); NaN, or
	// 0 or less, when unknown.
	Baseline float64
	// Started is when the run started, on Time's epoch; 0 when unknown.
	// A run that waited after it was sized is sized again when it starts,
	// if the raise after misses has risen for its group since (see
	// Evaluate).
	Started float64
}

// hasBaseline reports whether the comparison method allocated the run
// anything: a baseline of 0 or less, as NaN, is none.
func (s Sample) hasBaseline() bool { return s.Baseline > 0 }

// Dataset is the runs evaluated, as predictor.Dataset with baselines.
type Dataset struct {
	Features []string
	Samples  []Sample
}

// WithoutBaselines evaluates the runs of ds with no comparison method's
// allocations.
func WithoutBaselines(ds *predictor.Dataset) *Dataset {
	out := &Dataset{Features: slices.Clone(ds.Features), Samples: make([]Sample, len(ds.Samples))}
	for i, s := range ds.Samples {
		out.Samples[i] = Sample{Sample: s, Baseline: math.NaN()}
	}
	return out
}

// FromRecords evaluates runs read from run records (predictor.LoadRecords)
// against the allocation each ran with.
func FromRecords(ds *predictor.Dataset) *Dataset {
	out := WithoutBaselines(ds)
	for i := range out.Samples {
		out.Samples[i].Baseline = out.Samples[i].Allocated
	}
	return out
}

// Runs are the predictor's samples of ds.
func (ds *Dataset) Runs() *predictor.Dataset {
	out := &predictor.Dataset{Features: slices.Clone(ds.Features), Samples: make([]predictor.Sample, len(ds.Samples))}
	for i, s := range ds.Samples {
		out.Samples[i] = s.Sample
	}
	return out
}

// Select returns the runs with only the named features, in that order
// (see predictor.Dataset.Select).
func (ds *Dataset) Select(names []string) (*Dataset, error) {
	runs, err := ds.Runs().Select(names)
	if err != nil {
		return nil, err
	}
	out := &Dataset{Features: runs.Features, Samples: make([]Sample, len(runs.Samples))}
	for i, s := range runs.Samples {
		out.Samples[i] = Sample{Sample: s, Baseline: ds.Samples[i].Baseline}
	}
	return out, nil
}

// Options configure an evaluation.
type Options struct {
	// Train configures the predictor under test; its Quantile is the
	// target of every method.
	Train predictor.Options
	// Split, when in (0, 1), trains once on the runs of that share of the
	// runs by time that had ended when the rest began, and tests on the
	// rest. Otherwise the evaluation walks forward.
	Split float64
	// RetrainEvery and Window drive the walk-forward evaluation: every
	// RetrainEvery, each method is retrained on the runs that ended in the
	// last Window, and predicts the runs until the next retraining.
	// Defaults a day and 30 days, the dispatcher's.
	RetrainEvery time.Duration
	Window       time.Duration
	// OnlineRate is the step of the dispatcher's raise of a group's sizes
	// after misses between retrainings (see internal/online): the
	// predictor's sizes are raised as the runs it sized end, in time
	// order. Default online.DefaultRate, the dispatcher's; negative
	// evaluates the model alone, as does a dataset whose runs have no
	// ends (Sample.Ended), which would tell each outcome as it is sized.
	OnlineRate float64
	// ByType adds per-type results, ByMonth per-month results.
	ByType, ByMonth bool
	// predictorOnly evaluates the predictor alone (MatchCoverage), and
	// baselineJobs scores it only on the jobs with a baseline value.
	predictorOnly, baselineJobs bool
}

// Method names in a Report.
const (
	MethodPredictor    = "predictor"
	MethodTypeQuantile = "type-quantile"
	MethodVPA          = "vpa"
	MethodFixedFormula = "fixed-formula"
	MethodBaseline     = "baseline"
)

// Report is the result of an evaluation: every method allocated memory for
// the same test runs.
type Report struct {
	TestJobs int `json:"test_jobs"`
	Skipped  int `json:"skipped"`
	// Censored counts the runs left out because they were OOM-killed
	// (Sample.Missed): their peak is unknown, and their successful rerun
	// stands for the job.
	Censored int `json:"censored,omitempty"`
	// Unsized counts the test runs left out because the predictor's model
	// had nothing to size them by (too few runs for an estimator, or no
	// run had ended yet; the dispatcher takes the type's default): every
	// method is scored on the same runs.
	Unsized int            `json:"unsized,omitempty"`
	Methods []MethodResult `json:"methods"`
	// Types holds per-type results when asked for, largest types first.
	Types []GroupResult `json:"types,omitempty"`
	// Months holds per-month results when asked for, in time order: the
	// calendar month (UTC) of runs timed in Unix seconds, else 30-day
	// periods from time 0 ("day 0-29", ...).
	Months []GroupResult `json:"months,omitempty"`
	// Predictor says what the predictor used at its last retraining:
	// the strategy auto resolved to, the features it read in their
	// order, and whether it chose that order.
	Predictor Setup `json:"predictor"`
	// Sources breaks the predictor's results down by the estimator that
	// made each prediction: the type's own, its pool's, or the global one.
	Sources []SourceResult `json:"predictor_sources,omitempty"`
}

// Setup is what the predictor used.
type Setup struct {
	// Strategy is the last retraining's, Features the features it read
	// in their order, and Order who chose that order: the model
	// (predictor.FeatureOrderAuto) or the one given (FeatureOrderGiven;
	// Model.FeatureOrder). GroupBy are the labels that keyed the group
	// strategy's groups, GroupByType those of some types instead, and
	// FeaturesByType the features some types read
	// (predictor.Tuning).
	Strategy       string              `json:"strategy"`
	Features       []string            `json:"features"`
	Order          string              `json:"feature_order"`
	GroupBy        []string            `json:"group_by,omitempty"`
	GroupByType    map[string][]string `json:"group_by_type,omitempty"`
	FeaturesByType map[string][]string `json:"features_by_type,omitempty"`
	// Retrainings counts the trainings, Strategies them by the strategy
	// they resolved to, and Switches the retrainings at which
	// StrategyAuto changed the previous model's strategy.
	Retrainings int            `json:"retrainings"`
	Strategies  map[string]int `json:"strategies"`
	Switches    int            `json:"switches"`
	// OnlineRate is the raise after misses replayed, 0 for the model
	// alone (Options.OnlineRate).
	OnlineRate float64 `json:"online_rate"`
	// SizedAtStart says runs that waited were sized again when they
	// started (Sample.Started), as jobfleet's worker sends a job whose
	// group's raise rose while it waited back to be sized again; Resized
	// counts the test runs that were given more then.
	SizedAtStart bool `json:"sized_at_start,omitempty"`
	Resized      int  `json:"resized,omitempty"`
}

// SourceResult is the predictor's result on the test runs one kind of
// estimator predicted.
type SourceResult struct {
	Source   predictor.Source `json:"source"`
	Jobs     int              `json:"jobs"`
	Coverage float64          `json:"coverage"`
	Slack    float64          `json:"slack"`
	// Others are the other methods' results on the same runs.
	Others []MethodResult `json:"others,omitempty"`
}

// MethodResult measures one method's allocations.
type MethodResult struct {
	Name string `json:"name"`
	// Coverage is the share of test runs whose peak fit the allocation.
	Coverage float64 `json:"coverage"`
	// Slack is sum(alloc - peak) / sum(alloc) over covered runs.
	Slack float64 `json:"slack"`
	// OverallocRatio is sum(max(alloc - peak, 0)) / sum(peak) over all runs.
	OverallocRatio float64 `json:"overalloc_ratio"`
	MeanAlloc      float64 `json:"mean_alloc"`
	Jobs           int     `json:"jobs"`
	// Missing counts the runs the method has no allocation for (the
	// baseline's runs without a request): they are left out of its
	// coverage, slack and means, not scored as uncovered.
	Missing int `json:"missing,omitempty"`
}

// GroupResult is the methods' results on one group's test runs: a type's
// or a month's, which Name names.
type GroupResult struct {
	Name    string         `json:"name"`
	Jobs    int            `json:"jobs"`
	Methods []MethodResult `json:"methods"`
	first   float64
}

// trainable returns the runs of started (time-ordered, every one started
// before t and none more than window+lag before it) that a model retrained
// at t is given: those that ended within window before t, as the
// dispatcher's retraining reads the records of the runs that ended within
// its window. A run whose end is unknown counts as ended when it started.
// lag bounds every run's time from start to end; with 0 (no ends known)
// started is returned as it is.
func trainable(started []Sample, t, window, lag float64) []Sample {
	if lag == 0 {
		return started
	}
	var out []Sample
	for _, s := range started {
		if e := s.End(); e < t && e >= t-window {
			out = append(out, s)
		}
	}
	return out
}

// method is a way of choosing allocations, trained on history.
type method interface {
	name() string
	train(ctx context.Context, history []Sample, features []string) error
	predict(s Sample) float64
}

// Evaluate compares the predictor with the baseline methods on a dataset.
// skipped is reported as given (rows the reader dropped).
func Evaluate(ctx context.Context, ds *Dataset, opts Options, skipped int) (*Report, error) {
	if opts.Train.Quantile == 0 {
		opts.Train.Quantile = predictor.DefaultQuantile
	}
	if opts.RetrainEvery == 0 {
		opts.RetrainEvery = 24 * time.Hour
	}
	if opts.Window == 0 {
		opts.Window = 30 * 24 * time.Hour
	}
	if opts.Split < 0 || opts.Split >= 1 {
		return nil, fmt.Errorf("split %v: between 0 and 1", opts.Split)
	}
	if len(opts.Train.Features) > 0 {
		// Every method reads the chosen features, in their order.
		var err error
		if ds, err = ds.Select(opts.Train.Features); err != nil {
			return nil, fmt.Errorf("selecting features: %w", err)
		}
		opts.Train.Features = nil
	}
	censored := 0
	samples := slices.DeleteFunc(slices.Clone(ds.Samples), func(s Sample) bool {
		if s.Missed {
			censored++
		}
		return s.Missed
	})
	slices.SortStableFunc(samples, func(a, b Sample) int { return cmp.Compare(a.Time, b.Time) })
	for i := range samples {
		// What the predictor allocates is recorded as it goes, as run
		// records carry the allocation each job ran with.
		samples[i].Allocated, samples[i].Missed, samples[i].Predicted = math.NaN(), false, 0
	}
	if len(samples) < 2 {
		return nil, predictor.ErrNoData
	}
	q := opts.Train.Quantile
	pred := &predictorMethod{opts: opts.Train}
	if opts.OnlineRate >= 0 && slices.ContainsFunc(samples, func(s Sample) bool { return s.Ended != 0 }) {
		// Without ends, every run would tell its outcome the moment it
		// was sized: the raise would answer a burst within itself.
		pred.raiser = online.New(opts.OnlineRate, nil)
		pred.resized = map[int]float64{}
	}
	methods := []method{pred, &typeQuantile{q: q}, newVPA(q), &fixedFormula{q: q}}
	if opts.predictorOnly {
		methods = methods[:1]
	}
	hasBaseline := false
	for _, s := range samples {
		if s.hasBaseline() {
			hasBaseline = true
			break
		}
	}
	if hasBaseline && !opts.predictorOnly {
		methods = append(methods, baselineMethod{})
	}

	allocs := make([][]float64, len(methods))
	var test []Sample
	trained := false
	// step retrains every method at time at on history, or keeps them as
	// they are when history is empty, and sizes the runs of window.
	step := func(at float64, history, window []Sample) error {
		if pred.raiser != nil {
			// The runs that ended before the model is replaced tell it,
			// as the dispatcher's raise reads only the runs stored after
			// a model's records were read; those that start before are
			// looked at again with its raise, as the worker reads what
			// its leader published.
			pred.pending.Ended(at, pred.happen)
		}
		if len(history) > 0 {
			for _, m := range methods {
				if err := m.train(ctx, history, ds.Features); err != nil {
					return fmt.Errorf("training %s: %w", m.name(), err)
				}
			}
			trained = true
		}
		for k, s := range window {
			for i, m := range methods {
				allocs[i] = append(allocs[i], m.predict(s))
			}
			window[k].Allocated, window[k].Predicted = allocs[0][len(allocs[0])-1], pred.predicted
			test = append(test, s)
		}
		return nil
	}
	var lag float64 // the longest run's time from start to end
	for _, s := range samples {
		lag = max(lag, s.End()-s.Time)
	}
	noHistory := 0 // test runs sized when no run had ended
	if opts.Split > 0 {
		cut := int(float64(len(samples)) * opts.Split)
		if cut < 1 || cut >= len(samples) {
			return nil, errors.New("the split leaves no training or no test runs")
		}
		history := trainable(samples[:cut], samples[cut].Time, math.Inf(1), lag)
		if len(history) == 0 {
			return nil, errors.New("the split leaves no training runs: none had ended when the test runs began")
		}
		if err := step(samples[cut].Time, history, samples[cut:]); err != nil {
			return nil, err
		}
	} else {
		every, window := opts.RetrainEvery.Seconds(), opts.Window.Seconds()
		start := samples[0].Time + window
		if samples[len(samples)-1].Time < start {
			return nil, fmt.Errorf("the runs span less than one %v window", opts.Window)
		}
		lo, hi := 0, 0 // history bounds
		next := 0      // first untested sample
		for next < len(samples) && samples[next].Time < start {
			next++
		}
		for t := start; next < len(samples); t += every {
			for hi < len(samples) && samples[hi].Time < t {
				hi++
			}
			for lo < hi && samples[lo].Time < t-window-lag {
				lo++
			}
			end := next
			for end < len(samples) && samples[end].Time < t+every {
				end++
			}
			history := trainable(samples[lo:hi], t, window, lag)
			switch {
			case end == next:
				continue
			case len(history) == 0 && !trained:
				// Nothing has ended yet: there is no model.
				noHistory += end - next
				next = end
				continue
			}
			// With no run ended in the window (a gap in the runs),
			// the dispatcher's retraining fails and its model stays:
			// so do the methods.
			if err := step(t, history, samples[next:end]); err != nil {
				return nil, err
			}
			next = end
		}
	}
	allocs[0] = pred.finish(allocs[0])
	if len(test) == 0 {
		if noHistory > 0 {
			return nil, fmt.Errorf("no test runs: none of the %d runs after the first window had a run that ended before it to learn from", noHistory)
		}
		return nil, errors.New("no test runs")
	}
	// Jobs the predictor's model had nothing to size by (too few runs for
	// an estimator, or none had ended yet) are left out of every method,
	// so that all are scored on the same jobs; the dispatcher sizes them
	// by their type's default.
	sized := 0
	for i := range test {
		if math.IsNaN(allocs[0][i]) {
			continue
		}
		test[sized], pred.sources[sized] = test[i], pred.sources[i]
		for k := range allocs {
			allocs[k][sized] = allocs[k][i]
		}
		sized++
	}
	unsized := len(test) - sized + noHistory
	test, pred.sources = test[:sized], pred.sources[:sized]
	for k := range allocs {
		allocs[k] = allocs[k][:sized]
	}
	if len(test) == 0 {
		return nil, fmt.Errorf("the predictor sized none of the %d test jobs: its models had too few runs, or none had ended (the dispatcher sizes such jobs by their type's default)", unsized)
	}
	r := &Report{TestJobs: len(test), Skipped: skipped, Censored: censored, Unsized: unsized}
	for _, src := range []predictor.Source{predictor.SourceLabels, predictor.SourceSignature, predictor.SourceType, predictor.SourceThin, predictor.SourceFeatures, predictor.SourcePool, predictor.SourceGlobal, predictor.SourceNone} {
		var sub []Sample
		a := make([][]float64, len(methods))
		for i, s := range pred.sources {
			if s == src {
				sub = append(sub, test[i])
				for k := range methods {
					a[k] = append(a[k], allocs[k][i])
				}
			}
		}
		if len(sub) > 0 {
			m := measure("", sub, a[0])
			sr := SourceResult{Source: src, Jobs: len(sub), Coverage: m.Coverage, Slack: m.Slack}
			for k := 1; k < len(methods); k++ {
				sr.Others = append(sr.Others, measure(methods[k].name(), sub, a[k]))
			}
			r.Sources = append(r.Sources, sr)
		}
	}
	if opts.baselineJobs {
		var sub []Sample
		var a []float64
		for i, s := range test {
			if s.hasBaseline() {
				sub, a = append(sub, s), append(a, allocs[0][i])
			}
		}
		if len(sub) == 0 {
			return nil, errors.New("no test job has a baseline value")
		}
		r.Methods = append(r.Methods, measure(methods[0].name(), sub, a))
		return r, nil
	}
	for i, m := range methods {
		r.Methods = append(r.Methods, measure(m.name(), test, allocs[i]))
	}
	if opts.ByType {
		r.Types = byGroup(test, methods, allocs, func(s Sample) string { return s.Type })
		sort.SliceStable(r.Types, func(a, b int) bool {
			if r.Types[a].Jobs != r.Types[b].Jobs {
				return r.Types[a].Jobs > r.Types[b].Jobs
			}
			return r.Types[a].Name < r.Types[b].Name
		})
	}
	if opts.ByMonth {
		r.Months = byGroup(test, methods, allocs, monthOf)
		sort.SliceStable(r.Months, func(a, b int) bool { return r.Months[a].first < r.Months[b].first })
	}
	if pred.model != nil {
		r.Predictor = Setup{
			Strategy: pred.model.Strategy(), Features: pred.model.Features(), Order: pred.model.FeatureOrder(),
			Retrainings: pred.retrainings, Strategies: pred.strategies, Switches: pred.switches,
		}
		if pred.model.Strategy() == predictor.StrategyGroups {
			r.Predictor.GroupBy = slices.Clone(opts.Train.GroupBy)
			r.Predictor.GroupByType = maps.Clone(opts.Train.Tuning.GroupByType)
		}
		r.Predictor.FeaturesByType = maps.Clone(opts.Train.Tuning.FeaturesByType)
		if pred.raiser != nil {
			r.Predictor.OnlineRate = cmp.Or(opts.OnlineRate, online.DefaultRate)
			r.Predictor.SizedAtStart = slices.ContainsFunc(samples, func(s Sample) bool { return s.Started != 0 })
			r.Predictor.Resized = len(pred.resized) // all of them sized runs
		}
	}
	return r, nil
}

// Match is the predictor's result at another method's coverage.
type Match struct {
	Method string `json:"method"`
	// Coverage is the method's; Quantile the predictor's --quantile that
	// reaches it, and Slack and MeanAlloc the predictor's there, both
	// interpolated between the two quantiles evaluated around it.
	Coverage  float64 `json:"coverage"`
	Quantile  float64 `json:"quantile"`
	Slack     float64 `json:"slack"`
	MeanAlloc float64 `json:"mean_alloc"`
	// Evaluations counts the walk-forward evaluations it took.
	Evaluations int `json:"evaluations"`
}

// MatchCoverage finds, by bisection on the predictor's quantile, the
// predictor's slack at the coverage of another method of the report, so
// that methods are compared at equal coverage, on the same jobs (for the
// baseline, those with a baseline value). It errors when the target lies
// outside what quantiles 0.5 to 0.999 reach.
func MatchCoverage(ctx context.Context, ds *Dataset, opts Options, r *Report, methodName string) (*Match, error) {
	i := slices.IndexFunc(r.Methods, func(m MethodResult) bool { return m.Name == methodName })
	if i < 0 {
		return nil, fmt.Errorf("no method %q in the report", methodName)
	}
	target := r.Methods[i].Coverage
	m := &Match{Method: methodName, Coverage: target}
	opts.ByType, opts.ByMonth, opts.predictorOnly = false, false, true
	opts.baselineJobs = methodName == MethodBaseline
	at := func(q float64) (MethodResult, error) {
		o := opts
		o.Train.Quantile = q
		m.Evaluations++
		rep, err := Evaluate(ctx, ds, o, 0)
		if err != nil {
			return MethodResult{}, err
		}
		return rep.Methods[0], nil
	}
	lo, hi := 0.5, 0.999
	rlo, err := at(lo)
	if err != nil {
		return nil, err
	}
	rhi, err := at(hi)
	if err != nil {
		return nil, err
	}
	if target < rlo.Coverage || target > rhi.Coverage {
		return nil, fmt.Errorf("%s's coverage %.4f is outside the predictor's %.4f (quantile %v) to %.4f (quantile %v)", methodName, target, rlo.Coverage, lo, rhi.Coverage, hi)
	}
	for range 7 {
		mid := (lo + hi) / 2
		rmid, err := at(mid)
		if err != nil {
			return nil, err
		}
		if rmid.Coverage < target {
			lo, rlo = mid, rmid
		} else {
			hi, rhi = mid, rmid
		}
	}
	w := 0.0
	if rhi.Coverage > rlo.Coverage {
		w = (target - rlo.Coverage) / (rhi.Coverage - rlo.Coverage)
	}
	m.Quantile = lo + w*(hi-lo)
	m.Slack = rlo.Slack + w*(rhi.Slack-rlo.Slack)
	m.MeanAlloc = rlo.MeanAlloc + w*(rhi.MeanAlloc-rlo.MeanAlloc)
	return m, nil
}

// byGroup measures every method on each group of test runs.
func byGroup(test []Sample, methods []method, allocs [][]float64, key func(Sample) string) []GroupResult {
	idx := map[string][]int{}
	for i, s := range test {
		k := key(s)
		idx[k] = append(idx[k], i)
	}
	var out []GroupResult
	for k, rows := range idx {
		tr := GroupResult{Name: k, Jobs: len(rows), first: test[rows[0]].Time}
		sub := make([]Sample, len(rows))
		for j, i := range rows {
			sub[j] = test[i]
		}
		for mi, m := range methods {
			a := make([]float64, len(rows))
			for j, i := range rows {
				a[j] = allocs[mi][i]
			}
			tr.Methods = append(tr.Methods, measure(m.name(), sub, a))
		}
		out = append(out, tr)
	}
	return out
}

// monthOf names a run's month: its calendar month when its time is in
// Unix seconds (after 2001), else its 30-day period from time 0.
func monthOf(s Sample) string {
	if s.Time >= 1e9 {
		return time.Unix(int64(s.Time), 0).UTC().Format("2006-01")
	}
	k := int(math.Floor(s.Time / (30 * 86400)))
	return fmt.Sprintf("day %d-%d", 30*k, 30*k+29)
}

// measure computes the metrics of allocations for test runs. Runs the
// method has no allocation for (NaN) are counted as missing and left out.
func measure(name string, test []Sample, alloc []float64) MethodResult {
	var covered, missing int
	var slackNum, slackDen, over, peaks, total float64
	for i, s := range test {
		a := alloc[i]
		if math.IsNaN(a) {
			missing++
			continue
		}
		total += a
		peaks += s.Peak
		if s.Peak <= a {
			covered++
			slackNum += a - s.Peak
			slackDen += a
		}
		over += math.Max(a-s.Peak, 0)
	}
	r := MethodResult{Name: name, Jobs: len(test) - missing, Missing: missing}
	if r.Jobs == 0 {
		return r
	}
	r.Coverage = float64(covered) / float64(r.Jobs)
	if slackDen > 0 {
		r.Slack = slackNum / slackDen
	}
	if peaks > 0 {
		r.OverallocRatio = over / peaks
	}
	r.MeanAlloc = total / float64(r.Jobs)
	return r
}

// predictorMethod is the predictor under test.
type predictorMethod struct {
	opts        predictor.Options
	model       *predictor.Model
	retrainings int
	strategies  map[string]int
	switches    int
	sources     []predictor.Source // per test run, in order
	features    []string           // the dataset's
	// raiser raises the model's sizes as the dispatcher does, from the
	// runs it sized that ended (pending), nil to evaluate the model alone.
	raiser  *online.Raiser
	pending online.Pending[event]
	// predicted is the model's own size for the last run, before the
	// raise (NaN when it had none).
	predicted float64
	// resized holds, by test run, the allocations that were raised when
	// the run started.
	resized map[int]float64
}

// sizedRun is a run the predictor sized with model, whose start and end
// are still to come: alone is the model's size, first what it was given
// when it was sized (the raise learns from it, as the dispatcher's does).
type sizedRun struct {
	index int // among the test runs
	job   predictor.Job
	model *predictor.Model
	alone float64
	first float64
	peak  float64
	ended bool
}

// event is a sized run's start (sized again) or end (observed).
type event struct {
	run   *sizedRun
	start bool
}

func (p *predictorMethod) name() string { return MethodPredictor }

// happen sizes again a run that starts, and tells the raiser, for the
// current model, how a run it sized fared when it ends.
func (p *predictorMethod) happen(e event) {
	r := e.run
	if !e.start {
		r.ended = true
		p.raiser.Observe(p.model, r.job, r.alone, r.peak > r.first)
		return
	}
	// jobfleet's worker sends a job back to be sized again when, as it
	// starts, the raise of the group it was sized by has risen enough to
	// give it more memory under the same model; once per run.
	if r.ended || r.model != p.model {
		return
	}
	if a := p.raiser.Predict(p.model, r.job).Allocation(); a > r.first {
		p.resized[r.index] = a
	}
}

func (p *predictorMethod) train(ctx context.Context, history []Sample, features []string) error {
	runs := make([]predictor.Sample, len(history))
	for i, s := range history {
		runs[i] = s.Sample
	}
	m, err := p.model.Retrain(ctx, &predictor.Dataset{Features: features, Samples: runs}, p.opts)
	if err != nil {
		return err
	}
	if p.raiser != nil {
		// step told the model it replaces of every run that ended (and
		// started) before this retraining.
		m = p.raiser.Carry(p.model, m)
	}
	p.model, p.features = m, features
	p.retrainings++
	if p.strategies == nil {
		p.strategies = map[string]int{}
	}
	p.strategies[m.Strategy()]++
	if _, _, ok := m.Switched(); ok {
		p.switches++
	}
	return nil
}

func (p *predictorMethod) predict(s Sample) float64 {
	job := predictor.Job{Type: s.Type, Pool: s.Pool, Labels: s.Labels, Features: make(map[string]float64, len(p.features))}
	for i, name := range p.features {
		job.Features[name] = s.Features[i]
	}
	var pred predictor.Prediction
	if p.raiser == nil {
		pred = p.model.Predict(job)
	} else {
		// The runs that ended before this one is sized have told
		// the dispatcher whether they fit.
		p.pending.Ended(s.Time, p.happen)
		pred = p.raiser.Predict(p.model, job)
	}
	p.sources = append(p.sources, pred.Source)
	p.predicted = math.NaN()
	if pred.Source == predictor.SourceNone {
		return math.NaN() // the dispatcher would take the type's default
	}
	p.predicted = pred.Memory
	alloc := pred.Allocation()
	if p.raiser != nil {
		r := &sizedRun{index: len(p.sources) - 1, job: job, model: p.model, alone: pred.Memory, first: alloc, peak: s.Peak}
		if s.Started > s.Time {
			p.pending.Add(s.Started, event{run: r, start: true})
		}
		p.pending.Add(s.End(), event{run: r})
	}
	return alloc
}

// finish sizes again the runs that start after the last was sized, and
// returns the allocations of the test runs with every resize applied.
func (p *predictorMethod) finish(allocs []float64) []float64 {
	if p.raiser == nil {
		return allocs
	}
	p.pending.Ended(math.Inf(1), p.happen)
	for i, a := range p.resized {
		allocs[i] = a
	}
	return allocs
}

// typeQuantile allocates each type's empirical quantile over the window,
// and the quantile of all runs for types it has not seen.
type typeQuantile struct {
	q     float64
	types quantreg.Groups
}

func (t *typeQuantile) name() string { return MethodTypeQuantile }

func (t *typeQuantile) train(_ context.Context, history []Sample, _ []string) error {
	t.types = quantreg.GroupQuantiles(t.q, func(add func(string, float64)) {
		for _, s := range history {
			add(s.Type, s.Peak)
		}
	})
	return nil
}

func (t *typeQuantile) predict(s Sample) float64 { return t.types.Of(s.Type) }

// vpa follows the Kubernetes Vertical Pod Autoscaler recommender's memory
// method: a decaying histogram of peaks per workload (exponential buckets
// growing 5%, half-life 24h), its 90th percentile, plus a 15% safety
// margin. Types it has not seen get the same over all runs.
type vpa struct {
	q, margin, halfLife float64
	types               map[string]float64
	global              float64
}

func newVPA(q float64) *vpa {
	return &vpa{q: q, margin: 0.15, halfLife: 24 * 3600}
}

func (v *vpa) name() string { return MethodVPA }

func (v *vpa) train(_ context.Context, history []Sample, _ []string) error {
	if len(history) == 0 {
		return nil
	}
	last := history[len(history)-1].Time
	byType := map[string][2][]float64{}
	var allV, allW []float64
	for _, s := range history {
		w := math.Exp2(-(last - s.Time) / v.halfLife)
		b := bucketUpper(s.Peak)
		e := byType[s.Type]
		e[0] = append(e[0], b)
		e[1] = append(e[1], w)
		byType[s.Type] = e
		allV, allW = append(allV, b), append(allW, w)
	}
	v.types = make(map[string]float64, len(byType))
	for typ, e := range byType {
		v.types[typ] = weightedQuantile(e[0], e[1], v.q) * (1 + v.margin)
	}
	v.global = weightedQuantile(allV, allW, v.q) * (1 + v.margin)
	return nil
}

func (v *vpa) predict(s Sample) float64 {
	if r, ok := v.types[s.Type]; ok {
		return r
	}
	return v.global
}

// bucketUpper rounds a value up to the VPA histogram's bucket boundary:
// buckets start at 1 and grow by 5%.
func bucketUpper(x float64) float64 {
	if x <= 1 {
		return 1
	}
	k := math.Ceil(math.Log(x) / math.Log(1.05))
	return math.Pow(1.05, k)
}

// fixedFormula allocates base + coef * (first feature), one formula for
// all jobs, fitted so that a share q of all training runs fit: the way
// memory is often sized by hand, which over-provisions simple jobs.
type fixedFormula struct {
	q          float64
	base, coef float64
}

func (f *fixedFormula) name() string { return MethodFixedFormula }

func (f *fixedFormula) train(_ context.Context, history []Sample, features []string) error {
	f.coef = 0
	var X [][]float64
	var y []float64
	if len(features) > 0 {
		for _, s := range history {
			if x := s.Features[0]; !math.IsNaN(x) {
				X = append(X, []float64{x})
				y = append(y, s.Peak)
			}
		}
		if len(y) >= 20 {
			if lm, err := quantreg.FitLinear(X, y, f.q); err == nil && !math.IsNaN(lm.Coef[1]) {
				f.coef = math.Max(lm.Coef[1], 0)
			}
		}
	}
	residual := make([]float64, len(history))
	for i, s := range history {
		residual[i] = s.Peak - f.coef*featureOrZero(s)
	}
	f.base = quantreg.Quantile(residual, f.q)
	return nil
}

func (f *fixedFormula) predict(s Sample) float64 {
	return f.base + f.coef*featureOrZero(s)
}

func featureOrZero(s Sample) float64 {
	if len(s.Features) == 0 || math.IsNaN(s.Features[0]) {
		return 0
	}
	return s.Features[0]
}

// baselineMethod allocates what the data says was allocated (e.g. the
// user's request).
type baselineMethod struct{}

func (baselineMethod) name() string                                    { return MethodBaseline }
func (baselineMethod) train(context.Context, []Sample, []string) error { return nil }
func (baselineMethod) predict(s Sample) float64 {
	if !s.hasBaseline() {
		return math.NaN()
	}
	return s.Baseline
}

// weightedQuantile is quantile with weights: the smallest value whose
// cumulative weight reaches a share q of the total.
func weightedQuantile(values, weights []float64, q float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	stat.SortWeighted(values, weights)
	return stat.Quantile(q, stat.Empirical, values, weights)
}
