package main

import (
	"slices"
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
		{"features named: those, in that order", []string{"b", "a"}, nil, predictor.Options{Features: []string{"b", "a"}, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderGiven}}},
		{"labels to group by", []string{"rows"}, []string{"user"}, predictor.Options{Features: []string{"rows"}, GroupBy: []string{"user"}, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderGiven}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg, err := jobtype.Load("../../jobtype/testdata/valid.yaml")
			if err != nil {
				t.Fatal(err)
			}
			got := retrainOptions(tt.features, tt.groupBy, reg)
			if got.Tuning.FeatureOrder != tt.want.Tuning.FeatureOrder || !slices.Equal(got.Features, tt.want.Features) || !slices.Equal(got.GroupBy, tt.want.GroupBy) {
				t.Errorf("options %+v, want %+v", got, tt.want)
			}
			// The registry's per-type predictor.groupBy.
			if len(got.Tuning.GroupByType) != 1 || !slices.Equal(got.Tuning.GroupByType["feature-export"], []string{"user"}) {
				t.Errorf("group by type %v, want feature-export by user", got.Tuning.GroupByType)
			}
		})
	}
}
