package predictor

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestQuantileMatchesSort(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 10, 101, 1000} {
		for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 1} {
			values := make([]float64, n)
			for i := range values {
				values[i] = float64(rng.IntN(50)) // with ties
			}
			sorted := slices.Clone(values)
			slices.Sort(sorted)
			k := min(max(int(math.Ceil(q*float64(n)))-1, 0), n-1)
			if got := quantile(slices.Clone(values), q); got != sorted[k] {
				t.Errorf("quantile(n=%d, q=%v) = %v, want %v", n, q, got, sorted[k])
			}
		}
	}
}

func TestWeightedQuantile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		values  []float64
		weights []float64
		q, want float64
	}{
		{name: "equal weights", values: []float64{3, 1, 2, 4}, weights: []float64{1, 1, 1, 1}, q: 0.5, want: 2},
		{name: "heavy last", values: []float64{1, 2, 3, 10}, weights: []float64{1, 1, 1, 7}, q: 0.5, want: 10},
		{name: "heavy first", values: []float64{1, 2, 3, 10}, weights: []float64{7, 1, 1, 1}, q: 0.7, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := weightedQuantile(tt.values, tt.weights, tt.q); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestConformalOffsetCovers checks split-conformal coverage on fresh
// exchangeable samples: at least q, and not much more.
func TestConformalOffsetCovers(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	const trials, n, q = 2000, 50, 0.9
	covered := 0
	for range trials {
		scores := make([]float64, n)
		for i := range scores {
			scores[i] = rng.NormFloat64()
		}
		if rng.NormFloat64() <= conformalOffset(scores, q) {
			covered++
		}
	}
	rate := float64(covered) / trials
	// Theory: coverage is in [0.9, 0.9 + 1/51]; allow sampling noise.
	if rate < 0.88 || rate > 0.94 {
		t.Errorf("coverage %.3f, want about %.2f", rate, q)
	}
}

func TestPinball(t *testing.T) {
	t.Parallel()
	if got := pinball(0.9, 10, 8); math.Abs(got-1.8) > 1e-12 {
		t.Errorf("under-prediction loss = %v, want 1.8", got)
	}
	if got := pinball(0.9, 8, 10); math.Abs(got-0.2) > 1e-12 {
		t.Errorf("over-prediction loss = %v, want 0.2", got)
	}
}

// TestPACLevelHoldsWithConfidence checks the training-conditional
// guarantee: over many calibration sets, the coverage of the calibrated
// offset is below q no more often than 1 - confidence.
func TestPACLevelHoldsWithConfidence(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	const sets, n, fresh, q, confidence = 400, 200, 4000, 0.9, 0.9
	below := 0
	level := pacLevel(q, confidence, n)
	if level <= q {
		t.Fatalf("pacLevel = %v, want above %v", level, q)
	}
	for range sets {
		scores := make([]float64, n)
		for i := range scores {
			scores[i] = rng.NormFloat64()
		}
		off := conformalOffset(scores, level)
		covered := 0
		for range fresh {
			if rng.NormFloat64() <= off {
				covered++
			}
		}
		if float64(covered)/fresh < q {
			below++
		}
	}
	if rate := float64(below) / sets; rate > 1-confidence+0.04 {
		t.Errorf("coverage fell below %.2f in %.3f of calibration sets, want at most about %.2f", q, rate, 1-confidence)
	}
}

// TestConformalOffsetTakesPACLevelsRank: at the level pacLevel returns,
// k/(n+1), the offset is the k-th smallest score, whatever the rounding
// of (n+1)·k/(n+1).
func TestConformalOffsetTakesPACLevelsRank(t *testing.T) {
	t.Parallel()
	for n := 15; n <= 2000; n++ {
		scores := make([]float64, n)
		for i := range scores {
			scores[i] = float64(n - i) // the k-th smallest is k
		}
		for _, q := range []float64{0.8, 0.9, 0.95, 0.99} {
			level := pacLevel(q, 0.9, float64(n))
			k := math.Round(level * float64(n+1))
			if level == 1 {
				k = float64(n)
			}
			if got := conformalOffset(scores, level); got != k {
				t.Fatalf("n %d, q %v: level %v is rank %v, offset %v", n, q, level, k, got)
			}
		}
	}
}
