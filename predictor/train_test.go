package predictor_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jobfleet/jobfleet/predictor"
	"github.com/jobfleet/jobfleet/predictor/eval"
	"github.com/jobfleet/jobfleet/predictor/internal/testruns"
)

// TestFeatureOrderAuto trains on runs whose telling feature comes last:
// the model puts it first, unless there are more features than it orders.
func TestFeatureOrderAuto(t *testing.T) {
	t.Parallel()
	wide := &predictor.Dataset{Features: []string{"n1", "n2", "n3", "n4", "key"}}
	for _, s := range testruns.Keyed().Samples {
		s.Features = []float64{s.Features[0], s.Features[0], s.Features[0], s.Features[0], s.Features[1]}
		wide.Samples = append(wide.Samples, s)
	}
	m, err := predictor.Train(t.Context(), wide, predictor.Options{Strategy: predictor.StrategyGroups, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderAuto}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Features(), wide.Features) || m.FeatureOrder() != predictor.FeatureOrderGiven {
		t.Errorf("five features ordered as %v by %s, want the given order", m.Features(), m.FeatureOrder())
	}
	m, err = predictor.Train(t.Context(), testruns.Keyed(), predictor.Options{Strategy: predictor.StrategyGroups, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderAuto}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Features(), []string{"key", "noise"}) {
		t.Fatalf("model features %v, want the telling one first: [key noise]", m.Features())
	}
	// The model file says the model chose the order.
	var buf bytes.Buffer
	if err := m.Write(&buf); err != nil {
		t.Fatal(err)
	}
	read, err := predictor.ReadModel(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if m.FeatureOrder() != predictor.FeatureOrderAuto || read.FeatureOrder() != predictor.FeatureOrderAuto {
		t.Errorf("feature order %s, read back %s; want %s", m.FeatureOrder(), read.FeatureOrder(), predictor.FeatureOrderAuto)
	}
	// A job of a key seen with other noise values is sized by its key's
	// runs, whatever the order of the map.
	p := m.Predict(predictor.Job{Type: "t", Features: map[string]float64{"noise": 1e6, "key": 3}})
	got, src := p.Memory, p.Source
	if src != predictor.SourceSignature || got < 400 || got > 420*1.15 {
		t.Errorf("key 3, unseen noise: %v from %s, want about 420 x 1.15 from %s", got, src, predictor.SourceSignature)
	}
}

func TestTrainContextStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, opts := range []predictor.Options{
		{Strategy: predictor.StrategyEstimators},
		{Strategy: predictor.StrategyGroups},
		{Strategy: predictor.StrategyGroups, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderAuto}},
	} {
		if _, err := predictor.Train(ctx, testruns.Keyed(), opts); !errors.Is(err, context.Canceled) {
			t.Errorf("%s, order %q: error %v, want context.Canceled", opts.Strategy, opts.Tuning.FeatureOrder, err)
		}
	}
}

func TestAutoStrategy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ds   *predictor.Dataset
		want string
	}{
		{"features that repeat", testruns.Drifting(2), predictor.StrategyGroups},
		{"features that measure size", eval.Synthetic(2000, 30, 5), predictor.StrategyEstimators},
		{"no features", testruns.WithoutFeatures(testruns.Drifting(2)), predictor.StrategyGroups},
	}
	for _, tt := range tests {
		m, err := predictor.Train(t.Context(), tt.ds, predictor.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Strategy(); got != tt.want {
			t.Errorf("%s: strategy %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestRetrainReportsStrategySwitch: auto keeps the replaced model's
// strategy while the share of repeating runs stays near the threshold,
// and a retraining that changes it says so.
func TestRetrainReportsStrategySwitch(t *testing.T) {
	t.Parallel()
	// 1,000 runs of which a share repeat an earlier run's features.
	repeating := func(share float64) *predictor.Dataset {
		ds := &predictor.Dataset{Features: []string{"rows"}}
		fresh := int(1000 * (1 - share))
		for i := range 1000 {
			rows := float64(i)
			if i >= fresh {
				rows = float64(i - fresh)
			}
			ds.Samples = append(ds.Samples, predictor.Sample{Time: float64(i) * 600, Type: "a", Features: []float64{rows}, Peak: 1e6 * (1 + rows/100)})
		}
		return ds
	}
	// 27%: just past the threshold (0.25), within the band a previous
	// model holds.
	near := repeating(0.27)
	estimators, err := predictor.Train(t.Context(), eval.Synthetic(2000, 30, 5), predictor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if estimators.Strategy() != predictor.StrategyEstimators {
		t.Fatalf("synthetic sizes: strategy %s", estimators.Strategy())
	}
	fresh, err := predictor.Train(t.Context(), near, predictor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Strategy() != predictor.StrategyGroups {
		t.Errorf("27%% repeating, trained afresh: strategy %s, want groups", fresh.Strategy())
	}
	if _, _, ok := fresh.Switched(); ok {
		t.Error("a model trained afresh reports a switch")
	}
	kept, err := estimators.Retrain(t.Context(), near, predictor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, share, ok := kept.Switched(); ok || kept.Strategy() != predictor.StrategyEstimators {
		t.Errorf("27%% repeating after an estimators model: strategy %s (switched %v, share %.3f), want estimators kept", kept.Strategy(), ok, share)
	}
	switched, err := estimators.Retrain(t.Context(), testruns.Drifting(2), predictor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	from, share, ok := switched.Switched()
	if !ok || from != predictor.StrategyEstimators || switched.Strategy() != predictor.StrategyGroups || share < 0.9 {
		t.Errorf("repeating runs after an estimators model: %s, switched from %q (%v), share %.3f", switched.Strategy(), from, ok, share)
	}
	// 22%: just below the threshold; a group model holds down to 20%.
	strategy := func(prev *predictor.Model, ds *predictor.Dataset) string {
		m, err := prev.Retrain(t.Context(), ds, predictor.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return m.Strategy()
	}
	below := repeating(0.22)
	if got := strategy(nil, below); got != predictor.StrategyEstimators {
		t.Errorf("22%% repeating, trained afresh: %s, want estimators", got)
	}
	if got := strategy(fresh, below); got != predictor.StrategyGroups {
		t.Errorf("22%% repeating after a group model: %s, want groups kept", got)
	}
	if got := strategy(fresh, repeating(0.1)); got != predictor.StrategyEstimators {
		t.Errorf("10%% repeating after a group model: %s, want estimators", got)
	}
	// Asked for explicitly, a strategy is not auto's switch.
	asked, err := estimators.Retrain(t.Context(), testruns.Drifting(2), predictor.Options{Strategy: predictor.StrategyGroups})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := asked.Switched(); ok {
		t.Error("an explicit strategy reported as a switch")
	}
}
