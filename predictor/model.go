package predictor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet/internal/quantreg"
)

// fileFormat and fileVersion identify the model files this package
// reads (versions 1 to fileVersion). It writes version 2, or 3 for a
// model with per-type features (Tuning.FeaturesByType), which a reader of
// version 2 would size without: it rejects version 3 (a Reloader keeps
// its model; Load fails).
const (
	fileFormat  = "jobfleet-predictor"
	fileVersion = 3
)

// version is the file version a model needs.
func (f *modelFile) version() int {
	if len(f.FeaturesByType) > 0 {
		return 3
	}
	return 2
}

// Model predicts a high quantile of a job's peak memory from its type,
// labels and features (Predict). Train and Retrain make one; Write,
// ReadModel, Save and Load store it; a Reloader keeps a process's current.
// A Model is not changed after training and is safe for concurrent use.
type Model struct {
	f modelFile
}

// modelFile is a model as stored.
type modelFile struct {
	Format   string   `json:"format"`
	Version  int      `json:"version"`
	Quantile float64  `json:"quantile"`
	Features []string `json:"features"`
	// Ordered is true when the model chose the features' order
	// (FeatureOrderAuto), false when it kept the one it was given.
	Ordered bool `json:"features_ordered,omitempty"`
	// GroupBy names the labels the group strategy keys groups on;
	// GroupByType names them for some types instead.
	GroupBy     []string            `json:"group_by,omitempty"`
	GroupByType map[string][]string `json:"group_by_type,omitempty"`
	// FeaturesByType names the features some types' jobs are read by
	// (Tuning.FeaturesByType).
	FeaturesByType map[string][]string `json:"features_by_type,omitempty"`
	TrainedAt      time.Time           `json:"trained_at"`
	RunsUntil      time.Time           `json:"runs_until,omitzero"`
	Runs           int                 `json:"runs"`
	// SwitchedFrom is the strategy of the model this one replaced, when
	// StrategyAuto chose another; RepeatShare is the share of the runs
	// that repeat an earlier run's type and features, which auto reads.
	SwitchedFrom string  `json:"switched_from,omitempty"`
	RepeatShare  float64 `json:"repeat_share,omitempty"`
	// Types, Pools and Global are the estimators, most specific first.
	Types  map[string]*estimator `json:"types"`
	Pools  map[string]*estimator `json:"pools,omitempty"`
	Global *estimator            `json:"global,omitempty"`
	// TypePools maps each type seen in training to its pool.
	TypePools map[string]string `json:"type_pools,omitempty"`
	// Thin types have too few runs for an estimator of their own: each
	// gets its runs' quantile (log space) plus the Thin estimator's offset.
	ThinTypes map[string]float64 `json:"thin_types,omitempty"`
	Thin      *estimator         `json:"thin,omitempty"`
	// Groups, when present, sizes every job instead of the estimators
	// (StrategyGroups).
	Groups *groupModel `json:"groups,omitempty"`
	// Raises are the multipliers the raise after misses starts this
	// model's groups at (see Model.Raises).
	Raises map[string]float64 `json:"raises,omitempty"`
}

// Quantile is the share of jobs the model's allocations aim to cover.
func (m *Model) Quantile() float64 { return m.f.Quantile }

// Features are the features the model reads, in the order its group
// levels drop them (the last first).
func (m *Model) Features() []string { return slices.Clone(m.f.Features) }

// FeatureOrder says who ordered Features: FeatureOrderAuto when the model
// chose the order by its group levels' loss, FeatureOrderGiven when it
// kept the order it was given (the estimators, and FeatureOrderAuto with
// fewer than 2 or more than 4 features, keep it).
func (m *Model) FeatureOrder() string {
	if m.f.Ordered {
		return FeatureOrderAuto
	}
	return FeatureOrderGiven
}

// Runs is how many runs the model was trained on.
func (m *Model) Runs() int { return m.f.Runs }

// TrainedAt is when the model was trained.
func (m *Model) TrainedAt() time.Time { return m.f.TrainedAt }

// RunsUntil is when the runs the model was trained on were read (the
// Dataset's Until): a run that ended later is not in them. It is zero
// when that is not known; TrainedAt bounds it then.
func (m *Model) RunsUntil() time.Time { return m.f.RunsUntil }

// Raises are the multipliers, above 1, that the dispatcher's raise after
// misses starts the groups of jobs this model sizes at, keyed as the raise
// keys its groups: what the retraining that made the model carried over
// from the raise of the model it replaced. Nil when there are none; the
// model's own sizes (Predict) never include them.
func (m *Model) Raises() map[string]float64 { return maps.Clone(m.f.Raises) }

// WithRaises returns a copy of m whose Raises are raises; the copy shares
// the rest, which is never changed.
func (m *Model) WithRaises(raises map[string]float64) *Model {
	c := *m
	c.f.Raises = nil
	if len(raises) > 0 {
		c.f.Raises = maps.Clone(raises)
	}
	return &c
}

// Switched reports the strategy of the model this one replaced when
// StrategyAuto chose another at this training, and the share of the runs
// that repeat an earlier run's type and features, which decided it.
func (m *Model) Switched() (from string, repeatShare float64, ok bool) {
	return m.f.SwitchedFrom, m.f.RepeatShare, m.f.SwitchedFrom != ""
}

// Estimator kinds.
const (
	kindQuantile = "quantile" // the type's (recency-weighted) empirical quantile
	kindLinear   = "linear"   // linear quantile regression on log features
	kindGBT      = "gbt"      // gradient-boosted quantile trees on log features
)

// estimator is one fitted model with its calibration. It works on the
// logarithm of peak memory; Offset is added before exponentiating.
type estimator struct {
	Kind     string  `json:"kind"`
	Constant float64 `json:"constant,omitempty"`
	// HalfLife is the quantile model's recency half-life, in seconds (0:
	// all runs weigh the same).
	HalfLife float64          `json:"half_life,omitempty"`
	Linear   *quantreg.Linear `json:"linear,omitempty"`
	GBT      *gbtModel        `json:"gbt,omitempty"`
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
}

func (e *estimator) raw(x []float64) float64 {
	switch e.Kind {
	case kindLinear:
		return e.Linear.Predict(x)
	case kindGBT:
		return e.GBT.predict(x)
	}
	return e.Constant
}

func (e *estimator) predictLog(x []float64) float64 {
	return min(max(e.raw(x)+e.Offset, e.Floor), e.Ceiling)
}

// Strategy says how the model sizes jobs: StrategyGroups or
// StrategyEstimators.
func (m *Model) Strategy() string {
	if m.f.Groups != nil {
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
	// SourceLabels: the group of the type's runs, or the pool's, with the
	// same labels (Options.GroupBy), and the same leading features if
	// any (StrategyGroups).
	SourceLabels Source = "labels"
)

// Job is what a model sizes.
type Job struct {
	Type string
	// Pool is the type's pool; empty takes the one the model learned for
	// the type.
	Pool string
	// Labels key the job's groups when the model groups its type by them
	// (Options.GroupBy); others are ignored.
	Labels map[string]string
	// Features the model does not read, or does not read for the type
	// (Model.FeaturesFor), are ignored; those it reads and the job lacks
	// are missing (Prediction.Missing).
	Features map[string]float64
}

// Prediction is a model's size for a job, and why; Allocation is what
// the job gets.
type Prediction struct {
	// Memory is the model's own size, in the unit the model was trained
	// on (bytes for run records): the calibrated quantile, which its
	// margin is adapted on. Zero with SourceNone, when the model has
	// nothing to size the job by.
	Memory float64 `json:"memory"`
	// Source is the kind of group or estimator that decided.
	Source Source `json:"source"`
	// Level describes it in words, Group names the job's group in it (the
	// type, labels and features that define it; groups strategy), and Runs
	// counts the runs behind it (0 when the model did not keep the count).
	Level string `json:"level"`
	Group string `json:"group,omitempty"`
	Runs  int    `json:"runs"`
	// Base is the group's quantile or the estimator's prediction before
	// the margin, Margin the multiplier calibration puts on top.
	Base   float64 `json:"base"`
	Margin float64 `json:"margin"`
	// Floor is the least the job gets, when above Memory (0: none): its
	// group's quantile over about a week's runs, with the margin. Memory
	// follows what the group does now; Floor keeps a few days' dip from
	// sizing the group's usual jobs below what they need.
	Floor float64 `json:"floor,omitempty"`
	// Raise is the multiplier the dispatcher puts on the allocation after
	// recent misses in the job's group, starting from the one the model
	// carries (Model.Raises); 0: none. Model.Predict never sets it.
	Raise float64 `json:"raise,omitempty"`
	// Missing lists the model's features the job did not give.
	Missing []string `json:"missing_features,omitempty"`
}

// Allocation is what the job gets: the larger of Memory and Floor, times
// Raise.
func (p Prediction) Allocation() float64 { return max(p.Memory, p.Floor) * max(p.Raise, 1) }

// Predict sizes a job: a high quantile (Quantile) of its peak memory.
func (m *Model) Predict(job Job) Prediction {
	x := make([]float64, len(m.f.Features))
	var p Prediction
	read, listed := m.f.FeaturesByType[job.Type]
	for i, name := range m.f.Features {
		v, ok := job.Features[name]
		switch {
		case listed && !slices.Contains(read, name):
			v = math.NaN() // not read for the type
		case !ok:
			v = math.NaN()
			p.Missing = append(p.Missing, name)
		}
		x[i] = v
	}
	pool := job.Pool
	if pool == "" {
		pool = m.f.TypePools[job.Type]
	}
	if g := m.f.Groups; g != nil {
		groupBy := m.groupBy(job.Type)
		group := groupKey(job.Labels, groupBy)
		base, level := g.base(job.Type, group, pool, x)
		p.Base, p.Margin, p.Memory = math.Exp(base), math.Exp(g.Margin), math.Exp(base+g.Margin)
		if level == len(g.Levels) {
			p.Source, p.Level, p.Runs = SourceGlobal, "all runs", m.f.Runs
			if g.GlobalFloor != nil && *g.GlobalFloor > base {
				p.Floor = math.Exp(*g.GlobalFloor + g.Margin)
			}
			return p
		}
		l := &g.Levels[level]
		k, _ := l.key(nil, job.Type, group, pool, x) // the key base found
		key := string(k)
		if floor, ok := l.Floors[key]; ok && floor > base {
			p.Floor = math.Exp(floor + g.Margin)
		}
		p.Source, p.Runs = l.source(), l.Runs[key]
		p.Level, p.Group = m.describe(l, groupBy, key, job.Type)
		return p
	}
	if c, ok := m.f.ThinTypes[job.Type]; ok && m.f.Thin != nil {
		// The type's own quantile and the thin types' shared offset,
		// the sum held between the thin estimator's floor and ceiling.
		p.Source, p.Level = SourceThin, "a thin type's quantile (few runs)"
		p.Memory, p.Base, p.Margin = math.Exp(m.thin(c)), math.Exp(c), math.Exp(m.f.Thin.Offset)
		return p // the model does not keep a thin type's runs
	}
	est, src := m.estimator(job.Type, pool)
	if est == nil {
		p.Source, p.Level = SourceNone, "none: no estimator for the type, its pool or all runs"
		return p
	}
	for i, v := range x {
		x[i] = transform(v)
	}
	p.Source, p.Level = src, string(src)+" estimator ("+est.Kind+")"
	p.Memory = math.Exp(est.predictLog(x))
	p.Runs, p.Margin = est.Runs, math.Exp(est.Offset)
	// The estimator's prediction before its offset (the model holds the
	// sum between the smallest peak it saw and its ceiling).
	p.Base = p.Memory / p.Margin
	return p
}

// describe names a group level and the group of a key in it, for a job
// of the type. At its type's levels, the features the type does not read
// are left out (all its runs lack them); at its pool's, every type's runs
// meet, and a feature unset for the type is shown as "-". The dispatcher's
// raise keys groups on these names: two groups must never share one.
func (m *Model) describe(l *groupLevel, groupBy []string, key, jobType string) (level, group string) {
	level = l.By
	if l.Labels {
		level += " and " + strings.Join(groupBy, ", ")
	}
	read, listed := m.f.FeaturesByType[jobType]
	listed = listed && l.By == levelByType
	reads := func(i int) bool { return !listed || slices.Contains(read, m.f.Features[i]) }
	var names []string
	for i := range l.Features {
		if reads(i) {
			names = append(names, m.f.Features[i])
		}
	}
	if len(names) > 0 {
		level += " and " + strings.Join(names, ", ")
	}
	// The key: the category, the labels' values (after 0x1e, 0x1f
	// between them), then the features' (each after 0x1f).
	category, rest, _ := strings.Cut(key, "\x1f")
	group = category
	if l.Labels {
		typ, first, _ := strings.Cut(category, "\x1e")
		values := append([]string{first}, strings.Split(rest, "\x1f")...)
		group = typ
		for i, name := range groupBy {
			group += ", " + name + "=" + values[i]
		}
		rest = strings.Join(values[len(groupBy):], "\x1f")
	}
	if l.Features > 0 {
		for i, v := range strings.Split(rest, "\x1f") {
			if reads(i) {
				group += ", " + m.f.Features[i] + "=" + v
			}
		}
	}
	return level, group
}

// LabelsFor names the labels that key a type's groups (none: the model
// does not read labels for the type).
func (m *Model) LabelsFor(jobType string) []string { return slices.Clone(m.groupBy(jobType)) }

// FeaturesFor names the model's features a type's jobs are read by, in
// the model's order: all of Features, or those Tuning.FeaturesByType
// listed for the type.
func (m *Model) FeaturesFor(jobType string) []string {
	read, listed := m.f.FeaturesByType[jobType]
	if !listed {
		return slices.Clone(m.f.Features)
	}
	return slices.DeleteFunc(slices.Clone(m.f.Features), func(name string) bool { return !slices.Contains(read, name) })
}

// groupBy names the labels that key a type's groups.
func (m *Model) groupBy(jobType string) []string {
	if names, ok := m.f.GroupByType[jobType]; ok {
		return names
	}
	return m.f.GroupBy
}

func (m *Model) thin(c float64) float64 {
	return min(max(c+m.f.Thin.Offset, m.f.Thin.Floor), m.f.Thin.Ceiling)
}

// estimator is the estimator for a job of the type in the pool (Predict
// has taken the type's learned pool when the job named none).
func (m *Model) estimator(jobType, pool string) (*estimator, Source) {
	if e := m.f.Types[jobType]; e != nil {
		return e, SourceType
	}
	if e := m.f.Pools[pool]; e != nil && pool != "" {
		return e, SourcePool
	}
	if m.f.Global != nil {
		return m.f.Global, SourceGlobal
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
	if err := enc.Encode(&m.f); err != nil {
		return fmt.Errorf("writing model: %w", err)
	}
	return nil
}

// errIncompatible is returned for a model file of another format or
// version.
var errIncompatible = errors.New("incompatible model file")

// ReadModel decodes and checks a model file. A file that is corrupt,
// truncated or of another version is rejected with an error that says so.
func ReadModel(r io.Reader) (*Model, error) {
	var m Model
	dec := json.NewDecoder(io.LimitReader(r, 1<<30))
	if err := dec.Decode(&m.f); err != nil {
		return nil, fmt.Errorf("reading model: corrupt JSON: %w", err)
	}
	if m.f.Format != fileFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", errIncompatible, m.f.Format, fileFormat)
	}
	switch m.f.Version {
	case 2, 3:
	case 1:
		// Version 1 group models held three fixed levels.
		if m.f.Groups != nil {
			m.f.Groups.upgrade(len(m.f.Features))
		}
		m.f.Version = 2
	default:
		return nil, fmt.Errorf("%w: version %d, this reader understands 1 to %d", errIncompatible, m.f.Version, fileVersion)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("reading model: %w", err)
	}
	return &m, nil
}

// check validates a decoded model so that Predict can never fail on it.
func (m *Model) check() error {
	if !(m.f.Quantile > 0 && m.f.Quantile < 1) {
		return fmt.Errorf("quantile %v is not in (0, 1)", m.f.Quantile)
	}
	d := len(m.f.Features)
	for name, e := range m.f.Types {
		if err := e.check(d); err != nil {
			return fmt.Errorf("type %q: %w", name, err)
		}
	}
	for name, e := range m.f.Pools {
		if err := e.check(d); err != nil {
			return fmt.Errorf("pool %q: %w", name, err)
		}
	}
	if m.f.Global != nil {
		if err := m.f.Global.check(d); err != nil {
			return fmt.Errorf("global: %w", err)
		}
	}
	if m.f.Thin != nil {
		if err := m.f.Thin.check(d); err != nil {
			return fmt.Errorf("thin types: %w", err)
		}
	}
	if m.f.Groups != nil {
		if err := m.f.Groups.check(d); err != nil {
			return fmt.Errorf("groups: %w", err)
		}
	}
	for name, c := range m.f.ThinTypes {
		if !finite(c) {
			return fmt.Errorf("thin type %q: non-finite quantile", name)
		}
	}
	for group, r := range m.f.Raises {
		if !finite(r) || r < 1 {
			return fmt.Errorf("raises: group %q: %v is not a multiplier of at least 1", group, r)
		}
	}
	return nil
}

func (e *estimator) check(d int) error {
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
	case kindQuantile:
	case kindLinear:
		if e.Linear == nil || len(e.Linear.Coef) != d+1 {
			return fmt.Errorf("linear model needs %d coefficients", d+1)
		}
		for _, c := range e.Linear.Coef {
			if !finite(c) {
				return errors.New("non-finite coefficient")
			}
		}
	case kindGBT:
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
