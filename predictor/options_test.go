package predictor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAverageCoverageConfidence: a negative confidence calibrates for
// average coverage, however often the defaults are applied; the default
// calibrates every estimator above the quantile.
func TestAverageCoverageConfidence(t *testing.T) {
	if got := (Options{Tuning: Tuning{Confidence: -1}}).withDefaults().withDefaults().Tuning.Confidence; got >= 0 {
		t.Fatalf("confidence after the defaults twice = %v, want negative", got)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	ds := &Dataset{Features: []string{"rows"}}
	for i := range 3000 {
		rows := math.Exp(10 + 4*rng.Float64())
		ds.Samples = append(ds.Samples, Sample{
			Time: float64(i) * 900, Type: []string{"a", "b", "c"}[i%3], Features: []float64{rows},
			Peak: (1e8 + 50*rows) * math.Exp(0.2*rng.NormFloat64()),
		})
	}
	for _, tc := range []struct {
		confidence float64
		above      bool // whether levels rise above the quantile
	}{{-1, false}, {0, true}} {
		m, err := Train(t.Context(), ds, Options{Quantile: 0.9, Strategy: StrategyEstimators, Tuning: Tuning{Confidence: tc.confidence}})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.f.Types) != 3 {
			t.Fatalf("%d type estimators, want 3", len(m.f.Types))
		}
		for name, e := range m.f.Types {
			if above := e.Level > 0.9+1e-9; above != tc.above {
				t.Errorf("confidence %v: type %s level %v", tc.confidence, name, e.Level)
			}
		}
	}
}
