package predictor

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// initialMargin is the group model's margin before any deployed allocation
// has been measured: the VPA recommender's 15% safety margin.
var initialMargin = math.Log(1.15)

// maxMargin bounds the adapted margin: 4x.
var maxMargin = math.Log(4)

// minGroupRuns is the fewest runs a group needs to size jobs: the quantile
// of one or two runs is the larger of them, not a distribution.
const minGroupRuns = 3

// What a group level's key starts with.
const (
	levelByType = "type"
	levelByPool = "pool"
)

// A groupLevel groups runs by a key: their type or their pool, followed by
// the values of their first Features features.
type groupLevel struct {
	By       string `json:"by"`
	Features int    `json:"features,omitempty"`
	// Groups maps each key to its group's quantile, in log space.
	Groups map[string]float64 `json:"groups"`
}

// groupLevels lists the levels of a model with n features, most specific
// first: the job's type with its first n, n-1, ..., 1 features, its type
// alone, then its pool (or no pool) with its first n, ..., 2 features
// whatever the type, and its pool alone. A single feature without the type
// says little about a job: on the Sandia trace, the runs of the same user
// sized jobs of applications never seen before worse than all runs did.
func groupLevels(n int) []groupLevel {
	var levels []groupLevel
	for k := n; k >= 0; k-- {
		levels = append(levels, groupLevel{By: levelByType, Features: k})
	}
	for k := n; k >= 2; k-- {
		levels = append(levels, groupLevel{By: levelByPool, Features: k})
	}
	return append(levels, groupLevel{By: levelByPool})
}

// key appends a job's key at this level to dst. It reports false when the
// job has no group at the level: no pool for the pool alone, or fewer
// features than the level keys on.
func (l *groupLevel) key(dst []byte, jobType, pool string, x []float64) ([]byte, bool) {
	if l.Features > len(x) {
		return dst, false
	}
	switch l.By {
	case levelByType:
		dst = append(dst, jobType...)
	case levelByPool:
		if pool == "" && l.Features == 0 {
			return dst, false
		}
		dst = append(dst, pool...)
	}
	return appendFeatures(dst, x[:l.Features]), true
}

// appendFeatures appends feature values to a key, each after a unit
// separator. Missing values (NaN, negative, infinite) are written as "-".
func appendFeatures(dst []byte, x []float64) []byte {
	for _, v := range x {
		dst = append(dst, 0x1f)
		if math.IsNaN(v) || v < 0 || math.IsInf(v, 0) {
			dst = append(dst, '-')
			continue
		}
		dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
	}
	return dst
}

// signature appends a job's type and all its features to dst as one key:
// the key of the most specific level.
func signature(dst []byte, jobType string, x []float64) []byte {
	return appendFeatures(append(dst, jobType...), x)
}

func (l *groupLevel) source() Source {
	switch {
	case l.By == levelByType && l.Features > 0:
		return SourceSignature
	case l.By == levelByType:
		return SourceType
	case l.Features > 0:
		return SourceFeatures
	}
	return SourcePool
}

// groupModel sizes a job by the recency-weighted quantile of the peaks of
// the most specific group of past runs it belongs to (see groupLevels),
// times one margin. A group sizes jobs once it has minGroupRuns runs. The
// margin is adapted at every retraining from how the allocations deployed
// since the last one fared (adaptive conformal inference, Gibbs and Candès
// 2021): up when more than 1-q of those jobs needed more than they were
// given, down when fewer did. See fitGroups.
type groupModel struct {
	Levels []groupLevel `json:"levels"`
	// Global is the quantile of all runs, in log space.
	Global float64 `json:"global"`
	// Margin is added to every quantile, in log space.
	Margin float64 `json:"margin"`
	// HalfLife is the recency weights' half-life, in seconds (0: none).
	HalfLife float64 `json:"half_life,omitempty"`
	// Through is the time of the newest run trained on: the runs after it
	// were sized by this model, and measure its margin at the next
	// retraining.
	Through float64 `json:"through"`

	// Version 1 files held three fixed levels; upgrade moves them into
	// Levels.
	V1Signatures map[string]float64 `json:"signatures,omitempty"`
	V1Types      map[string]float64 `json:"types,omitempty"`
	V1Pools      map[string]float64 `json:"pools,omitempty"`
}

// upgrade converts a version 1 group model, for a model of n features.
func (g *groupModel) upgrade(n int) {
	g.Levels = []groupLevel{
		{By: levelByType, Features: n, Groups: g.V1Signatures},
		{By: levelByType, Groups: g.V1Types},
		{By: levelByPool, Groups: g.V1Pools},
	}
	g.V1Signatures, g.V1Types, g.V1Pools = nil, nil, nil
}

// base returns a job's group quantile (log) and the index of its level,
// len(g.Levels) for all runs.
func (g *groupModel) base(jobType, pool string, x []float64) (float64, int) {
	var buf [128]byte
	for i := range g.Levels {
		l := &g.Levels[i]
		k, ok := l.key(buf[:0], jobType, pool, x)
		if !ok {
			continue
		}
		if v, ok := l.Groups[string(k)]; ok {
			return v, i
		}
	}
	return g.Global, len(g.Levels)
}

func (g *groupModel) predict(jobType, pool string, x []float64) (float64, Source) {
	b, level := g.base(jobType, pool, x)
	src := SourceGlobal
	if level < len(g.Levels) {
		src = g.Levels[level].source()
	}
	return math.Exp(b + g.Margin), src
}

// check validates a decoded group model of a model with n features.
func (g *groupModel) check(n int) error {
	if !finite(g.Global) || !finite(g.Margin) || !finite(g.Through) {
		return errors.New("non-finite global quantile, margin or time")
	}
	for i, l := range g.Levels {
		if l.By != levelByType && l.By != levelByPool {
			return fmt.Errorf("group level %d: by %q, want %q or %q", i, l.By, levelByType, levelByPool)
		}
		if l.Features < 0 || l.Features > n {
			return fmt.Errorf("group level %d: keys on %d features, the model has %d", i, l.Features, n)
		}
		for name, v := range l.Groups {
			if !finite(v) {
				return fmt.Errorf("group %q: non-finite quantile", name)
			}
		}
	}
	return nil
}

// weighted collects weighted values.
type weighted struct{ values, weights []float64 }

func (w *weighted) add(v, weight float64) {
	w.values = append(w.values, v)
	w.weights = append(w.weights, weight)
}

// groupHalfLives are the candidate half-lives of the group quantiles'
// recency weights, in seconds; +Inf weighs every run in the window alike.
var groupHalfLives = []float64{24 * 3600, 3 * 86400, 7 * 86400, math.Inf(1)}

// fitGroups trains the group model on time-ordered successful runs. Each
// run's weight halves every half-life of its age, so that a group's
// quantile follows what the group does now. Unless Options.GroupHalfLife
// fixes it, the half-life is chosen among groupHalfLives by the pinball
// loss of the groups' quantiles on the window's last week, computed from
// the runs before it: a day suits groups that move in bursts, the whole
// window groups that are stable.
//
// deployed are the runs with a recorded allocation (including those killed
// for exceeding it); with the previous model, those after its training
// adapt the margin:
//
//	margin += rate * (share of them not covered - (1 - q)) * min(n / runs per week, 1)
//
// The last factor weighs a period by its runs, up to a typical week's: a
// quiet period moves the margin less, and a burst of similar jobs, over
// before the next retraining could answer it, no more than a typical week.
// Without a previous group model the margin starts at initialMargin.
func fitGroups(runs, deployed []Sample, prev *Model, opts Options) *groupModel {
	n := len(runs)
	if n == 0 {
		return nil
	}
	levels := groupLevels(len(runs[0].Features))
	halfLife := opts.GroupHalfLife.Seconds()
	if halfLife == 0 {
		halfLife = chooseHalfLife(runs, opts.Quantile, levels)
	}
	g := groupQuantiles(runs, opts.Quantile, halfLife, levels)
	g.HalfLife = halfLife
	if math.IsInf(halfLife, 1) {
		g.HalfLife = 0
	}
	g.Margin = initialMargin
	if prev != nil && prev.Groups != nil {
		g.Margin = adaptMargin(prev.Groups, deployed, runsPerWeek(runs), opts.Quantile, opts.AdaptRate)
	}
	return g
}

// chooseHalfLife returns the candidate half-life whose group quantiles,
// computed from the runs before the last week, have the lowest pinball
// loss on the runs of that week. With too few runs on either side, it
// returns the first candidate.
func chooseHalfLife(runs []Sample, q float64, levels []groupLevel) float64 {
	n := len(runs)
	cut := runs[n-1].Time - 7*86400
	k := sort.Search(n, func(i int) bool { return runs[i].Time >= cut })
	if k == 0 || n-k < 20 {
		return groupHalfLives[0]
	}
	best, bestLoss := groupHalfLives[0], math.Inf(1)
	for _, h := range groupHalfLives {
		g := groupQuantiles(runs[:k], q, h, levels)
		loss := 0.0
		for _, s := range runs[k:] {
			b, _ := g.base(s.Type, s.Pool, s.Features)
			loss += pinball(q, math.Log(s.Peak), b)
		}
		if loss < bestLoss {
			best, bestLoss = h, loss
		}
	}
	return best
}

// groupQuantiles computes the recency-weighted quantile of every group of
// at least minGroupRuns time-ordered runs at each level, without margin.
func groupQuantiles(runs []Sample, q, halfLife float64, levels []groupLevel) *groupModel {
	last := runs[len(runs)-1].Time
	groups := make([]map[string]*weighted, len(levels))
	for i := range groups {
		groups[i] = map[string]*weighted{}
	}
	var all weighted
	var buf []byte
	for _, s := range runs {
		y, w := math.Log(s.Peak), decay(last-s.Time, halfLife)
		for i := range levels {
			var ok bool
			if buf, ok = levels[i].key(buf[:0], s.Type, s.Pool, s.Features); !ok {
				continue
			}
			g := groups[i][string(buf)]
			if g == nil {
				g = &weighted{}
				groups[i][string(buf)] = g
			}
			g.add(y, w)
		}
		all.add(y, w)
	}
	g := &groupModel{Levels: make([]groupLevel, len(levels)), Global: weightedQuantile(all.values, all.weights, q), Through: last}
	for i, l := range levels {
		quantiles := make(map[string]float64, len(groups[i]))
		for k, w := range groups[i] {
			if len(w.values) >= minGroupRuns {
				quantiles[k] = weightedQuantile(w.values, w.weights, q)
			}
		}
		g.Levels[i] = groupLevel{By: l.By, Features: l.Features, Groups: quantiles}
	}
	return g
}

// adaptMargin is the previous model's margin, moved by how the allocations
// made since it was trained fared.
func adaptMargin(prev *groupModel, deployed []Sample, perWeek, q, rate float64) float64 {
	var count, missed float64
	for _, s := range deployed {
		if s.Time <= prev.Through || math.IsNaN(s.Allocated) {
			continue
		}
		count++
		if s.Missed || s.Peak > s.Allocated {
			missed++
		}
	}
	if count == 0 {
		return prev.Margin
	}
	step := rate * (missed/count - (1 - q)) * min(count/perWeek, 1)
	return min(max(prev.Margin+step, 0), maxMargin)
}

// runsPerWeek is the mean number of runs per week of time-ordered runs.
func runsPerWeek(runs []Sample) float64 {
	weeks := (runs[len(runs)-1].Time - runs[0].Time) / (7 * 86400)
	return float64(len(runs)) / max(weeks, 1)
}
