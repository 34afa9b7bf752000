package predictor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Format and FormatVersion identify model files this package reads.
const (
	Format        = "jobfleet-predictor"
	FormatVersion = 2
)

// Model predicts a high quantile of a job's peak memory from its type and
// features. Models are trained per job type; a type with too few runs falls
// back to its pool's model, then to the global one.
type Model struct {
	Format   string   `json:"format"`
	Version  int      `json:"version"`
	Quantile float64  `json:"quantile"`
	Features []string `json:"features"`
	// GroupBy names the labels the group strategy keys groups on;
	// GroupByType names them for some types instead.
	GroupBy     []string            `json:"group_by,omitempty"`
	GroupByType map[string][]string `json:"group_by_type,omitempty"`
	TrainedAt   time.Time           `json:"trained_at"`
	Runs        int                 `json:"runs"`
	// Types, Pools and Global are the estimators, most specific first.
	Types  map[string]*Estimator `json:"types"`
	Pools  map[string]*Estimator `json:"pools,omitempty"`
	Global *Estimator            `json:"global,omitempty"`
	// TypePools maps each type seen in training to its pool.
	TypePools map[string]string `json:"type_pools,omitempty"`
	// Thin types have too few runs for an estimator of their own: each
	// gets its runs' quantile (log space) plus the Thin estimator's offset.
	ThinTypes map[string]float64 `json:"thin_types,omitempty"`
	Thin      *Estimator         `json:"thin,omitempty"`
	// Groups, when present, sizes every job instead of the estimators
	// (StrategyGroups).
	Groups *groupModel `json:"groups,omitempty"`
}

// Estimator kinds.
const (
	KindQuantile = "quantile" // the type's (recency-weighted) empirical quantile
	KindLinear   = "linear"   // linear quantile regression on log features
	KindGBT      = "gbt"      // gradient-boosted quantile trees on log features
)

// Estimator is one fitted model with its calibration. It works on the
// logarithm of peak memory; Offset is added before exponentiating.
type Estimator struct {
	Kind     string  `json:"kind"`
	Constant float64 `json:"constant,omitempty"`
	// HalfLife is the quantile model's recency half-life, in seconds (0:
	// all runs weigh the same).
	HalfLife float64      `json:"half_life,omitempty"`
	Linear   *linearModel `json:"linear,omitempty"`
	GBT      *gbtModel    `json:"gbt,omitempty"`
	// Offset is the calibration in log space: split-conformal, or the log
	// of a fixed buffer.
	Offset float64 `json:"offset"`
	// Runs is how many runs it was trained and calibrated on.
	Runs int `json:"runs"`
	// Loss is the mean pinball loss on the calibration runs before the
	// offset; Coverage the share of them covered after it.
	Loss     float64 `json:"loss"`
	Coverage float64 `json:"coverage"`
	// Floor and Ceiling bound the log prediction: a model extrapolating
	// far outside the runs it saw is held to the smallest peak it saw and
	// the largest plus its calibration.
	Floor   float64 `json:"floor"`
	Ceiling float64 `json:"ceiling"`
	// Level is the conformal level the offset was calibrated at.
	Level float64 `json:"level,omitempty"`

	cal *calibration // training only
}

// calibration keeps an estimator's out-of-sample scores while training.
type calibration struct {
	scores, weights []float64
	base            float64 // the estimator's current raw prediction
	maxY            float64
}

func (e *Estimator) raw(x []float64) float64 {
	switch e.Kind {
	case KindLinear:
		return e.Linear.predict(x)
	case KindGBT:
		return e.GBT.predict(x)
	}
	return e.Constant
}

func (e *Estimator) predictLog(x []float64) float64 {
	return min(max(e.raw(x)+e.Offset, e.Floor), e.Ceiling)
}

// Strategy says how the model sizes jobs: StrategyGroups or
// StrategyEstimators.
func (m *Model) Strategy() string {
	if m.Groups != nil {
		return StrategyGroups
	}
	return StrategyEstimators
}

// Source says which estimator made a prediction.
type Source string

// Sources of a prediction.
const (
	SourceType   Source = "type"
	SourceThin   Source = "thin-type"
	SourcePool   Source = "pool"
	SourceGlobal Source = "global"
	SourceNone   Source = "none"
	// SourceSignature: the group of the type's runs with the same
	// features, or the same leading features (StrategyGroups).
	SourceSignature Source = "type-features"
	// SourceFeatures: the group of the pool's runs (or, for a job
	// without a pool, of all runs without one) with the same leading
	// features, whatever their type (StrategyGroups).
	SourceFeatures Source = "features"
)

// Predict returns the predicted peak, in the unit the model was trained on,
// for a job of the type with the features, and which estimator made it. It
// returns SourceNone when the model has no estimator for the job.
func (m *Model) Predict(jobType, pool string, features map[string]float64) (float64, Source) {
	return m.PredictLabels(jobType, pool, nil, features)
}

// PredictLabels is Predict for a job with labels: a model trained with
// Options.GroupBy sizes it by the group of its type and those labels when
// it has one.
func (m *Model) PredictLabels(jobType, pool string, labels map[string]string, features map[string]float64) (float64, Source) {
	var buf [8]float64
	x := buf[:0]
	for _, name := range m.Features {
		v, ok := features[name]
		if !ok {
			v = math.NaN()
		}
		x = append(x, v)
	}
	return m.predictVector(jobType, groupKey(labels, m.groupBy(jobType)), pool, x)
}

// PredictVector is Predict with features already in the model's order, for
// callers predicting many jobs.
func (m *Model) PredictVector(jobType, pool string, x []float64) (float64, Source) {
	return m.predictVector(jobType, "", pool, x)
}

func (m *Model) predictVector(jobType, group, pool string, x []float64) (float64, Source) {
	if m.Groups != nil {
		if pool == "" {
			pool = m.TypePools[jobType]
		}
		return m.Groups.predict(jobType, group, pool, x)
	}
	if c, ok := m.ThinTypes[jobType]; ok && m.Thin != nil {
		return math.Exp(m.thin(c)), SourceThin
	}
	est, src := m.estimator(jobType, pool)
	if est == nil {
		return 0, SourceNone
	}
	var buf [8]float64
	tx := buf[:0]
	for _, v := range x {
		tx = append(tx, transform(v))
	}
	return math.Exp(est.predictLog(tx)), src
}

// LabelsFor names the labels that key a type's groups (none: the model
// does not read labels for the type).
func (m *Model) LabelsFor(jobType string) []string { return m.groupBy(jobType) }

// groupBy names the labels that key a type's groups.
func (m *Model) groupBy(jobType string) []string {
	if names, ok := m.GroupByType[jobType]; ok {
		return names
	}
	return m.GroupBy
}

// Explanation says why a model sizes a job as it does.
type Explanation struct {
	// Prediction is what Predict returns, Source which estimator or group
	// level made it.
	Prediction float64 `json:"prediction"`
	Source     Source  `json:"source"`
	Strategy   string  `json:"strategy"`
	Quantile   float64 `json:"quantile"`
	// Level describes the group level or estimator that decided, Group the
	// job's group in it (groups strategy), Runs the runs behind it (0 when
	// the model did not keep them).
	Level string `json:"level"`
	Group string `json:"group,omitempty"`
	Runs  int    `json:"runs"`
	// Base is the group's quantile or the estimator's prediction before
	// the margin, Margin the multiplier the calibration adds on top.
	Base   float64 `json:"base"`
	Margin float64 `json:"margin"`
	// Missing lists the model's features the job did not give.
	Missing []string `json:"missing_features,omitempty"`
}

// Explain predicts a job's peak as PredictLabels does and says why.
func (m *Model) Explain(jobType, pool string, labels map[string]string, features map[string]float64) Explanation {
	x := make([]float64, len(m.Features))
	var missingNames []string
	for i, name := range m.Features {
		v, ok := features[name]
		if !ok {
			v = math.NaN()
			missingNames = append(missingNames, name)
		}
		x[i] = v
	}
	e := Explanation{Strategy: m.Strategy(), Quantile: m.Quantile, Missing: missingNames}
	groupBy := m.groupBy(jobType)
	group := groupKey(labels, groupBy)
	e.Prediction, e.Source = m.predictVector(jobType, group, pool, x)
	if m.Groups != nil {
		if pool == "" {
			pool = m.TypePools[jobType]
		}
		g := m.Groups
		level, key := g.explain(jobType, group, pool, x)
		e.Margin = math.Exp(g.Margin)
		if level == len(g.Levels) {
			e.Level, e.Base, e.Runs = "all runs", math.Exp(g.Global), m.Runs
			return e
		}
		l := &g.Levels[level]
		e.Level = l.By
		if l.Labels {
			e.Level += " and " + strings.Join(groupBy, ", ")
		}
		if l.Features > 0 {
			e.Level += " and " + strings.Join(m.Features[:l.Features], ", ")
		}
		// The key: the category, the labels' values (after 0x1e, 0x1f
		// between them), then the features' (each after 0x1f).
		category, rest, _ := strings.Cut(key, "\x1f")
		e.Group = category
		if l.Labels {
			typ, first, _ := strings.Cut(category, "\x1e")
			values := append([]string{first}, strings.Split(rest, "\x1f")...)
			e.Group = typ
			for i, name := range groupBy {
				e.Group += ", " + name + "=" + values[i]
			}
			rest = strings.Join(values[len(groupBy):], "\x1f")
		}
		if l.Features > 0 {
			for i, v := range strings.Split(rest, "\x1f") {
				e.Group += ", " + m.Features[i] + "=" + v
			}
		}
		e.Base, e.Runs = math.Exp(l.Groups[key]), l.Runs[key]
		return e
	}
	if c, ok := m.ThinTypes[jobType]; ok && m.Thin != nil {
		// The type's own quantile and the thin types' shared offset,
		// the sum held between the thin estimator's floor and ceiling.
		e.Level, e.Base, e.Margin = "a thin type's quantile (few runs)", math.Exp(c), math.Exp(m.Thin.Offset)
		return e
	}
	est, src := m.estimator(jobType, pool)
	if est == nil {
		e.Level = "none: no estimator for the type, its pool or all runs"
		return e
	}
	e.Level = string(src) + " estimator (" + est.Kind + ")"
	e.Runs, e.Margin = est.Runs, math.Exp(est.Offset)
	// The estimator's prediction before its offset (the model holds the
	// sum between the smallest peak it saw and its ceiling).
	e.Base = e.Prediction / e.Margin
	return e
}

func (m *Model) thin(c float64) float64 {
	return min(max(c+m.Thin.Offset, m.Thin.Floor), m.Thin.Ceiling)
}

func (m *Model) estimator(jobType, pool string) (*Estimator, Source) {
	if e := m.Types[jobType]; e != nil {
		return e, SourceType
	}
	if pool == "" {
		pool = m.TypePools[jobType]
	}
	if e := m.Pools[pool]; e != nil && pool != "" {
		return e, SourcePool
	}
	if m.Global != nil {
		return m.Global, SourceGlobal
	}
	return nil, SourceNone
}

// transform maps a feature value to model space: log1p of non-negative
// values, -1 for missing ones (NaN or negative, as the traces mark them).
func transform(v float64) float64 {
	if math.IsNaN(v) || v < 0 || math.IsInf(v, 0) {
		return -1
	}
	return math.Log1p(v)
}

// Write encodes the model as JSON.
func (m *Model) Write(w io.Writer) error {
	enc := json.NewEncoder(w)
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("writing model: %w", err)
	}
	return nil
}

// ErrIncompatible is returned for a model file of another format or
// version.
var ErrIncompatible = errors.New("incompatible model file")

// ReadModel decodes and checks a model file. A file that is corrupt,
// truncated or of another version is rejected with an error that says so.
func ReadModel(r io.Reader) (*Model, error) {
	var m Model
	dec := json.NewDecoder(io.LimitReader(r, 1<<30))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("reading model: corrupt JSON: %w", err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrIncompatible, m.Format, Format)
	}
	switch m.Version {
	case FormatVersion:
	case 1:
		// Version 1 group models held three fixed levels.
		if m.Groups != nil {
			m.Groups.upgrade(len(m.Features))
		}
		m.Version = FormatVersion
	default:
		return nil, fmt.Errorf("%w: version %d, this reader understands 1 to %d", ErrIncompatible, m.Version, FormatVersion)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("reading model: %w", err)
	}
	return &m, nil
}

// check validates a decoded model so that Predict can never fail on it.
func (m *Model) check() error {
	if !(m.Quantile > 0 && m.Quantile < 1) {
		return fmt.Errorf("quantile %v is not in (0, 1)", m.Quantile)
	}
	d := len(m.Features)
	for name, e := range m.Types {
		if err := e.check(d); err != nil {
			return fmt.Errorf("type %q: %w", name, err)
		}
	}
	for name, e := range m.Pools {
		if err := e.check(d); err != nil {
			return fmt.Errorf("pool %q: %w", name, err)
		}
	}
	if m.Global != nil {
		if err := m.Global.check(d); err != nil {
			return fmt.Errorf("global: %w", err)
		}
	}
	if m.Thin != nil {
		if err := m.Thin.check(d); err != nil {
			return fmt.Errorf("thin types: %w", err)
		}
	}
	if m.Groups != nil {
		if err := m.Groups.check(d); err != nil {
			return fmt.Errorf("groups: %w", err)
		}
	}
	for name, c := range m.ThinTypes {
		if !finite(c) {
			return fmt.Errorf("thin type %q: non-finite quantile", name)
		}
	}
	return nil
}

func (e *Estimator) check(d int) error {
	if e == nil {
		return errors.New("empty estimator")
	}
	if !finite(e.Offset) || !finite(e.Constant) || !finite(e.Floor) || !finite(e.Ceiling) {
		return errors.New("non-finite offset, constant or bounds")
	}
	if e.Floor > e.Ceiling {
		return fmt.Errorf("floor %v is above ceiling %v", e.Floor, e.Ceiling)
	}
	switch e.Kind {
	case KindQuantile:
	case KindLinear:
		if e.Linear == nil || len(e.Linear.Coef) != d+1 {
			return fmt.Errorf("linear model needs %d coefficients", d+1)
		}
		for _, c := range e.Linear.Coef {
			if !finite(c) {
				return errors.New("non-finite coefficient")
			}
		}
	case KindGBT:
		if e.GBT == nil || !finite(e.GBT.Base) || !finite(e.GBT.Rate) {
			return errors.New("malformed boosted trees")
		}
		for ti, t := range e.GBT.Trees {
			if len(t) == 0 {
				return fmt.Errorf("tree %d is empty", ti)
			}
			for ni, n := range t {
				if n.Feature < 0 {
					if !finite(n.Value) {
						return fmt.Errorf("tree %d node %d: non-finite value", ti, ni)
					}
					continue
				}
				// Children come after their parent, so walks always end.
				if n.Feature >= d || int(n.Left) <= ni || int(n.Right) <= ni || int(n.Left) >= len(t) || int(n.Right) >= len(t) {
					return fmt.Errorf("tree %d node %d: malformed split", ti, ni)
				}
			}
		}
	default:
		return fmt.Errorf("unknown estimator kind %q", e.Kind)
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
