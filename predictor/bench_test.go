package predictor_test

import (
	"math"
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
// the map-based API, found at its most specific group: a type with the same
// features, among one group per training run.
func BenchmarkPredictGroups(b *testing.B) {
	ds := predictor.Synthetic(40000, 30, 3)
	m, err := predictor.Train(ds, predictor.Options{Strategy: predictor.StrategyGroups})
	if err != nil {
		b.Fatal(err)
	}
	s := ds.Samples[len(ds.Samples)/2]
	features := map[string]float64{}
	for i, name := range ds.Features {
		if !math.IsNaN(s.Features[i]) {
			features[name] = s.Features[i]
		}
	}
	b.ReportMetric(float64(len(m.Groups.Signatures)), "groups")
	b.ReportAllocs()
	for b.Loop() {
		if _, src := m.Predict(s.Type, "", features); src != predictor.SourceSignature {
			b.Fatalf("predicted from %s, want its signature group", src)
		}
	}
}
