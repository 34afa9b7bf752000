package predictor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet/internal/quantreg"
)

// Sample is one past run: when it ran, its type and pool, its features (in
// the dataset's order; NaN when missing) and the peak memory it used.
type Sample struct {
	Time float64 // seconds, on any fixed epoch
	// Ended is when the run ended, on Time's epoch; 0 when unknown (see
	// End). Run records carry it. A group model's margin adapts from the
	// runs that ended after the model it replaces was trained; walking
	// forward, an evaluation trains only on the runs that had ended.
	Ended    float64
	Type     string
	Pool     string
	Features []float64
	// Labels are the job's labels; those Options.GroupBy names key the
	// group strategy's groups, as strings.
	Labels map[string]string
	Peak   float64
	// Allocated is the memory the run was given, NaN when unknown. Missed
	// marks a run killed for needing more than that: its Peak is unknown
	// and it only measures the allocation (see StrategyGroups).
	Allocated float64
	Missed    bool
	// Predicted is what the model's size alone gave the run (for run
	// records, rounded up to its class), without the dispatcher's raise
	// after recent misses or a rerun's OOM history; 0 when unknown. The
	// margin measures the model on it, or on Allocated when it is unknown.
	Predicted float64
	// ResizedFrom is, for a run sized again when it was about to start,
	// what it was first given (RunRecord.ResizedFromBytes); 0 otherwise.
	// The model does not read it: the dispatcher's raise after misses
	// learns whether the first size would have held.
	ResizedFrom float64

	group string // the GroupBy labels' values (training)
}

// End is when the run ended: Ended, or Time when that is unknown (0) or
// earlier.
func (s Sample) End() float64 {
	if s.Ended == 0 {
		return s.Time
	}
	return max(s.Time, s.Ended)
}

// Dataset is a set of runs with named features.
type Dataset struct {
	Features []string
	Samples  []Sample
	// Until is when the runs were read, if known: a run that ended
	// later is not in the dataset. A model trained on it says so
	// (Model.RunsUntil).
	Until time.Time
}

// check reports a sample whose features do not match the dataset's names.
func (ds *Dataset) check() error {
	for i, s := range ds.Samples {
		if len(s.Features) != len(ds.Features) {
			return fmt.Errorf("sample %d has %d features, the dataset names %d", i, len(s.Features), len(ds.Features))
		}
	}
	return nil
}

// Uncarried returns, for each type of groupByType (Tuning.GroupByType) that
// has runs in ds, the labels it groups by that none of its runs carries
// (with a value): its runs are grouped without them, by their type and
// features alone, which is worth a warning (a label renamed, or not sent).
func (ds *Dataset) Uncarried(groupByType map[string][]string) map[string][]string {
	carried := map[string]map[string]bool{}
	for _, s := range ds.Samples {
		if _, ok := groupByType[s.Type]; !ok {
			continue
		}
		if carried[s.Type] == nil {
			carried[s.Type] = map[string]bool{}
		}
		for k, v := range s.Labels {
			if v != "" {
				carried[s.Type][k] = true
			}
		}
	}
	out := map[string][]string{}
	for typ, labels := range carried {
		for _, l := range groupByType[typ] {
			if !labels[l] {
				out[typ] = append(out[typ], l)
			}
		}
	}
	return out
}

// Select returns the dataset with only the named features, in that order.
// A name the dataset has no column for is an error.
func (ds *Dataset) Select(names []string) (*Dataset, error) {
	if err := ds.check(); err != nil {
		return nil, err
	}
	idx := make([]int, len(names))
	for i, name := range names {
		j := slices.Index(ds.Features, name)
		if j < 0 {
			return nil, fmt.Errorf("feature %q: no run has it (the runs have %q)", name, ds.Features)
		}
		if slices.Contains(names[:i], name) {
			return nil, fmt.Errorf("feature %q named twice", name)
		}
		idx[i] = j
	}
	return &Dataset{Features: slices.Clone(names), Samples: permuteFeatures(ds.Samples, idx), Until: ds.Until}, nil
}

// Options say what a model predicts and from what. Zero values take the
// defaults; everything else is in Tuning.
type Options struct {
	// Quantile is the share of a type's jobs whose peak the allocation
	// should cover. Default 0.9.
	Quantile float64
	// Features, when set, are the features the model reads, in this
	// order (see Dataset.Select); empty reads all of the dataset's. Unless
	// Tuning.FeatureOrder is FeatureOrderAuto, the group strategy's levels
	// drop features from the end of the list, so the most telling should
	// come first.
	Features []string
	// GroupBy names labels (team, user, dataset) the group strategy keys
	// its groups on, as strings, between the type and the features: a
	// job's type with the same labels, then its type alone. It needs the
	// group strategy (auto takes it).
	GroupBy []string
	// Strategy is how jobs are sized: StrategyAuto (the default),
	// StrategyEstimators or StrategyGroups.
	Strategy string
	// Tuning holds the rest, for those who measured that they need it.
	Tuning Tuning
}

// Tuning adjusts training beyond Options. Its zero value takes the
// defaults, which are the settings docs/predictor.md measures.
type Tuning struct {
	// GroupByType names the labels that key the groups of some types,
	// instead of Options.GroupBy (the registry's per-type
	// predictor.groupBy). Labels need the group strategy, so with any
	// set StrategyAuto takes it for every type, not only these.
	GroupByType map[string][]string
	// FeaturesByType names the features some types' jobs are read by (the
	// registry's per-type predictor.features): for a listed type's jobs
	// every other feature of the model is treated as unset, in training
	// and in Predict, whatever they carry, and not reported as missing. An
	// empty list reads none. The model's features and their order stay
	// those of Options.Features (or the dataset's), so that the pool and
	// all-runs levels compare every type's values alike. A listed feature
	// the model does not read is not read for the type either. A model
	// with them is written as format version 3, which earlier releases
	// reject.
	FeaturesByType map[string][]string
	// FeatureOrder is FeatureOrderGiven (the default): the group model's
	// levels drop features from the end of Options.Features (or of the
	// dataset's list); or FeatureOrderAuto: the group model orders up to
	// four features itself, by its levels' loss on the window's last week,
	// and Model.Features lists them in that order. With more, the given
	// order is kept.
	FeatureOrder string
	// AdaptRate is how far each retraining moves the group model's margin
	// per unit of missed coverage (see Model.Retrain). Default 0.3.
	AdaptRate float64
	// GroupHalfLife weighs runs by recency in the group model's quantiles.
	// Zero chooses it at every training among a day, three days, a week
	// and none, by the quantiles' loss on the window's last week.
	GroupHalfLife time.Duration

	// The estimators strategy's settings.

	// MinRuns is how many runs a type (or pool) needs for an estimator of
	// its own. Default 30.
	MinRuns int
	// CalibrationShare is the share of a type's most recent runs held out
	// to choose its estimator and calibrate it. Default 0.25, and at least
	// 15 runs.
	CalibrationShare float64
	// Confidence is the probability that an estimator's coverage reaches
	// Quantile, not only on average (training-conditional conformal
	// calibration). Default 0.9; negative calibrates for average coverage.
	Confidence float64
	// Ceiling caps every estimator's prediction at this multiple of the
	// largest peak it was trained on. Default 1.25. Replays of a type whose
	// memory grew during the window make its calibration pessimistic; the
	// cap keeps that from multiplying its allocation.
	Ceiling float64
}

// DefaultQuantile is the Quantile of Options that leave it zero.
const DefaultQuantile = 0.9

// Feature orders (Tuning.FeatureOrder).
const (
	FeatureOrderGiven = "given"
	FeatureOrderAuto  = "auto"
)

// maxOrderedFeatures is the most features FeatureOrderAuto orders: the
// greedy choice trains the levels about n*n/2 times, each of 2n+1 levels.
const maxOrderedFeatures = 4

// Strategies of a model.
const (
	// StrategyEstimators chooses an estimator per type among the kinds,
	// calibrates each on its own recent runs, and falls back to thin-type,
	// pool and global estimators.
	StrategyEstimators = "estimators"
	// StrategyGroups sizes every job by the recency-weighted quantile of
	// the most specific group of at least three past runs it belongs to
	// (its type with the same features, then the same leading features;
	// its type; its pool with the same leading features, at least two,
	// whatever the type; its pool; all runs) times one margin, adapted at
	// each retraining from the realized coverage of the deployed
	// allocations (see groupModel). Features are compared for equality
	// only: it suits features that repeat (requested processors or time),
	// not continuous sizes.
	StrategyGroups = "groups"
	// StrategyAuto takes StrategyEstimators when the runs have features
	// and fewer than a quarter of the runs repeat an earlier run's type
	// and features (features that measure size), and StrategyGroups
	// otherwise (features that repeat, as requested processors or time
	// limits do, or none, or labels to group by). Model.Retrain keeps the
	// replaced model's strategy unless the share is more than 0.05 past a
	// quarter on the other side.
	StrategyAuto = "auto"
)

// repeatShare is the share of time-ordered runs whose type and features
// equal an earlier run's.
func repeatShare(samples []Sample) float64 {
	seen := map[string]bool{}
	repeats := 0
	var buf []byte
	for _, s := range samples {
		buf = signature(buf[:0], s.Type, s.Features)
		if seen[string(buf)] {
			repeats++
		} else {
			seen[string(buf)] = true
		}
	}
	return float64(repeats) / float64(len(samples))
}

// labels reports whether any type's groups are keyed on labels.
func (o Options) labels() bool {
	return len(o.GroupBy) > 0 || len(o.Tuning.GroupByType) > 0
}

// autoThreshold is the share of repeating runs at which StrategyAuto
// moves from estimators to groups, and autoHysteresis how far past it the
// share must be for a retraining to change the previous model's strategy.
const (
	autoThreshold  = 0.25
	autoHysteresis = 0.05
)

// strategy resolves StrategyAuto for time-ordered runs, with the share of
// them that repeat an earlier run's type and features (-1 when not
// measured).
func (o Options) strategy(samples []Sample, features int, prev *Model) (string, float64) {
	if o.Strategy != StrategyAuto {
		return o.Strategy, -1
	}
	if o.labels() || features == 0 {
		return StrategyGroups, -1
	}
	share := repeatShare(samples)
	threshold := autoThreshold
	if prev != nil {
		// A share near the threshold must not swap the family at every
		// retraining: the previous strategy holds within the band.
		if prev.Strategy() == StrategyGroups {
			threshold -= autoHysteresis
		} else {
			threshold += autoHysteresis
		}
	}
	if share < threshold {
		return StrategyEstimators, share
	}
	return StrategyGroups, share
}

func (o Options) ceilingMargin() float64 {
	if o.Tuning.Ceiling <= 0 {
		return math.Log(1.25)
	}
	return math.Log(o.Tuning.Ceiling)
}

// minCalibration is the fewest runs an estimator is calibrated on.
const minCalibration = 15

func (o Options) withDefaults() Options {
	if o.Quantile == 0 {
		o.Quantile = DefaultQuantile
	}
	if o.Strategy == "" {
		o.Strategy = StrategyAuto
	}
	t := &o.Tuning
	if t.MinRuns == 0 {
		t.MinRuns = 30
	}
	if t.CalibrationShare == 0 {
		t.CalibrationShare = 0.25
	}
	// Negative stays negative (average coverage; pacLevel reads any value
	// <= 0 so), so that applying the defaults twice changes nothing.
	if t.Confidence == 0 {
		t.Confidence = 0.9
	}
	if t.AdaptRate == 0 {
		t.AdaptRate = 0.3
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	t := o.Tuning
	if !(o.Quantile > 0 && o.Quantile < 1) {
		errs = append(errs, fmt.Errorf("quantile %v: between 0 and 1", o.Quantile))
	}
	if t.AdaptRate < 0 || t.AdaptRate > 10 {
		errs = append(errs, fmt.Errorf("adapt rate %v: between 0 and 10", t.AdaptRate))
	}
	if t.GroupHalfLife < 0 {
		errs = append(errs, fmt.Errorf("group half-life %v: not negative", t.GroupHalfLife))
	}
	if t.MinRuns < 2 {
		errs = append(errs, fmt.Errorf("min runs %d: at least 2", t.MinRuns))
	}
	if !(t.CalibrationShare > 0 && t.CalibrationShare < 1) {
		errs = append(errs, fmt.Errorf("calibration share %v: between 0 and 1", t.CalibrationShare))
	}
	if t.Ceiling != 0 && !(t.Ceiling >= 1) {
		errs = append(errs, fmt.Errorf("ceiling %v: 1 or more", t.Ceiling))
	}
	if t.Confidence >= 1 {
		errs = append(errs, fmt.Errorf("confidence %v: below 1", t.Confidence))
	}
	if t.FeatureOrder != "" && t.FeatureOrder != FeatureOrderGiven && t.FeatureOrder != FeatureOrderAuto {
		errs = append(errs, fmt.Errorf("feature order %q: %s or %s", t.FeatureOrder, FeatureOrderGiven, FeatureOrderAuto))
	}
	if o.labels() && o.Strategy == StrategyEstimators {
		errs = append(errs, fmt.Errorf("group by %v %v: labels key the groups strategy's groups, not the estimators'", o.GroupBy, t.GroupByType))
	}
	names := slices.Clone(o.GroupBy)
	for _, byType := range t.GroupByType {
		names = append(names, byType...)
	}
	for _, name := range names {
		if name == "" || strings.ContainsAny(name, "\x1e\x1f") {
			errs = append(errs, fmt.Errorf("group by %q: not a label name", name))
		}
	}
	for typ, features := range t.FeaturesByType {
		if slices.Contains(features, "") {
			errs = append(errs, fmt.Errorf("features of type %q: an empty feature name", typ))
		}
	}
	if !slices.Contains([]string{StrategyAuto, StrategyEstimators, StrategyGroups}, o.Strategy) {
		errs = append(errs, fmt.Errorf("strategy %q: %s, %s or %s", o.Strategy, StrategyAuto, StrategyEstimators, StrategyGroups))
	}
	return errors.Join(errs...)
}

// ErrNoData is returned when there is nothing to train on.
var ErrNoData = errors.New("no runs to train on")

// cloneLists copies a map of lists, lists included; nil when empty.
func cloneLists(m map[string][]string) map[string][]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// featureMask says, for each type of byType, which of features its jobs
// are read by.
func featureMask(features []string, byType map[string][]string) map[string][]bool {
	if len(byType) == 0 {
		return nil
	}
	mask := make(map[string][]bool, len(byType))
	for typ, names := range byType {
		read := make([]bool, len(features))
		for i, name := range features {
			read[i] = slices.Contains(names, name)
		}
		mask[typ] = read
	}
	return mask
}

// masked returns a copy of x with the values read does not mark missing.
func masked(x []float64, read []bool) []float64 {
	out := slices.Clone(x)
	for i := range out {
		if !read[i] {
			out[i] = math.NaN()
		}
	}
	return out
}

// groupKey is a job's labels named by groupBy, joined; "" when it lacks
// one (it then has no group at the labels' levels).
func groupKey(labels map[string]string, groupBy []string) string {
	if len(groupBy) == 0 {
		return ""
	}
	var b strings.Builder
	for i, name := range groupBy {
		v, ok := labels[name]
		if !ok {
			return ""
		}
		if i > 0 {
			b.WriteByte(0x1f)
		}
		b.WriteString(v)
	}
	return b.String()
}

// Train fits a model to the runs of ds (see Options.Strategy): a group
// model, or an estimator per type with enough runs, per pool, and a global
// one, each chosen among the candidate kinds by pinball loss on its most
// recent runs and calibrated on them. It stops, returning ctx's error, when
// ctx ends: it checks between estimators and between the group model's
// candidate feature orders, which on a million runs take seconds each.
func Train(ctx context.Context, ds *Dataset, opts Options) (*Model, error) {
	return train(ctx, ds, opts, nil)
}

// Retrain fits a model that replaces m, as Train does, carrying on from m:
// the group model adapts its margin from how m's allocations fared (the
// runs' Allocated and Missed), and StrategyAuto keeps m's strategy unless
// the runs clearly call for the other (Model.Switched reports a change). A
// nil m is Train.
func (m *Model) Retrain(ctx context.Context, ds *Dataset, opts Options) (*Model, error) {
	return train(ctx, ds, opts, m)
}

func train(ctx context.Context, ds *Dataset, opts Options, prev *Model) (*Model, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("training options: %w", err)
	}
	if len(opts.Features) > 0 {
		var err error
		if ds, err = ds.Select(opts.Features); err != nil { // Select checks the runs
			return nil, fmt.Errorf("selecting features: %w", err)
		}
	} else if err := ds.check(); err != nil {
		return nil, fmt.Errorf("checking runs: %w", err)
	}
	samples := make([]Sample, 0, len(ds.Samples))
	var deployed []Sample
	mask := featureMask(ds.Features, opts.Tuning.FeaturesByType)
	for _, s := range ds.Samples {
		if read := mask[s.Type]; read != nil {
			s.Features = masked(s.Features, read)
		}
		if !math.IsNaN(s.Allocated) && s.Allocated > 0 {
			deployed = append(deployed, s)
		}
		if !s.Missed {
			samples = append(samples, s)
		}
	}
	if len(samples) == 0 {
		return nil, ErrNoData
	}
	sortByTime(samples)
	m := &Model{f: modelFile{
		Format: fileFormat, Quantile: opts.Quantile,
		Features: slices.Clone(ds.Features), TrainedAt: time.Now().UTC(), RunsUntil: ds.Until.UTC(), Runs: len(samples),
		Types: map[string]*estimator{}, Pools: map[string]*estimator{}, TypePools: map[string]string{},
	}}
	m.f.FeaturesByType = cloneLists(opts.Tuning.FeaturesByType)
	m.f.Version = m.f.version()
	strategy, share := opts.strategy(samples, len(ds.Features), prev)
	if share >= 0 {
		m.f.RepeatShare = share
	}
	if prev != nil && opts.Strategy == StrategyAuto && prev.Strategy() != strategy {
		m.f.SwitchedFrom = prev.Strategy()
	}
	if strategy == StrategyGroups {
		m.f.GroupBy = slices.Clone(opts.GroupBy)
		m.f.GroupByType = cloneLists(opts.Tuning.GroupByType)
		for i := range samples {
			samples[i].group = groupKey(samples[i].Labels, m.groupBy(samples[i].Type))
		}
		for i := range deployed {
			deployed[i].group = groupKey(deployed[i].Labels, m.groupBy(deployed[i].Type))
		}
		for _, s := range samples {
			if s.Pool != "" {
				m.f.TypePools[s.Type] = s.Pool
			}
		}
		if opts.Tuning.FeatureOrder == FeatureOrderAuto && len(ds.Features) > 1 && len(ds.Features) <= maxOrderedFeatures {
			order, err := orderFeatures(ctx, samples, len(ds.Features), opts.Quantile, opts.labels())
			if err != nil {
				return nil, err
			}
			// The deployed runs measure the margin by their allocations
			// alone; their features are not read.
			samples = permuteFeatures(samples, order)
			for i, j := range order {
				m.f.Features[i] = ds.Features[j]
			}
			m.f.Ordered = true
		}
		m.f.Groups = fitGroups(samples, deployed, len(ds.Features), prev, opts)
		return m, ctx.Err()
	}
	byType := map[string][]Sample{}
	byPool := map[string][]Sample{}
	for _, s := range samples {
		byType[s.Type] = append(byType[s.Type], s)
		if s.Pool != "" {
			byPool[s.Pool] = append(byPool[s.Pool], s)
			m.f.TypePools[s.Type] = s.Pool
		}
	}
	m.f.Global = fitEstimator(samples, opts)
	for pool, ss := range byPool {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(ss) >= opts.Tuning.MinRuns && len(byPool) > 1 {
			if e := fitEstimator(ss, opts); e != nil {
				m.f.Pools[pool] = e
			}
		}
	}
	for typ, ss := range byType {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(ss) >= opts.Tuning.MinRuns {
			if e := fitEstimator(ss, opts); e != nil {
				m.f.Types[typ] = e
			}
		}
	}
	m.f.ThinTypes, m.f.Thin = fitSparse(byType, opts.Tuning.MinRuns, opts.Quantile, opts.Tuning.Confidence, opts.ceilingMargin())
	return m, nil
}

// fitEstimator chooses and calibrates one estimator on time-ordered runs.
// The feature models are fitted on the older runs and scored on the most
// recent ones; the recency-weighted quantile model is scored on replayed
// predictions (see rollingQuantile). The kind with the lowest pinball loss
// on the recent runs wins, and its out-of-sample scores calibrate it (split
// conformal).
func fitEstimator(samples []Sample, opts Options) *estimator {
	n := len(samples)
	nCal := max(minCalibration, int(math.Round(opts.Tuning.CalibrationShare*float64(n))))
	nFit := n - nCal
	if nFit < 5 {
		return nil
	}
	X, y, times := design(samples)
	fitX, fitY := X[:nFit], y[:nFit]
	calX, calY := X[nFit:], y[nFit:]

	var best *estimator
	var scores []float64
	if e, pred, first := rollingQuantile(y, times, opts.Quantile, 5); e != nil {
		best = e
		// Compare with the feature models on the same recent runs.
		from := max(first, nFit)
		best.Loss = meanPinball(opts.Quantile, y[from:], pred[from-first:])
		for i := first; i < n; i++ {
			scores = append(scores, y[i]-pred[i-first])
		}
	}
	for _, kind := range []string{kindLinear, kindGBT} {
		e := fitKind(kind, fitX, fitY, opts)
		if e == nil {
			continue
		}
		pred := make([]float64, len(calY))
		for i, x := range calX {
			pred[i] = e.raw(x)
		}
		e.Loss = meanPinball(opts.Quantile, calY, pred)
		if best == nil || e.Loss < best.Loss {
			best = e
			scores = scores[:0]
			for i := range calY {
				scores = append(scores, calY[i]-pred[i])
			}
		}
	}
	if best == nil {
		return nil
	}
	best.Level = pacLevel(opts.Quantile, opts.Tuning.Confidence, float64(len(scores)))
	best.Offset = conformalOffset(scores, best.Level)
	covered := 0
	for _, s := range scores {
		if s <= best.Offset+1e-12 {
			covered++
		}
	}
	best.Coverage = float64(covered) / float64(len(scores))
	best.Runs = n
	best.Floor, best.Ceiling = slices.Min(y), slices.Max(y)+opts.ceilingMargin()
	return best
}

// fitKind fits one candidate, or returns nil when the data cannot support
// it.
func fitKind(kind string, X [][]float64, y []float64, opts Options) *estimator {
	n := len(y)
	d := 0
	if n > 0 {
		d = len(X[0])
	}
	switch kind {
	case kindLinear:
		if d == 0 || n < 10*(d+1) || !varies(X) {
			return nil
		}
		lm, err := quantreg.FitLinear(X, y, opts.Quantile)
		if err != nil {
			return nil
		}
		return &estimator{Kind: kindLinear, Linear: lm}
	case kindGBT:
		if d == 0 || n < 100 || !varies(X) {
			return nil
		}
		return &estimator{Kind: kindGBT, GBT: fitGBT(X, y, opts.Quantile, defaultGBTParams(n))}
	}
	return nil
}

// design turns samples into model space: log1p features, log peaks.
func design(samples []Sample) (X [][]float64, y, times []float64) {
	X = make([][]float64, len(samples))
	y = make([]float64, len(samples))
	times = make([]float64, len(samples))
	for i, s := range samples {
		x := make([]float64, len(s.Features))
		for j, v := range s.Features {
			x[j] = transform(v)
		}
		X[i] = x
		y[i] = math.Log(s.Peak)
		times[i] = s.Time
	}
	return X, y, times
}

// varies reports whether any feature takes more than one value.
func varies(X [][]float64) bool {
	for j := range X[0] {
		for i := 1; i < len(X); i++ {
			if X[i][j] != X[0][j] {
				return true
			}
		}
	}
	return false
}

// sortByTime sorts samples by time, keeping the order of equal times.
func sortByTime(samples []Sample) {
	slices.SortStableFunc(samples, func(a, b Sample) int {
		switch {
		case a.Time < b.Time:
			return -1
		case a.Time > b.Time:
			return 1
		}
		return 0
	})
}
