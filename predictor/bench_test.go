package predictor_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jobfleet/jobfleet/predictor"
	"github.com/jobfleet/jobfleet/predictor/eval"
)

// BenchmarkPredict measures one prediction by a type's estimator, as the
// dispatcher asks for it.
func BenchmarkPredict(b *testing.B) {
	m, err := predictor.Train(b.Context(), eval.Synthetic(40000, 30, 3), predictor.Options{})
	if err != nil {
		b.Fatal(err)
	}
	job := predictor.Job{Type: "train", Features: map[string]float64{"rows": 3e6, "model_params": 7e8}}
	if p := m.Predict(job); p.Source != predictor.SourceType || !strings.Contains(p.Level, "(gbt)") {
		b.Fatalf("the train type has no boosted-tree estimator of its own: %+v", p)
	}
	b.ReportAllocs()
	for b.Loop() {
		if p := m.Predict(job); p.Memory <= 0 {
			b.Fatal("no prediction")
		}
	}
}

// BenchmarkTrain1M measures training on a million run records.
func BenchmarkTrain1M(b *testing.B) {
	ds := eval.Synthetic(1_000_000, 30, 4)
	b.ResetTimer()
	for b.Loop() {
		if _, err := predictor.Train(b.Context(), ds, predictor.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// repeatingRuns draws n runs over 30 days whose features repeat, as
// requests do: 200 types, 2,000 users, processors a power of two up to 256
// and one of eight time limits, with a lognormal peak per type.
func repeatingRuns(n int) *predictor.Dataset {
	rng := rand.New(rand.NewPCG(21, 22))
	ds := &predictor.Dataset{Features: []string{"user", "procs", "time_limit"}, Samples: make([]predictor.Sample, n)}
	for i := range ds.Samples {
		typ := rng.IntN(200)
		ds.Samples[i] = predictor.Sample{
			Time: float64(i) * 30 * 86400 / float64(n), Type: fmt.Sprintf("type-%d", typ),
			Features: []float64{float64(rng.IntN(2000)), float64(int(1) << rng.IntN(9)), float64(900 * (1 + rng.IntN(8)))},
			Peak:     float64(1+typ) * 1e8 * math.Exp(0.5*rng.NormFloat64()),
		}
	}
	return ds
}

// BenchmarkPredictGroups measures one prediction by a group model through
// the map-based API on its slowest path: a job of an unseen type whose
// features match no group, looked up at every level before all runs size
// it.
func BenchmarkPredictGroups(b *testing.B) {
	m, err := predictor.Train(b.Context(), repeatingRuns(200_000), predictor.Options{Strategy: predictor.StrategyGroups})
	if err != nil {
		b.Fatal(err)
	}
	job := predictor.Job{Type: "unseen", Features: map[string]float64{"user": 1e6, "procs": 3, "time_limit": 1}}
	b.ReportAllocs()
	for b.Loop() {
		if p := m.Predict(job); p.Source != predictor.SourceGlobal {
			b.Fatalf("predicted from %s, want all runs", p.Source)
		}
	}
}

// BenchmarkTrainGroups1M measures the group strategy's training on a
// million runs whose features repeat, so that every level holds many
// groups of several runs.
func BenchmarkTrainGroups1M(b *testing.B) {
	ds := repeatingRuns(1_000_000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := predictor.Train(b.Context(), ds, predictor.Options{Strategy: predictor.StrategyGroups}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrainGroupsOrdered1M is BenchmarkTrainGroups1M with the model
// ordering the three features itself.
func BenchmarkTrainGroupsOrdered1M(b *testing.B) {
	ds := repeatingRuns(1_000_000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := predictor.Train(b.Context(), ds, predictor.Options{Strategy: predictor.StrategyGroups, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderAuto}}); err != nil {
			b.Fatal(err)
		}
	}
}
