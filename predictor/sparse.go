package predictor

import (
	"math"
	"slices"
	"sort"
)

// fitSparse builds the estimator for types with too few runs for a model
// of their own: each such type's own empirical quantile, plus one offset
// calibrated on all of them together. The offset comes from replays: every
// run of a thin type is scored against the quantile of that type's runs
// before the last retraining checkpoint, as a deployed model would have
// predicted it. The scores of all thin types together calibrate how far a
// type's next runs exceed the quantile of its few past ones.
func fitSparse(byType map[string][]Sample, minRuns int, q, confidence, ceilingMargin float64) (map[string]float64, *estimator) {
	constants := map[string]float64{}
	var scores []float64
	var maxY float64 = math.Inf(-1)
	minY := math.Inf(1)
	for typ, ss := range byType {
		if len(ss) >= minRuns {
			continue
		}
		y := make([]float64, len(ss))
		times := make([]float64, len(ss))
		for i, s := range ss {
			y[i], times[i] = math.Log(s.Peak), s.Time
			maxY, minY = max(maxY, y[i]), min(minY, y[i])
		}
		constants[typ] = quantile(slices.Clone(y), q)
		for i := range ss {
			k := sort.SearchFloat64s(times, checkpointBefore(times[i]))
			if k == 0 {
				continue
			}
			scores = append(scores, y[i]-quantile(slices.Clone(y[:k]), q))
		}
	}
	if len(constants) == 0 || len(scores) < 20 {
		return nil, nil
	}
	level := pacLevel(q, confidence, float64(len(scores)))
	off := conformalOffset(scores, level)
	covered := 0
	for _, s := range scores {
		if s <= off+1e-12 {
			covered++
		}
	}
	return constants, &estimator{
		Kind: kindQuantile, Offset: off, Runs: len(scores), Level: level,
		Coverage: float64(covered) / float64(len(scores)),
		Floor:    minY, Ceiling: maxY + ceilingMargin,
	}
}
