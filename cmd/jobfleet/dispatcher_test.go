package main

import (
	"slices"
	"testing"

	"github.com/jobfleet/jobfleet/predictor"
)

func TestRetrainOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		features []string
		want     predictor.Options
	}{
		{"no features named: all, ordered by the model", nil, predictor.Options{FeatureOrder: predictor.FeatureOrderAuto}},
		{"features named: those, in that order", []string{"b", "a"}, predictor.Options{Features: []string{"b", "a"}, FeatureOrder: predictor.FeatureOrderGiven}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := retrainOptions(tt.features)
			if got.FeatureOrder != tt.want.FeatureOrder || !slices.Equal(got.Features, tt.want.Features) {
				t.Errorf("options %+v, want %+v", got, tt.want)
			}
		})
	}
}
