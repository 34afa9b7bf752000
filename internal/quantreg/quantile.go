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

// Groups holds the q-quantile of each group's values and of all values:
// sizing by a group's quantile, and a group never seen by all values'.
type Groups struct {
	byGroup map[string]float64
	all     float64
}

// GroupQuantiles computes the quantiles of the values each calls add
// with.
func GroupQuantiles(q float64, each func(add func(group string, v float64))) Groups {
	values := map[string][]float64{}
	var all []float64
	each(func(group string, v float64) {
		values[group] = append(values[group], v)
		all = append(all, v)
	})
	g := Groups{byGroup: make(map[string]float64, len(values)), all: Quantile(all, q)}
	for group, vs := range values {
		g.byGroup[group] = Quantile(vs, q)
	}
	return g
}

// Of is a group's quantile, or all values' for a group without any.
func (g Groups) Of(group string) float64 {
	if v, ok := g.byGroup[group]; ok {
		return v
	}
	return g.all
}
