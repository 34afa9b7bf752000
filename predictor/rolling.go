package predictor

import (
	"math"
	"sort"
)

// Candidate half-lives of the recency-weighted quantile model, in seconds;
// +Inf weighs all runs in the window equally.
var halfLives = []float64{12 * 3600, 24 * 3600, 3 * 86400, 7 * 86400, math.Inf(1)}

// checkpointEvery spaces the points at which the rolling quantile is
// recomputed during calibration.
var checkpointEvery = 7 * 86400.0

// rollingQuantile fits the recency-weighted empirical quantile model of one
// type. Its calibration replays how the model would have predicted each run
// from the runs before it: at every day's checkpoint the weighted quantile
// of the earlier runs is computed, and each run is scored against the
// checkpoint before it. The half-life with the lowest pinball loss on those
// replayed predictions wins, and its scores calibrate the offset, so the
// offset measures how far the model's estimate falls behind a drifting type.
//
// It returns the estimator (without offset), the replayed predictions and
// the index of the first replayed run.
func rollingQuantile(y, times []float64, q float64, minHistory int) (*estimator, []float64, int) {
	n := len(y)
	// The first replayed run is the first with minHistory runs before its
	// checkpoint.
	first := -1
	for i := range n {
		// times is sorted: the runs before the checkpoint are a prefix.
		if sort.SearchFloat64s(times, checkpointBefore(times[i])) >= minHistory {
			first = i
			break
		}
	}
	if first < 0 || n-first < 5 {
		return nil, nil, 0
	}
	var best *estimator
	var bestPred []float64
	bestLoss := math.Inf(1)
	values := make([]float64, 0, n)
	weights := make([]float64, 0, n)
	for _, h := range halfLives {
		pred := make([]float64, n-first)
		cache := map[float64]float64{}
		for i := first; i < n; i++ {
			cp := checkpointBefore(times[i])
			c, ok := cache[cp]
			if !ok {
				values, weights = values[:0], weights[:0]
				for j := 0; j < n && times[j] < cp; j++ {
					values = append(values, y[j])
					weights = append(weights, decay(cp-times[j], h))
				}
				c = weightedQuantile(values, weights, q)
				cache[cp] = c
			}
			pred[i-first] = c
		}
		loss := meanPinball(q, y[first:], pred)
		if loss < bestLoss {
			bestLoss, bestPred = loss, pred
			values, weights = values[:0], weights[:0]
			for j := range n {
				values = append(values, y[j])
				weights = append(weights, decay(times[n-1]-times[j], h))
			}
			best = &estimator{Kind: kindQuantile, Constant: weightedQuantile(values, weights, q), Loss: loss}
			if !math.IsInf(h, 1) {
				best.HalfLife = h
			}
		}
	}
	return best, bestPred, first
}

func checkpointBefore(t float64) float64 {
	return math.Floor(t/checkpointEvery) * checkpointEvery
}

func decay(age, halfLife float64) float64 {
	if math.IsInf(halfLife, 1) {
		return 1
	}
	return math.Exp2(-age / halfLife)
}
