package predictor_test

import (
	"testing"

	"github.com/jobfleet/jobfleet/predictor"
)

// BenchmarkPredict measures one prediction with the largest kind of model,
// boosted trees, through the map-based API the dispatcher uses.
func BenchmarkPredict(b *testing.B) {
	m, err := predictor.Train(predictor.Synthetic(40000, 30, 3), predictor.Options{Kinds: []string{predictor.KindGBT}})
	if err != nil {
		b.Fatal(err)
	}
	e := m.Types["train"]
	if e == nil || e.Kind != predictor.KindGBT {
		b.Fatalf("the train type has no boosted model: %+v", e)
	}
	b.ReportMetric(float64(len(e.GBT.Trees)), "trees")
	features := map[string]float64{"rows": 3e6, "model_params": 7e8}
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := m.Predict("train", "", features); v <= 0 {
			b.Fatal("no prediction")
		}
	}
}

// BenchmarkTrain1M measures training on a million run records.
func BenchmarkTrain1M(b *testing.B) {
	ds := predictor.Synthetic(1_000_000, 30, 4)
	b.ResetTimer()
	for b.Loop() {
		if _, err := predictor.Train(ds, predictor.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPredictGroups measures one prediction by a group model through
// the map-based API on its slowest path: a job of an unseen type whose
// features match no group, looked up at every level before all runs size
// it.
func BenchmarkPredictGroups(b *testing.B) {
	ds := predictor.Synthetic(40000, 30, 3)
	m, err := predictor.Train(ds, predictor.Options{Strategy: predictor.StrategyGroups})
	if err != nil {
		b.Fatal(err)
	}
	features := map[string]float64{}
	for i, name := range ds.Features {
		features[name] = 1e6 + float64(i)
	}
	groups := 0
	for _, l := range m.Groups.Levels {
		groups += len(l.Groups)
	}
	b.ReportMetric(float64(groups), "groups")
	b.ReportMetric(float64(len(m.Groups.Levels)), "levels")
	b.ReportAllocs()
	for b.Loop() {
		if _, src := m.Predict("unseen", "", features); src != predictor.SourceGlobal {
			b.Fatalf("predicted from %s, want all runs", src)
		}
	}
}

// BenchmarkTrainGroups1M measures the group strategy's training on a
// million run records whose six features never repeat: its worst case,
// every run a group of its own at every level that keys on features.
func BenchmarkTrainGroups1M(b *testing.B) {
	ds := predictor.Synthetic(1_000_000, 30, 4)
	b.ResetTimer()
	for b.Loop() {
		if _, err := predictor.Train(ds, predictor.Options{Strategy: predictor.StrategyGroups}); err != nil {
			b.Fatal(err)
		}
	}
}
