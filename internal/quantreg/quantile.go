package quantreg

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
)

// Quantile is the empirical q-quantile of values: the smallest value with
// at least a share q of them at or below it; NaN for no values. It sorts
// values.
func Quantile(values []float64, q float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	slices.Sort(values)
	return stat.Quantile(q, stat.Empirical, values, nil)
}
