package local

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/demo"
	"github.com/jobfleet/jobfleet/jobtype"
	"github.com/jobfleet/jobfleet/predictor"
)

// registryYAML is the demo's job types: the command is filled in with the
// path of the running jobfleet binary.
const registryYAML = `
pools:
  - name: cpu
    sizes: [32Mi, 48Mi, 64Mi, 96Mi, 128Mi, 160Mi, 192Mi, 256Mi, 320Mi, 384Mi, 512Mi, 768Mi, 1Gi]
types:
  - name: export
    image: local
    command: [JOBFLEET, demo-job, export]
    pool: cpu
    predictor: {features: [rows]}
    memory: {min: 32Mi, default: 256Mi, max: 1Gi}
    checkpoint: {interval: 10s, stopGrace: 5s, uploadGrace: 10s}
    maxRuntime: 5m
  - name: aggregate
    image: local
    command: [JOBFLEET, demo-job, aggregate]
    pool: cpu
    predictor: {features: [entities, density]}
    memory: {min: 32Mi, default: 512Mi, max: 1Gi}
    checkpoint: {interval: 10s, stopGrace: 5s, uploadGrace: 10s}
    maxRuntime: 5m
  - name: train
    image: local
    command: [JOBFLEET, demo-job, train]
    pool: cpu
    predictor: {features: [model_params, epochs]}
    memory: {min: 32Mi, default: 256Mi, max: 1Gi}
    checkpoint: {interval: 10s, stopGrace: 5s, uploadGrace: 10s}
    maxRuntime: 10m
`

// Registry returns the demo's job types, their commands running binary.
func Registry(binary string) (*jobtype.Registry, error) {
	return jobtype.Parse("demo job types", []byte(strings.ReplaceAll(registryYAML, "JOBFLEET", strconv.Quote(binary))))
}

// features draws the features of a demo job of a kind.
func features(rng *rand.Rand, kind string) map[string]float64 {
	logUniform := func(lo, hi float64) float64 {
		return math.Round(math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo))))
	}
	switch kind {
	case demo.Export:
		return map[string]float64{"rows": logUniform(1e5, 3e6)}
	case demo.Aggregate:
		return map[string]float64{"entities": logUniform(2e4, 4e5), "density": math.Round(2 + rng.Float64()*20)}
	case demo.Train:
		return map[string]float64{"model_params": logUniform(1e6, 4e6), "epochs": math.Round(24 + rng.Float64()*16)}
	}
	return nil
}

// bootstrap is the demo's history: earlier runs of each demo type, their
// peaks drawn from the jobs' own footprint plus runtime overhead with
// lognormal noise, so the predictor starts trained. Real runs replace them
// as the run records accumulate.
func bootstrap(now time.Time) *predictor.Dataset {
	rng := rand.New(rand.NewPCG(7, 11))
	var records []*jobfleet.RunRecord
	for _, kind := range []string{demo.Export, demo.Aggregate, demo.Train} {
		for i := range 120 {
			f := features(rng, kind)
			peak := float64(demo.Footprint(kind, f)+demo.Baseline) * math.Exp(0.08*rng.NormFloat64())
			started := now.Add(-time.Duration(120-i) * 10 * time.Minute)
			records = append(records, &jobfleet.RunRecord{
				JobID: kind, Type: kind, Features: f, Attempt: 1, Outcome: jobfleet.OutcomeSucceeded,
				PeakBytes: int64(peak), StartedAt: started, EndedAt: started.Add(time.Minute),
			})
		}
	}
	return predictor.RecordsDataset(records)
}
