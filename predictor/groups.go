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

// Group levels: which group sized a job.
const (
	levelSignature = iota
	levelType
	levelPool
	levelGlobal
	numLevels
)

var levelSources = [numLevels]Source{SourceSignature, SourceType, SourcePool, SourceGlobal}

// groupModel sizes a job by the recency-weighted quantile of the peaks of
// the most specific group of past runs it belongs to, times one margin. The
// groups, most specific first: the runs of its type that asked for exactly
// the same features (the same processors, the same time limit: usually the
// same job submitted again), the runs of its type, of its pool, and all
// runs. The margin is adapted at every retraining from how the allocations
// deployed since the last one fared (adaptive conformal inference, Gibbs
// and Candès 2021): up when more than 1-q of those jobs needed more than
// they were given, down when fewer did. See fitGroups.
type groupModel struct {
	// Signatures, Types and Pools hold each group's quantile, in log
	// space. A signature's key is its type and its features (see
	// signature).
	Signatures map[string]float64 `json:"signatures,omitempty"`
	Types      map[string]float64 `json:"types"`
	Pools      map[string]float64 `json:"pools,omitempty"`
	Global     float64            `json:"global"`
	// Margin is added to every quantile, in log space.
	Margin float64 `json:"margin"`
	// HalfLife is the recency weights' half-life, in seconds (0: none).
	HalfLife float64 `json:"half_life,omitempty"`
	// Through is the time of the newest run trained on: the runs after it
	// were sized by this model, and measure its margin at the next
	// retraining.
	Through float64 `json:"through"`
}

// signature appends a job's type and features to dst as one key. Missing
// features (NaN, negative) are written as "-".
func signature(dst []byte, jobType string, x []float64) []byte {
	dst = append(dst, jobType...)
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

// base returns a job's group quantile (log) and its level.
func (g *groupModel) base(jobType, pool string, x []float64) (float64, int) {
	if len(x) > 0 && len(g.Signatures) > 0 {
		var buf [128]byte
		if v, ok := g.Signatures[string(signature(buf[:0], jobType, x))]; ok {
			return v, levelSignature
		}
	}
	if v, ok := g.Types[jobType]; ok {
		return v, levelType
	}
	if v, ok := g.Pools[pool]; ok && pool != "" {
		return v, levelPool
	}
	return g.Global, levelGlobal
}

func (g *groupModel) predict(jobType, pool string, x []float64) (float64, Source) {
	b, level := g.base(jobType, pool, x)
	return math.Exp(b + g.Margin), levelSources[level]
}

func (g *groupModel) check() error {
	if !finite(g.Global) || !finite(g.Margin) || !finite(g.Through) {
		return errors.New("non-finite global quantile, margin or time")
	}
	for _, m := range []map[string]float64{g.Signatures, g.Types, g.Pools} {
		for name, v := range m {
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
//	margin += rate * (share of them not covered - (1 - q)) * min(n / runs per week, 4)
//
// The last factor weighs a period by its jobs, so that coverage converges
// over jobs, not over retrainings. Without a previous group model the
// margin starts at initialMargin.
func fitGroups(runs, deployed []Sample, prev *Model, opts Options) *groupModel {
	n := len(runs)
	if n == 0 {
		return nil
	}
	halfLife := opts.GroupHalfLife.Seconds()
	if halfLife == 0 {
		halfLife = chooseHalfLife(runs, opts.Quantile)
	}
	g := groupQuantiles(runs, opts.Quantile, halfLife)
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
func chooseHalfLife(runs []Sample, q float64) float64 {
	n := len(runs)
	cut := runs[n-1].Time - 7*86400
	k := sort.Search(n, func(i int) bool { return runs[i].Time >= cut })
	if k == 0 || n-k < 20 {
		return groupHalfLives[0]
	}
	best, bestLoss := groupHalfLives[0], math.Inf(1)
	for _, h := range groupHalfLives {
		g := groupQuantiles(runs[:k], q, h)
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

// groupQuantiles computes every group's recency-weighted quantile of
// time-ordered runs, without margin.
func groupQuantiles(runs []Sample, q, halfLife float64) *groupModel {
	last := runs[len(runs)-1].Time
	sigs := map[string]*weighted{}
	types := map[string]*weighted{}
	pools := map[string]*weighted{}
	var all weighted
	group := func(m map[string]*weighted, key string) *weighted {
		w := m[key]
		if w == nil {
			w = &weighted{}
			m[key] = w
		}
		return w
	}
	var buf []byte
	for _, s := range runs {
		y, w := math.Log(s.Peak), decay(last-s.Time, halfLife)
		if len(s.Features) > 0 {
			buf = signature(buf[:0], s.Type, s.Features)
			group(sigs, string(buf)).add(y, w)
		}
		group(types, s.Type).add(y, w)
		if s.Pool != "" {
			group(pools, s.Pool).add(y, w)
		}
		all.add(y, w)
	}
	quantiles := func(m map[string]*weighted) map[string]float64 {
		out := make(map[string]float64, len(m))
		for k, w := range m {
			out[k] = weightedQuantile(w.values, w.weights, q)
		}
		return out
	}
	return &groupModel{
		Signatures: quantiles(sigs), Types: quantiles(types), Pools: quantiles(pools),
		Global: weightedQuantile(all.values, all.weights, q), Through: last,
	}
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
	step := rate * (missed/count - (1 - q)) * min(count/perWeek, 4)
	return min(max(prev.Margin+step, 0), maxMargin)
}

// runsPerWeek is the mean number of runs per week of time-ordered runs.
func runsPerWeek(runs []Sample) float64 {
	weeks := (runs[len(runs)-1].Time - runs[0].Time) / (7 * 86400)
	return float64(len(runs)) / max(weeks, 1)
}
