package quantreg

import (
	"math"
	"math/rand/v2"
	"testing"
)

// z90 is the standard normal distribution's 0.9 quantile.
const z90 = 1.2815515655446004

func TestLinearQuantileRegression(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	// y = 1 + 3 x + (1 + x) e: the 0.9-quantile is 1 + 3x + (1+x) z90,
	// linear with intercept 1 + z90 and slope 3 + z90.
	n := 5000
	X := make([][]float64, n)
	y := make([]float64, n)
	for i := range n {
		x := rng.Float64() * 5
		X[i] = []float64{x}
		y[i] = 1 + 3*x + (1+x)*rng.NormFloat64()
	}
	m, err := FitLinear(X, y, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := m.Coef[0], m.Coef[1]; math.Abs(a-(1+z90)) > 0.25 || math.Abs(b-(3+z90)) > 0.15 {
		t.Errorf("coef = %.3f, %.3f; want %.3f, %.3f", a, b, 1+z90, 3+z90)
	}
}

func TestQuantile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		values []float64
		q      float64
		want   float64
	}{
		{[]float64{5, 1, 4, 2, 3}, 0.9, 5},
		{[]float64{5, 1, 4, 2, 3}, 0.8, 4},
		{[]float64{5, 1, 4, 2, 3}, 0.5, 3},
		{[]float64{5, 1, 4, 2, 3}, 0, 1},
		{[]float64{7}, 0.9, 7},
	} {
		if got := Quantile(tc.values, tc.q); got != tc.want {
			t.Errorf("Quantile(%v, %v) = %v, want %v", tc.values, tc.q, got, tc.want)
		}
	}
	if got := Quantile(nil, 0.9); !math.IsNaN(got) {
		t.Errorf("no values: %v, want NaN", got)
	}
}
