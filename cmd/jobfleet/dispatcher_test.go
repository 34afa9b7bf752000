package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/jobfleet/jobfleet/jobtype"
	"github.com/jobfleet/jobfleet/predictor"
)

func TestRetrainOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		features, groupBy []string
		want              predictor.Options
	}{
		{"no features named: all, ordered by the model", nil, nil, predictor.Options{Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderAuto}}},
		{"features named: those, in that order", []string{"rows", "model_params", "a"}, nil, predictor.Options{Features: []string{"rows", "model_params", "a"}, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderGiven}}},
		{"labels to group by", []string{"model_params", "rows"}, []string{"user"}, predictor.Options{Features: []string{"model_params", "rows"}, GroupBy: []string{"user"}, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderGiven}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg, err := jobtype.Load("../../jobtype/testdata/valid.yaml")
			if err != nil {
				t.Fatal(err)
			}
			got, err := retrainOptions(tt.features, tt.groupBy, reg)
			if err != nil {
				t.Fatal(err)
			}
			if got.Tuning.FeatureOrder != tt.want.Tuning.FeatureOrder || !slices.Equal(got.Features, tt.want.Features) || !slices.Equal(got.GroupBy, tt.want.GroupBy) {
				t.Errorf("options %+v, want %+v", got, tt.want)
			}
			// The registry's per-type predictor.groupBy.
			if len(got.Tuning.GroupByType) != 1 || !slices.Equal(got.Tuning.GroupByType["feature-export"], []string{"user"}) {
				t.Errorf("group by type %v, want feature-export by user", got.Tuning.GroupByType)
			}
			// And its per-type features.
			if f := got.Tuning.FeaturesByType; len(f) != 2 || !slices.Equal(f["feature-export"], []string{"rows"}) || !slices.Equal(f["train-ranker"], []string{"rows", "model_params"}) {
				t.Errorf("features by type %v, want feature-export's and train-ranker's", f)
			}
		})
	}
}

// A type's feature that --retrain-features leaves out would never be
// read: the dispatcher refuses to start, naming the flag, the type and
// the feature.
func TestRetrainOptionsTypeFeatureNotRetrained(t *testing.T) {
	t.Parallel()
	reg, err := jobtype.Load("../../jobtype/testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = retrainOptions([]string{"rows"}, nil, reg)
	want := `--retrain-features rows: type "train-ranker" of --registry lists feature "model_params", which the model would not read`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
}

// A model trained before a registry edit, or elsewhere, reads other
// features for a type than the registry lists: the dispatcher warns at
// start of each such type.
func TestFeatureDrift(t *testing.T) {
	t.Parallel()
	reg, err := jobtype.Load("../../jobtype/testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ds := &predictor.Dataset{Features: []string{"model_params", "rows"}}
	for i := range 60 {
		for _, typ := range []string{"feature-export", "train-ranker", "report"} {
			ds.Samples = append(ds.Samples, predictor.Sample{Time: float64(i * 60), Type: typ, Features: []float64{float64(i % 3), float64(i % 2)}, Peak: 100})
		}
	}
	train := func(byType map[string][]string) *predictor.Model {
		t.Helper()
		m, err := predictor.Train(t.Context(), ds, predictor.Options{Tuning: predictor.Tuning{FeaturesByType: byType}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// As the registry says: export reads rows; train-ranker both.
	if d := featureDrift(reg, train(map[string][]string{"feature-export": {"rows"}, "train-ranker": {"rows", "model_params"}})); len(d) != 0 {
		t.Errorf("drift %+v for a model trained as the registry lists", d)
	}
	// Trained without the lists: export reads both, against its [rows].
	d := featureDrift(reg, train(nil))
	if len(d) != 1 || d[0].Type != "feature-export" || !slices.Equal(d[0].Model, []string{"model_params", "rows"}) || !slices.Equal(d[0].Registry, []string{"rows"}) {
		t.Errorf("drift %+v, want feature-export reading both against its [rows]", d)
	}
	// A type that lists none reads every feature by the registry.
	d = featureDrift(reg, train(map[string][]string{"feature-export": {"rows"}, "train-ranker": {"rows", "model_params"}, "report": {"rows"}}))
	if len(d) != 1 || d[0].Type != "report" || !slices.Equal(d[0].Model, []string{"rows"}) || !slices.Equal(d[0].Registry, []string{"model_params", "rows"}) {
		t.Errorf("drift %+v, want report reading [rows] against every feature", d)
	}
}
