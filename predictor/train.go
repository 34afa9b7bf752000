package predictor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Sample is one past run: when it ran, its type and pool, its features (in
// the dataset's order; NaN when missing) and the peak memory it used.
type Sample struct {
	Time     float64 // seconds, on any fixed epoch
	Type     string
	Pool     string
	Features []float64
	// Labels are the job's labels; those Options.GroupBy names key the
	// group strategy's groups, as strings.
	Labels map[string]string
	Peak   float64
	// Baseline is what a comparison method allocated, e.g. the memory the
	// user requested; NaN when unknown. Evaluation only.
	Baseline float64
	// Allocated is the memory the run was given, NaN when unknown. Missed
	// marks a run killed for needing more than that: its Peak is unknown
	// and it only measures the allocation (see StrategyGroups).
	Allocated float64
	Missed    bool

	group string // the GroupBy labels' values (training)
}

// Dataset is a set of runs with named features.
type Dataset struct {
	Features []string
	Samples  []Sample
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
	return &Dataset{Features: slices.Clone(names), Samples: permuteFeatures(ds.Samples, idx)}, nil
}

// Options tune training. Zero values take the defaults.
type Options struct {
	// Features, when set, are the features the model reads, in this
	// order (see Dataset.Select); empty reads all of the dataset's. Unless
	// FeatureOrder is FeatureOrderAuto, the group strategy's levels drop
	// features from the end of the list, so the most telling should come
	// first.
	Features []string
	// Quantile is the level predicted. Default 0.9.
	Quantile float64
	// GroupBy names labels (team, user, dataset) the group strategy keys
	// its groups on, as strings, between the type and the features: a
	// job's type with the same labels, then its type alone. It needs the
	// group strategy (auto takes it).
	GroupBy []string
	// GroupByType names such labels for some types, instead of GroupBy
	// (the registry's per-type predictor.groupBy).
	GroupByType map[string][]string
	// MinRuns is how many runs a type (or pool) needs for a model of its
	// own. Default 30.
	MinRuns int
	// CalibrationShare is the share of a type's most recent runs held out
	// to choose its model and calibrate it. Default 0.25, and at least
	// MinCalibration runs.
	CalibrationShare float64
	MinCalibration   int
	// Buffer, when above 1, replaces conformal calibration with a fixed
	// multiplier on the predicted quantile (the traditional x1.2).
	Buffer float64
	// HalfLife weights recent runs more in the empirical quantile model.
	// Default 7 days.
	HalfLife time.Duration
	// Kinds limits the candidate models; default all.
	Kinds []string
	// CalibrationHalfLife weights calibration runs by recency (weighted
	// conformal calibration); zero weighs them equally.
	CalibrationHalfLife time.Duration
	// Objective is what Quantile is the target of: every type's own
	// coverage (ObjectiveType), or the fleet's, letting each type's level
	// move within MaxShortfall of it to spend memory where coverage is
	// cheap (ObjectiveFleet).
	Objective    string
	MaxShortfall float64
	// Confidence is the probability that an estimator's coverage reaches
	// Quantile, not only on average (training-conditional conformal
	// calibration). Default 0.9; negative calibrates for average coverage.
	Confidence float64
	// Ceiling caps every prediction at this multiple of the largest peak
	// its estimator was trained on. Default 1.25. Replays of a type whose
	// memory grew during the window make its calibration pessimistic; the
	// cap keeps that from multiplying its allocation.
	Ceiling float64
	// Strategy is how jobs are sized: StrategyAuto (the default),
	// StrategyEstimators or StrategyGroups.
	Strategy string
	// GroupHalfLife weighs runs by recency in the group model's quantiles.
	// Zero chooses it from the runs (see fitGroups).
	GroupHalfLife time.Duration
	// FeatureOrder is FeatureOrderGiven (the default): the group model's
	// levels drop features from the end of Features (or of the dataset's
	// list); or FeatureOrderAuto: the group model orders up to
	// maxOrderedFeatures features itself, by its levels' loss on the
	// window's last week (see orderFeatures), and Model.Features lists
	// them in that order. With more, the given order is kept.
	FeatureOrder string
	// AdaptRate is the step of the group model's margin per retraining.
	// Default 0.3.
	AdaptRate float64
	// Previous is the model in use until now; the group model adapts its
	// margin from how that model's allocations fared.
	Previous *Model
}

// Feature orders (Options.FeatureOrder).
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
	// limits do, or none).
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

// strategy resolves StrategyAuto for time-ordered runs.
// labels reports whether any type's groups are keyed on labels.
func (o Options) labels() bool {
	return len(o.GroupBy) > 0 || len(o.GroupByType) > 0
}

func (o Options) strategy(samples []Sample, features int) string {
	if o.Strategy != StrategyAuto {
		return o.Strategy
	}
	if o.labels() {
		return StrategyGroups
	}
	if features > 0 && repeatShare(samples) < 0.25 {
		return StrategyEstimators
	}
	return StrategyGroups
}

func (o Options) ceilingMargin() float64 {
	if o.Ceiling <= 0 {
		return math.Log(1.25)
	}
	return math.Log(o.Ceiling)
}

// Objectives of calibration.
const (
	ObjectiveType  = "type"
	ObjectiveFleet = "fleet"
)

func (o Options) withDefaults() Options {
	if o.Quantile == 0 {
		o.Quantile = 0.9
	}
	if o.MinRuns == 0 {
		o.MinRuns = 30
	}
	if o.CalibrationShare == 0 {
		o.CalibrationShare = 0.25
	}
	if o.MinCalibration == 0 {
		o.MinCalibration = 15
	}
	// Negative stays negative (average coverage; pacLevel reads any value
	// <= 0 so), so that applying the defaults twice changes nothing.
	if o.Confidence == 0 {
		o.Confidence = 0.9
	}
	if o.HalfLife == 0 {
		o.HalfLife = 7 * 24 * time.Hour
	}
	if o.Strategy == "" {
		o.Strategy = StrategyAuto
	}
	if len(o.Kinds) == 0 {
		o.Kinds = []string{KindQuantile, KindLinear, KindGBT}
	}
	if o.AdaptRate == 0 {
		o.AdaptRate = 0.3
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	if !(o.Quantile > 0 && o.Quantile < 1) {
		errs = append(errs, fmt.Errorf("quantile %v: between 0 and 1", o.Quantile))
	}
	if o.Buffer != 0 && o.Buffer < 1 {
		errs = append(errs, fmt.Errorf("buffer %v: 1 or more", o.Buffer))
	}
	if o.AdaptRate < 0 || o.AdaptRate > 10 {
		errs = append(errs, fmt.Errorf("adapt rate %v: between 0 and 10", o.AdaptRate))
	}
	if o.GroupHalfLife < 0 {
		errs = append(errs, fmt.Errorf("group half-life %v: not negative", o.GroupHalfLife))
	}
	if o.MinRuns < 2 {
		errs = append(errs, fmt.Errorf("min runs %d: at least 2", o.MinRuns))
	}
	if !(o.CalibrationShare > 0 && o.CalibrationShare < 1) {
		errs = append(errs, fmt.Errorf("calibration share %v: between 0 and 1", o.CalibrationShare))
	}
	if o.FeatureOrder != "" && o.FeatureOrder != FeatureOrderGiven && o.FeatureOrder != FeatureOrderAuto {
		errs = append(errs, fmt.Errorf("feature order %q: %s or %s", o.FeatureOrder, FeatureOrderGiven, FeatureOrderAuto))
	}
	if o.labels() && o.Strategy == StrategyEstimators {
		errs = append(errs, fmt.Errorf("group by %v %v: labels key the groups strategy's groups, not the estimators'", o.GroupBy, o.GroupByType))
	}
	names := slices.Clone(o.GroupBy)
	for _, byType := range o.GroupByType {
		names = append(names, byType...)
	}
	for _, name := range names {
		if name == "" || strings.ContainsAny(name, "\x1e\x1f") {
			errs = append(errs, fmt.Errorf("group by %q: not a label name", name))
		}
	}
	if !slices.Contains([]string{StrategyAuto, StrategyEstimators, StrategyGroups}, o.Strategy) {
		errs = append(errs, fmt.Errorf("strategy %q: %s, %s or %s", o.Strategy, StrategyAuto, StrategyEstimators, StrategyGroups))
	}
	for _, k := range o.Kinds {
		if k != KindQuantile && k != KindLinear && k != KindGBT {
			errs = append(errs, fmt.Errorf("model kind %q: quantile, linear or gbt", k))
		}
	}
	return errors.Join(errs...)
}

// ErrNoData is returned when there is nothing to train on.
var ErrNoData = errors.New("no runs to train on")

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

// Train fits a model: an estimator per type with enough runs, per pool, and
// a global one, each chosen among the candidate kinds by pinball loss on
// its most recent runs and calibrated on them; or, with StrategyGroups, a
// group model (see Options.Strategy).
func Train(ds *Dataset, opts Options) (*Model, error) {
	return TrainContext(context.Background(), ds, opts)
}

// TrainContext is Train that stops, returning ctx's error, when ctx ends:
// it checks between estimators and between the group model's candidate
// feature orders, which on a million runs take seconds each.
func TrainContext(ctx context.Context, ds *Dataset, opts Options) (*Model, error) {
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
	for _, s := range ds.Samples {
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
	m := &Model{
		Format: Format, Version: FormatVersion, Quantile: opts.Quantile,
		Features: slices.Clone(ds.Features), TrainedAt: time.Now().UTC(), Runs: len(samples),
		Types: map[string]*Estimator{}, Pools: map[string]*Estimator{}, TypePools: map[string]string{},
	}
	if opts.strategy(samples, len(ds.Features)) == StrategyGroups {
		m.GroupBy = slices.Clone(opts.GroupBy)
		if len(opts.GroupByType) > 0 {
			m.GroupByType = map[string][]string{}
			for typ, names := range opts.GroupByType {
				m.GroupByType[typ] = slices.Clone(names)
			}
		}
		for i := range samples {
			samples[i].group = groupKey(samples[i].Labels, m.groupBy(samples[i].Type))
		}
		for i := range deployed {
			deployed[i].group = groupKey(deployed[i].Labels, m.groupBy(deployed[i].Type))
		}
		for _, s := range samples {
			if s.Pool != "" {
				m.TypePools[s.Type] = s.Pool
			}
		}
		if opts.FeatureOrder == FeatureOrderAuto && len(ds.Features) > 1 && len(ds.Features) <= maxOrderedFeatures {
			order, err := orderFeatures(ctx, samples, len(ds.Features), opts.Quantile, opts.labels())
			if err != nil {
				return nil, err
			}
			// The deployed runs measure the margin by their allocations
			// alone; their features are not read.
			samples = permuteFeatures(samples, order)
			for i, j := range order {
				m.Features[i] = ds.Features[j]
			}
		}
		m.Groups = fitGroups(samples, deployed, len(ds.Features), opts.Previous, opts)
		return m, ctx.Err()
	}
	byType := map[string][]Sample{}
	byPool := map[string][]Sample{}
	for _, s := range samples {
		byType[s.Type] = append(byType[s.Type], s)
		if s.Pool != "" {
			byPool[s.Pool] = append(byPool[s.Pool], s)
			m.TypePools[s.Type] = s.Pool
		}
	}
	m.Global = fitEstimator(samples, opts)
	for pool, ss := range byPool {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(ss) >= opts.MinRuns && len(byPool) > 1 {
			if e := fitEstimator(ss, opts); e != nil {
				m.Pools[pool] = e
			}
		}
	}
	for typ, ss := range byType {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(ss) >= opts.MinRuns {
			if e := fitEstimator(ss, opts); e != nil {
				m.Types[typ] = e
			}
		}
	}
	m.ThinTypes, m.Thin = fitSparse(byType, opts.MinRuns, opts.Quantile, opts.Confidence, opts.ceilingMargin())
	if opts.Objective == ObjectiveFleet && opts.Buffer == 0 {
		balanceLevels(m, opts, recentShares(samples, opts.MinRuns))
	}
	return m, nil
}

// fitEstimator chooses and calibrates one estimator on time-ordered runs.
// The feature models are fitted on the older runs and scored on the most
// recent ones; the recency-weighted quantile model is scored on replayed
// predictions (see rollingQuantile). The kind with the lowest pinball loss
// on the recent runs wins, and its out-of-sample scores calibrate it (split
// conformal).
func fitEstimator(samples []Sample, opts Options) *Estimator {
	n := len(samples)
	nCal := max(opts.MinCalibration, int(math.Round(opts.CalibrationShare*float64(n))))
	nFit := n - nCal
	if nFit < 5 {
		return nil
	}
	X, y, times := design(samples)
	fitX, fitY := X[:nFit], y[:nFit]
	calX, calY := X[nFit:], y[nFit:]

	var best *Estimator
	var scores, scoreTimes []float64
	if slices.Contains(opts.Kinds, KindQuantile) {
		if e, pred, first := rollingQuantile(y, times, opts.Quantile, 5); e != nil {
			best = e
			// Compare with the feature models on the same recent runs.
			from := max(first, nFit)
			best.Loss = meanPinball(opts.Quantile, y[from:], pred[from-first:])
			for i := first; i < n; i++ {
				scores = append(scores, y[i]-pred[i-first])
				scoreTimes = append(scoreTimes, times[i])
			}
		}
	}
	for _, kind := range opts.Kinds {
		if kind == KindQuantile {
			continue
		}
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
			scores, scoreTimes = scores[:0], scoreTimes[:0]
			for i := range calY {
				scores = append(scores, calY[i]-pred[i])
				scoreTimes = append(scoreTimes, times[nFit+i])
			}
		}
	}
	if best == nil {
		return nil
	}
	weights := make([]float64, len(scores))
	last := times[n-1]
	for i := range scores {
		weights[i] = 1
		if opts.CalibrationHalfLife > 0 {
			weights[i] = decay(last-scoreTimes[i], opts.CalibrationHalfLife.Seconds())
		}
	}
	best.Level = pacLevel(opts.Quantile, opts.Confidence, effectiveSize(weights))
	if opts.Buffer > 0 {
		best.Offset = math.Log(opts.Buffer)
	} else {
		best.Offset = weightedConformalOffset(scores, weights, best.Level)
	}
	covered := 0
	for _, s := range scores {
		if s <= best.Offset+1e-12 {
			covered++
		}
	}
	best.Coverage = float64(covered) / float64(len(scores))
	best.Runs = n
	best.Floor, best.Ceiling = slices.Min(y), slices.Max(y)+opts.ceilingMargin()
	best.cal = &calibration{scores: scores, weights: weights, base: best.raw(X[n-1]), maxY: slices.Max(y)}
	return best
}

// fitKind fits one candidate, or returns nil when the data cannot support
// it.
func fitKind(kind string, X [][]float64, y []float64, opts Options) *Estimator {
	n := len(y)
	d := 0
	if n > 0 {
		d = len(X[0])
	}
	switch kind {
	case KindLinear:
		if d == 0 || n < 10*(d+1) || !varies(X) {
			return nil
		}
		lm, err := fitLinear(X, y, opts.Quantile)
		if err != nil {
			return nil
		}
		return &Estimator{Kind: KindLinear, Linear: lm}
	case KindGBT:
		if d == 0 || n < 100 || !varies(X) {
			return nil
		}
		return &Estimator{Kind: KindGBT, GBT: fitGBT(X, y, opts.Quantile, defaultGBTParams(n))}
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

// groupShares are the shares of upcoming runs each kind of estimator will
// predict: types with their own model, thin types, and unseen types.
type groupShares struct{ typed, thin, unseen float64 }

// recentShares estimates groupShares from the last week of the runs: how
// they would have been predicted by a model trained on the runs before it.
func recentShares(samples []Sample, minRuns int) groupShares {
	if len(samples) == 0 {
		return groupShares{}
	}
	cut := samples[len(samples)-1].Time - 7*86400
	before := map[string]int{}
	var s groupShares
	for _, r := range samples {
		if r.Time < cut {
			before[r.Type]++
			continue
		}
		switch n := before[r.Type]; {
		case n >= minRuns:
			s.typed++
		case n > 0:
			s.thin++
		default:
			s.unseen++
		}
	}
	total := s.typed + s.thin + s.unseen
	if total == 0 {
		return groupShares{typed: 1}
	}
	return groupShares{typed: s.typed / total, thin: s.thin / total, unseen: s.unseen / total}
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
