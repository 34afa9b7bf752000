// Package testruns draws runs of known shapes for the predictor's tests.
package testruns

import (
	"math"
	"math/rand/v2"

	"github.com/jobfleet/jobfleet/predictor"
)

// Keyed draws six weeks of runs whose peak is set by their "key"
// feature (four values, within 5%), listed after a "noise" feature of 500
// values that says nothing: few runs share both, so which one a job's
// fallback keeps matters.
func Keyed() *predictor.Dataset {
	rng := rand.New(rand.NewPCG(19, 20))
	ds := &predictor.Dataset{Features: []string{"noise", "key"}}
	for i := range 6 * 7 * 200 {
		key := float64(rng.IntN(4))
		ds.Samples = append(ds.Samples, predictor.Sample{
			Time: float64(i) * 432, Type: "t", Features: []float64{float64(rng.IntN(500)), key},
			Peak: 100 * (1 + key) * (1 + 0.05*rng.Float64()),
		})
	}
	return ds
}

// Drifting draws runs of three types whose memory grows 40% a week,
// lognormal around it, with repeated features: a type's recent quantile
// lags behind what its next runs need.
func Drifting(weeks int) *predictor.Dataset {
	rng := rand.New(rand.NewPCG(11, 12))
	ds := &predictor.Dataset{Features: []string{"procs"}}
	for i := range weeks * 7 * 60 {
		t := float64(i) * 1440 // 60 runs a day
		typ := []string{"etl", "report", "train"}[rng.IntN(3)]
		base := map[string]float64{"etl": 1e9, "report": 3e8, "train": 8e9}[typ]
		grown := base * math.Pow(1.4, t/(7*86400))
		ds.Samples = append(ds.Samples, predictor.Sample{
			Time: t, Type: typ, Features: []float64{float64(int(4) << rng.IntN(2))},
			Peak: grown * math.Exp(0.3*rng.NormFloat64()),
		})
	}
	return ds
}

// WithoutFeatures drops a dataset's features.
func WithoutFeatures(ds *predictor.Dataset) *predictor.Dataset {
	for i := range ds.Samples {
		ds.Samples[i].Features = nil
	}
	ds.Features = nil
	return ds
}
