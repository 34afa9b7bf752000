package predictor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// heteroscedastic draws y = 2 x0 + 0.5 x1^2 + sigma(x0) e with e ~ N(0,1)
// and sigma growing with x0, so the true q-quantile is known:
// 2 x0 + 0.5 x1^2 + sigma(x0) z_q.
func heteroscedastic(rng *rand.Rand, n int) ([][]float64, []float64, func(x []float64, z float64) float64) {
	truth := func(x []float64, z float64) float64 {
		return 2*x[0] + 0.5*x[1]*x[1] + (0.2+0.3*x[0])*z
	}
	X := make([][]float64, n)
	y := make([]float64, n)
	for i := range n {
		x := []float64{rng.Float64() * 4, rng.Float64()*4 - 2}
		X[i] = x
		y[i] = truth(x, rng.NormFloat64())
	}
	return X, y, truth
}

const z90 = 1.2815515655446004

func TestGBTLearnsKnownQuantile(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	X, y, truth := heteroscedastic(rng, 20000)
	p := defaultGBTParams(len(y))
	p.Trees = 150
	m := fitGBT(X, y, 0.9, p)

	testX, testY, _ := heteroscedastic(rng, 5000)
	covered, absErr := 0, 0.0
	for i, x := range testX {
		f := m.predict(x)
		if testY[i] <= f {
			covered++
		}
		absErr += math.Abs(f - truth(x, z90))
	}
	coverage := float64(covered) / float64(len(testY))
	if coverage < 0.87 || coverage > 0.93 {
		t.Errorf("coverage of the fitted 0.9-quantile = %.3f", coverage)
	}
	// The noise at x0 = 2 has sigma 0.8; the fit should be well inside it.
	if mae := absErr / float64(len(testY)); mae > 0.25 {
		t.Errorf("mean distance from the true 0.9-quantile = %.3f, want < 0.25", mae)
	}
}

func TestGBTConstantTargetIsExact(t *testing.T) {
	t.Parallel()
	X := make([][]float64, 100)
	y := make([]float64, 100)
	for i := range X {
		X[i] = []float64{float64(i)}
		y[i] = 5
	}
	m := fitGBT(X, y, 0.9, defaultGBTParams(100))
	if got := m.predict([]float64{50}); math.Abs(got-5) > 1e-9 {
		t.Errorf("predict = %v, want 5", got)
	}
}
