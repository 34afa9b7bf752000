package eval

import (
	"testing"
	"time"
)

// week is the retraining interval of the tests that walk forward through
// months of synthetic runs: a day, the default, retrains seven times as often.
const week = 7 * 24 * time.Hour

// TestSyntheticWorkloads checks the predictor where the truth is known: at
// coverage of at least 0.90, it over-allocates at least 40% less than one
// fixed formula for all jobs, and every family's coverage is within 0.03
// of the target. The model alone: the dispatcher's raise after misses
// lifts coverage above the target where a family's misses run high.
func TestSyntheticWorkloads(t *testing.T) {
	t.Parallel()
	ds := Synthetic(24000, 90, 42)
	r, err := Evaluate(t.Context(), WithoutBaselines(ds), Options{ByType: true, RetrainEvery: week, OnlineRate: -1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]MethodResult{}
	for _, m := range r.Methods {
		methods[m.Name] = m
		t.Logf("%-14s coverage %.3f slack %.3f overalloc %.3f", m.Name, m.Coverage, m.Slack, m.OverallocRatio)
	}
	pred, fixed := methods[MethodPredictor], methods[MethodFixedFormula]
	if pred.Coverage < 0.90 {
		t.Errorf("predictor coverage %.3f, want at least 0.90", pred.Coverage)
	}
	if fixed.Coverage < 0.90 {
		t.Errorf("fixed-formula coverage %.3f: the comparison needs it at 0.90 too", fixed.Coverage)
	}
	if pred.OverallocRatio > 0.6*fixed.OverallocRatio {
		t.Errorf("predictor over-allocates %.3f, fixed formula %.3f: want at least 40%% less", pred.OverallocRatio, fixed.OverallocRatio)
	}
	for _, tr := range r.Types {
		for _, m := range tr.Methods {
			if m.Name != MethodPredictor {
				continue
			}
			t.Logf("family %-10s coverage %.3f over %d jobs", tr.Name, m.Coverage, tr.Jobs)
			if m.Coverage < 0.87 || m.Coverage > 0.93 {
				t.Errorf("family %s coverage %.3f, want within 0.03 of 0.90", tr.Name, m.Coverage)
			}
		}
	}
}
