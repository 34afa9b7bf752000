package predictor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
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
	By string `json:"by"`
	// Labels adds the job's GroupBy labels to its type or pool in the
	// key; Unlabeled levels size only jobs without them.
	Labels    bool `json:"labels,omitempty"`
	Unlabeled bool `json:"unlabeled,omitempty"`
	Features  int  `json:"features,omitempty"`
	// Groups maps each key to its group's quantile, in log space; Runs to
	// the runs behind it (absent from models written before it was kept).
	Groups map[string]float64 `json:"groups"`
	Runs   map[string]int     `json:"runs,omitempty"`
	// Floors maps the keys of the groups whose quantile over a week's
	// half-life is above their quantile to it, in log space.
	Floors map[string]float64 `json:"floors,omitempty"`
}

// groupLevels lists the levels of a model with n features, most specific
// first: the job's type with its first n, n-1, ..., 1 features, its type
// alone, then its pool (or no pool) with its first n, ..., 2 features
// whatever the type, and its pool alone. A single feature without the type
// says little about a job: on the Sandia trace, the runs of the same user
// sized jobs of applications never seen before worse than all runs did.
//
// With labels (Options.GroupBy), a job's labels act as a first feature
// that is a string: its type with its labels and its first n, ..., 0
// features, its type alone, its pool with its labels and its first n, ...,
// 1 features, its pool alone. A job without the labels gets the levels
// without them (marked Unlabeled, which labelled jobs skip).
func groupLevels(n int, labels bool) []groupLevel {
	var levels []groupLevel
	if labels {
		for k := n; k >= 0; k-- {
			levels = append(levels, groupLevel{By: levelByType, Labels: true, Features: k})
		}
	}
	for k := n; k >= 0; k-- {
		levels = append(levels, groupLevel{By: levelByType, Features: k, Unlabeled: labels && k > 0})
	}
	if labels {
		for k := n; k >= 1; k-- {
			levels = append(levels, groupLevel{By: levelByPool, Labels: true, Features: k})
		}
	}
	for k := n; k >= 2; k-- {
		levels = append(levels, groupLevel{By: levelByPool, Features: k, Unlabeled: labels})
	}
	return append(levels, groupLevel{By: levelByPool})
}

// applies reports whether a job of the pool with n features has a group
// at this level: not for the pool alone without a pool, nor with fewer
// features than the level keys on.
func (l *groupLevel) applies(group, pool string, n int) bool {
	return l.Features <= n && (l.By != levelByPool || l.Features > 0 || pool != "") && (!l.Labels || group != "") && (!l.Unlabeled || group == "")
}

// key appends a job's key at this level to dst. It reports false when the
// job has no group at the level (see applies).
func (l *groupLevel) key(dst []byte, jobType, group, pool string, x []float64) ([]byte, bool) {
	if !l.applies(group, pool, len(x)) {
		return dst, false
	}
	switch l.By {
	case levelByType:
		dst = append(dst, jobType...)
	case levelByPool:
		dst = append(dst, pool...)
	}
	if l.Labels {
		dst = append(append(dst, 0x1e), group...)
	}
	return appendFeatures(dst, x[:l.Features]), true
}

// appendFeatures appends feature values to a key, each after a unit
// separator. Missing values are written as "-", and -0 as 0.
func appendFeatures(dst []byte, x []float64) []byte {
	for _, v := range x {
		dst = append(dst, 0x1f)
		if missing(v) {
			dst = append(dst, '-')
			continue
		}
		dst = strconv.AppendFloat(dst, v+0, 'g', -1, 64) // +0 turns -0 into 0
	}
	return dst
}

// missing reports whether a feature value stands for no value: NaN,
// negative (as the traces mark them) or infinite.
func missing(v float64) bool {
	return math.IsNaN(v) || v < 0 || math.IsInf(v, 0)
}

// signature appends a job's type and all its features to dst as one key:
// the key of the most specific level.
func signature(dst []byte, jobType string, x []float64) []byte {
	return appendFeatures(append(dst, jobType...), x)
}

func (l *groupLevel) source() Source {
	switch {
	case l.Labels:
		return SourceLabels
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
	// GlobalFloor is all runs' quantile over a week's half-life, in log
	// space, when above Global (nil: none).
	GlobalFloor *float64 `json:"global_floor,omitempty"`
	// HalfLife is the recency weights' half-life, in seconds (0: none).
	HalfLife float64 `json:"half_life,omitempty"`
	// Through is the last end among the runs read at training, OOM-killed
	// ones included: the runs that ended after it were not read, and
	// measure its margin at the next retraining, each once, however long
	// it ran.
	Through float64 `json:"through"`

	// Version 1 files held three fixed levels; upgrade moves them into
	// Levels.
	V1Signatures map[string]float64 `json:"signatures,omitempty"`
	V1Types      map[string]float64 `json:"types,omitempty"`
	V1Pools      map[string]float64 `json:"pools,omitempty"`
}

// upgrade converts a version 1 group model, for a model of n features.
func (g *groupModel) upgrade(n int) {
	g.Levels = nil
	if n > 0 {
		g.Levels = append(g.Levels, groupLevel{By: levelByType, Features: n, Groups: g.V1Signatures})
	}
	g.Levels = append(g.Levels, groupLevel{By: levelByType, Groups: g.V1Types}, groupLevel{By: levelByPool, Groups: g.V1Pools})
	g.V1Signatures, g.V1Types, g.V1Pools = nil, nil, nil
}

// base returns a job's group quantile (log) and the index of its level,
// len(g.Levels) for all runs. Every level's key is a prefix of the job's
// type key or of its pool key, so each is written once.
func (g *groupModel) base(jobType, group, pool string, x []float64) (float64, int) {
	var typeBuf, poolBuf, typeLabelBuf, poolLabelBuf [256]byte
	var typeEnds, poolEnds, typeLabelEnds, poolLabelEnds [17]int
	typeKey, typeEnd := prefixKeys(typeBuf[:0], typeEnds[:0], jobType, x)
	poolKey, poolEnd := prefixKeys(poolBuf[:0], poolEnds[:0], pool, x)
	var typeLabelKey, poolLabelKey []byte
	var typeLabelEnd, poolLabelEnd []int
	if group != "" {
		typeLabelKey, typeLabelEnd = prefixKeys(typeLabelBuf[:0], typeLabelEnds[:0], jobType+"\x1e"+group, x)
		poolLabelKey, poolLabelEnd = prefixKeys(poolLabelBuf[:0], poolLabelEnds[:0], pool+"\x1e"+group, x)
	}
	for i := range g.Levels {
		l := &g.Levels[i]
		if !l.applies(group, pool, len(x)) {
			continue
		}
		key := typeKey[:typeEnd[l.Features]]
		switch {
		case l.By == levelByPool && l.Labels:
			key = poolLabelKey[:poolLabelEnd[l.Features]]
		case l.By == levelByPool:
			key = poolKey[:poolEnd[l.Features]]
		case l.Labels:
			key = typeLabelKey[:typeLabelEnd[l.Features]]
		}
		if v, ok := l.Groups[string(key)]; ok {
			return v, i
		}
	}
	return g.Global, len(g.Levels)
}

// prefixKeys appends to dst the key of a category with all the features,
// and to ends the length of its key with the first 0, 1, ... of them.
func prefixKeys(dst []byte, ends []int, category string, x []float64) ([]byte, []int) {
	dst = append(dst, category...)
	ends = append(ends, len(dst))
	for i := range x {
		dst = appendFeatures(dst, x[i:i+1])
		ends = append(ends, len(dst))
	}
	return dst, ends
}

// check validates a decoded group model of a model with n features.
func (g *groupModel) check(n int) error {
	if !finite(g.Global) || !finite(g.Margin) || !finite(g.Through) || (g.GlobalFloor != nil && !finite(*g.GlobalFloor)) {
		return errors.New("non-finite global quantile, floor, margin or time")
	}
	if g.V1Signatures != nil || g.V1Types != nil || g.V1Pools != nil {
		return errors.New("version 1 group fields (signatures, types, pools) in a later version's file")
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
				return fmt.Errorf("group level %d, group %q: non-finite quantile", i, name)
			}
		}
		for name, v := range l.Floors {
			if !finite(v) {
				return fmt.Errorf("group level %d, group %q: non-finite floor", i, name)
			}
		}
	}
	return nil
}

// floorHalfLife is the half-life of the floors under the group quantiles.
// A group's quantile follows what it does now; a few days of small jobs
// would bring it down to them, and the group's usual jobs that follow
// would all be killed. Its quantile over a week's half-life is a floor
// under it. The margin is calibrated on the quantile alone (the model's
// own size, Prediction.Memory), as the raise after misses is on top:
// with the floors counted, fewer runs would miss, and the margin every
// group shares would come down for the groups the floors do not lift.
// See docs/predictor-experiments.md.
const floorHalfLife = 7 * 86400

// setFloors keeps, from slow (the same groups' quantiles over
// floorHalfLife), those above the group's quantile as its floor.
func (g *groupModel) setFloors(slow *groupModel) {
	for i := range g.Levels {
		l := &g.Levels[i]
		for key, v := range slow.Levels[i].Groups {
			if q, ok := l.Groups[key]; ok && v > q {
				if l.Floors == nil {
					l.Floors = map[string]float64{}
				}
				l.Floors[key] = v
			}
		}
	}
	if v := slow.Global; v > g.Global {
		g.GlobalFloor = &v // not into slow, which is let go
	}
}

// groupHalfLives are the candidate half-lives of the group quantiles'
// recency weights, in seconds; +Inf weighs every run in the window alike.
var groupHalfLives = []float64{24 * 3600, 3 * 86400, 7 * 86400, math.Inf(1)}

// fitGroups trains the group model on time-ordered successful runs. Each
// run's weight halves every half-life of its age, so that a group's
// quantile follows what the group does now. Unless Tuning.GroupHalfLife
// fixes it, the half-life is chosen among groupHalfLives by the pinball
// loss of the groups' quantiles on the window's last week, computed from
// the runs before it: a day suits groups that move in bursts, the whole
// window groups that are stable.
//
// deployed are the runs with a recorded allocation (including those killed
// for exceeding it); with the previous model, those that ended after its
// training adapt the margin, each judged against what the model's size
// alone gave it (Sample.Predicted) when known, so that the dispatcher's
// raise after recent misses does not lower the margin:
//
//	margin += rate * (share of them not covered - (1 - q)) * min(n / runs per week, 1)
//
// The last factor weighs a period by its runs, up to a typical week's: a
// quiet period moves the margin less, and a burst of similar jobs, over
// before the next retraining could answer it, no more than a typical week.
// Without a previous group model the margin starts at initialMargin.
func fitGroups(runs, deployed []Sample, features int, prev *Model, opts Options) *groupModel {
	if len(runs) == 0 {
		return nil
	}
	grouped := newGrouping(runs, groupLevels(features, opts.labels()))
	halfLife := opts.Tuning.GroupHalfLife.Seconds()
	if halfLife == 0 {
		halfLife = grouped.chooseHalfLife(opts.Quantile)
	}
	g := grouped.quantiles(len(runs), opts.Quantile, halfLife)
	if halfLife < floorHalfLife {
		g.setFloors(grouped.quantiles(len(runs), opts.Quantile, floorHalfLife))
	}
	g.HalfLife = halfLife
	if math.IsInf(halfLife, 1) {
		g.HalfLife = 0
	}
	// Trained through the last end among all the runs read, OOM-killed
	// ones included: a killed run that ended last measures this margin,
	// not the next one's too.
	g.Through = runs[0].End()
	for _, read := range [][]Sample{runs, deployed} {
		for i := range read {
			g.Through = max(g.Through, read[i].End())
		}
	}
	g.Margin = initialMargin
	if prev != nil && prev.f.Groups != nil {
		g.Margin = adaptMargin(prev.f.Groups, deployed, runsPerWeek(runs), opts.Quantile, opts.Tuning.AdaptRate)
	}
	return g
}

// grouping holds time-ordered runs grouped at every level: the groups of
// at least minGroupRuns runs, each as the indexes of its runs in time
// order. Groups are found by sorting a hash of every run's key at each
// level, not by a map of keys: with features that never repeat, a map
// would hold a key per run per level.
type grouping struct {
	runs   []Sample
	levels []groupLevel // By and Features; no groups
	groups [][]runGroup // per level
}

type runGroup struct {
	key  string
	runs []int32
}

func newGrouping(runs []Sample, levels []groupLevel) *grouping {
	nf := 0
	for _, l := range levels {
		nf = max(nf, l.Features)
	}
	hashes := make([][]keyHash, len(levels))
	seed := maphash.MakeSeed()
	byType, byPool := make([]uint64, nf+1), make([]uint64, nf+1)
	byTypeLabels, byPoolLabels := make([]uint64, nf+1), make([]uint64, nf+1)
	for i, s := range runs {
		byType[0], byPool[0] = maphash.String(seed, s.Type), maphash.String(seed, s.Pool)
		byTypeLabels[0], byPoolLabels[0] = maphash.String(seed, s.Type+"\x1e"+s.group), maphash.String(seed, s.Pool+"\x1e"+s.group)
		for k, v := range s.Features {
			byType[k+1], byPool[k+1] = mixHash(byType[k], v), mixHash(byPool[k], v)
			byTypeLabels[k+1], byPoolLabels[k+1] = mixHash(byTypeLabels[k], v), mixHash(byPoolLabels[k], v)
		}
		for li, l := range levels {
			if !l.applies(s.group, s.Pool, len(s.Features)) {
				continue
			}
			h := byType[l.Features]
			switch {
			case l.By == levelByPool && l.Labels:
				h = byPoolLabels[l.Features]
			case l.By == levelByPool:
				h = byPool[l.Features]
			case l.Labels:
				h = byTypeLabels[l.Features]
			}
			hashes[li] = append(hashes[li], keyHash{h, int32(i)})
		}
	}
	g := &grouping{runs: runs, levels: levels, groups: make([][]runGroup, len(levels))}
	var buf []byte
	for li := range levels {
		hs := hashes[li]
		slices.SortFunc(hs, func(a, b keyHash) int {
			if c := cmp.Compare(a.hash, b.hash); c != 0 {
				return c
			}
			return cmp.Compare(a.run, b.run)
		})
		for start := 0; start < len(hs); {
			end := start + 1
			for end < len(hs) && hs[end].hash == hs[start].hash {
				end++
			}
			if end-start >= minGroupRuns {
				// Runs of one hash share a key unless two keys
				// collide; split them by key in case they do.
				var block []runGroup
				for _, kh := range hs[start:end] {
					s := &runs[kh.run]
					buf, _ = levels[li].key(buf[:0], s.Type, s.group, s.Pool, s.Features)
					j := slices.IndexFunc(block, func(r runGroup) bool { return r.key == string(buf) })
					if j < 0 {
						block = append(block, runGroup{key: string(buf)})
						j = len(block) - 1
					}
					block[j].runs = append(block[j].runs, kh.run)
				}
				for _, r := range block {
					if len(r.runs) >= minGroupRuns {
						g.groups[li] = append(g.groups[li], r)
					}
				}
			}
			start = end
		}
	}
	return g
}

type keyHash struct {
	hash uint64
	run  int32
}

// mixHash folds a feature value into a key's hash, with splitmix64's
// finalizer so that small integers spread over all 64 bits. Values that
// appendFeatures writes alike hash alike: every missing value, and -0 and 0.
func mixHash(h uint64, v float64) uint64 {
	bits := uint64(0x7ff8_0000_0000_0bad)
	if !missing(v) {
		bits = math.Float64bits(v + 0)
	}
	h = (h ^ bits) + 0x9e37_79b9_7f4a_7c15
	h = (h ^ h>>30) * 0xbf58_476d_1ce4_e5b9
	h = (h ^ h>>27) * 0x94d0_49bb_1331_11eb
	return h ^ h>>31
}

// quantiles computes the recency-weighted quantile of every group of at
// least minGroupRuns of the first n runs, at each level, without margin.
func (gr *grouping) quantiles(n int, q, halfLife float64) *groupModel {
	runs := gr.runs[:n]
	last := runs[n-1].Time
	var values, weights []float64
	add := func(s *Sample) {
		values = append(values, math.Log(s.Peak))
		weights = append(weights, decay(last-s.Time, halfLife))
	}
	for i := range runs {
		add(&runs[i])
	}
	g := &groupModel{Levels: make([]groupLevel, len(gr.levels)), Global: weightedQuantile(values, weights, q)}
	for li, l := range gr.levels {
		quantiles, counts := map[string]float64{}, map[string]int{}
		for _, r := range gr.groups[li] {
			values, weights = values[:0], weights[:0]
			for _, i := range r.runs {
				if int(i) >= n {
					break
				}
				add(&runs[i])
			}
			if len(values) >= minGroupRuns {
				quantiles[r.key] = weightedQuantile(values, weights, q)
				counts[r.key] = len(values)
			}
		}
		g.Levels[li] = groupLevel{By: l.By, Labels: l.Labels, Unlabeled: l.Unlabeled, Features: l.Features, Groups: quantiles, Runs: counts}
	}
	return g
}

// chooseHalfLife returns the candidate half-life whose group quantiles,
// computed from the runs before the last week, have the lowest pinball
// loss on the runs of that week. With too few runs on either side, it
// returns the first candidate.
func (gr *grouping) chooseHalfLife(q float64) float64 {
	best, bestLoss := groupHalfLives[0], math.Inf(1)
	for _, h := range groupHalfLives {
		loss, ok := gr.lastWeekLoss(q, h)
		if !ok {
			return groupHalfLives[0]
		}
		if loss < bestLoss {
			best, bestLoss = h, loss
		}
	}
	return best
}

// lastWeekLoss is the pinball loss on the window's last week of the group
// quantiles computed from the runs before it. It reports false when either
// side has too few runs.
func (gr *grouping) lastWeekLoss(q, halfLife float64) (float64, bool) {
	runs := gr.runs
	n := len(runs)
	cut := runs[n-1].Time - 7*86400
	k := sort.Search(n, func(i int) bool { return runs[i].Time >= cut })
	if k == 0 || n-k < 20 {
		return 0, false
	}
	g := gr.quantiles(k, q, halfLife)
	loss := 0.0
	for _, s := range runs[k:] {
		b, _ := g.base(s.Type, s.group, s.Pool, s.Features)
		loss += pinball(q, math.Log(s.Peak), b)
	}
	return loss, true
}

// orderFeatures orders n features for the group levels, most telling
// first, greedily: each next feature is the one whose order (those chosen,
// it, then the others as given) gives the levels the lowest loss on the
// window's last week, with every run in the window weighed alike. With too
// few runs to tell, the order is as given.
func orderFeatures(ctx context.Context, runs []Sample, n int, q float64, labels bool) ([]int, error) {
	order := make([]int, 0, n)
	rest := make([]int, n)
	for i := range rest {
		rest[i] = i
	}
	for len(rest) > 1 {
		best, bestLoss := 0, math.Inf(1)
		for i, f := range rest {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			candidate := append(append(slices.Clone(order), f), slices.Delete(slices.Clone(rest), i, i+1)...)
			loss, ok := newGrouping(permuteFeatures(runs, candidate), groupLevels(n, labels)).lastWeekLoss(q, math.Inf(1))
			if !ok {
				return append(order, rest...), nil
			}
			if loss < bestLoss {
				best, bestLoss = i, loss
			}
		}
		order = append(order, rest[best])
		rest = slices.Delete(rest, best, best+1)
	}
	return append(order, rest...), nil
}

// permuteFeatures returns copies of runs whose features are in the order
// given by the indexes.
func permuteFeatures(runs []Sample, order []int) []Sample {
	out := make([]Sample, len(runs))
	values := make([]float64, len(runs)*len(order))
	for i, s := range runs {
		x := values[i*len(order) : (i+1)*len(order) : (i+1)*len(order)]
		for k, j := range order {
			x[k] = s.Features[j]
		}
		s.Features = x
		out[i] = s
	}
	return out
}

// adaptMargin is the previous model's margin, moved by how the allocations
// made since it was trained fared.
func adaptMargin(prev *groupModel, deployed []Sample, perWeek, q, rate float64) float64 {
	var count, missed float64
	for _, s := range deployed {
		if s.End() <= prev.Through || math.IsNaN(s.Allocated) {
			continue
		}
		count++
		sized := s.Allocated
		if s.Predicted > 0 {
			sized = s.Predicted
		}
		// A killed run missed: it needed more than it was given, at
		// least the model's size.
		if s.Missed || s.Peak > sized {
			missed++
		}
	}
	if count == 0 {
		return prev.Margin
	}
	step := rate * (missed/count - (1 - q)) * min(count/perWeek, 1)
	return min(max(prev.Margin+step, 0), maxMargin)
}

// runsPerWeek is the mean number of runs per week over the span of the
// runs' ends: the window they were read from, however long ago the
// longest of them started.
func runsPerWeek(runs []Sample) float64 {
	first, last := math.Inf(1), math.Inf(-1)
	for _, s := range runs {
		first, last = min(first, s.End()), max(last, s.End())
	}
	weeks := (last - first) / (7 * 86400)
	return float64(len(runs)) / max(weeks, 1)
}
