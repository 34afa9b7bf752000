package predictor

import "testing"

// TestAverageCoverageConfidence: a negative confidence calibrates for
// average coverage, however often the defaults are applied (Evaluate and
// Train both apply them).
func TestAverageCoverageConfidence(t *testing.T) {
	if got := (Options{Confidence: -1}).withDefaults().withDefaults().Confidence; got >= 0 {
		t.Fatalf("confidence after the defaults twice = %v, want negative", got)
	}
	ds := Synthetic(4000, 30, 7)
	for _, tc := range []struct {
		confidence float64
		above      bool // whether levels rise above the quantile
	}{{-1, false}, {0.9, true}} {
		m, err := Train(ds, Options{Quantile: 0.9, Confidence: tc.confidence})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Types) == 0 {
			t.Fatal("no type estimators")
		}
		for name, e := range m.Types {
			if above := e.Level > 0.9+1e-9; above != tc.above {
				t.Errorf("confidence %v: type %s level %v", tc.confidence, name, e.Level)
			}
		}
	}
}
