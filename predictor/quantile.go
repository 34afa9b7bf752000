package predictor

import (
	"math"
	"slices"
	"sort"

	"gonum.org/v1/gonum/mathext"
)

// pinball is the quantile (pinball) loss of predicting f for y at level q.
func pinball(q, y, f float64) float64 {
	if r := y - f; r >= 0 {
		return q * r
	} else {
		return (q - 1) * r
	}
}

// meanPinball is the mean pinball loss of predictions.
func meanPinball(q float64, y, f []float64) float64 {
	if len(y) == 0 {
		return math.Inf(1)
	}
	s := 0.0
	for i := range y {
		s += pinball(q, y[i], f[i])
	}
	return s / float64(len(y))
}

// quantile returns the q-quantile of values (the smallest value with at
// least a share q of values at or below it). It reorders values.
func quantile(values []float64, q float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	k := int(math.Ceil(q*float64(len(values)))) - 1
	k = min(max(k, 0), len(values)-1)
	return selectK(values, k)
}

// selectK returns the k-th smallest value (0-based), reordering values.
func selectK(values []float64, k int) float64 {
	lo, hi := 0, len(values)-1
	for lo < hi {
		// Median of three as pivot keeps sorted input fast.
		mid := lo + (hi-lo)/2
		if values[mid] < values[lo] {
			values[mid], values[lo] = values[lo], values[mid]
		}
		if values[hi] < values[lo] {
			values[hi], values[lo] = values[lo], values[hi]
		}
		if values[hi] < values[mid] {
			values[hi], values[mid] = values[mid], values[hi]
		}
		pivot := values[mid]
		i, j := lo, hi
		for i <= j {
			for values[i] < pivot {
				i++
			}
			for values[j] > pivot {
				j--
			}
			if i <= j {
				values[i], values[j] = values[j], values[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return values[k]
		}
	}
	return values[k]
}

// weightedQuantile returns the q-quantile of values with weights: the
// smallest value whose cumulative weight reaches q of the total.
func weightedQuantile(values, weights []float64, q float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	return cumulativeWeight(values, weights, q)
}

// cumulativeWeight returns the smallest value whose cumulative weight
// reaches q of the total weight; when none does, the largest value.
func cumulativeWeight(values, weights []float64, q float64) float64 {
	idx := make([]int, len(values))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return values[idx[a]] < values[idx[b]] })
	total := 0.0
	for _, w := range weights {
		total += w
	}
	target := q * total
	cum := 0.0
	for _, i := range idx {
		cum += weights[i]
		if cum >= target-1e-12*total {
			return values[i]
		}
	}
	return values[idx[len(idx)-1]]
}

// conformalOffset is the split-conformal correction at level q: the
// ceil((n+1)q)-th smallest score. Adding it to a prediction covers a new
// exchangeable sample with probability at least q. With too few scores for
// that rank, it returns the largest score.
func conformalOffset(scores []float64, q float64) float64 {
	n := len(scores)
	if n == 0 {
		return 0
	}
	s := slices.Clone(scores)
	// The tolerance keeps a level of k/(n+1) at rank k despite rounding.
	k := int(math.Ceil(float64(n+1)*q-1e-12*float64(n+1))) - 1
	k = min(max(k, 0), n-1)
	return selectK(s, k)
}

// pacLevel returns the conformal level to calibrate at so that coverage is
// at least q with probability confidence, not only on average. With n
// exchangeable scores, the coverage of the k-th smallest score follows
// Beta(k, n+1-k) (Vovk, "Conditional validity of inductive conformal
// predictors", 2012); the smallest k whose coverage falls below q with
// probability at most 1-confidence gives the level k/(n+1). When no rank is
// enough, it returns 1 (the largest score).
func pacLevel(q, confidence, n float64) float64 {
	if confidence <= 0 || n < 1 {
		return q
	}
	k := math.Ceil((n + 1) * q)
	for ; k <= n; k++ {
		// P(coverage < q) for coverage ~ Beta(k, n+1-k).
		if mathext.RegIncBeta(k, n+1-k, q) <= 1-confidence {
			return k / (n + 1)
		}
	}
	return 1
}
