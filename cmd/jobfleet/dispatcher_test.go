package main

import (
	"slices"
	"testing"

	"github.com/jobfleet/jobfleet/predictor"
)

func TestRetrainOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		features, groupBy []string
		want              predictor.Options
	}{
		{"no features named: all, ordered by the model", nil, nil, predictor.Options{FeatureOrder: predictor.FeatureOrderAuto}},
		{"features named: those, in that order", []string{"b", "a"}, nil, predictor.Options{Features: []string{"b", "a"}, FeatureOrder: predictor.FeatureOrderGiven}},
		{"labels to group by", []string{"rows"}, []string{"user"}, predictor.Options{Features: []string{"rows"}, FeatureOrder: predictor.FeatureOrderGiven, GroupBy: []string{"user"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := retrainOptions(tt.features, tt.groupBy)
			if got.FeatureOrder != tt.want.FeatureOrder || !slices.Equal(got.Features, tt.want.Features) || !slices.Equal(got.GroupBy, tt.want.GroupBy) {
				t.Errorf("options %+v, want %+v", got, tt.want)
			}
		})
	}
}
