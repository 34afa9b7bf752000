package eval

import (
	"math"
	"math/rand/v2"

	"github.com/jobfleet/jobfleet/predictor"
)

// family is a synthetic job family shaped like a real feature pipeline:
// its peak memory is a known function of its features times lognormal
// noise, so its true quantiles are known.
type family struct {
	Type string
	// Sigma is the standard deviation of the log noise.
	Sigma float64
	// draw returns features (by name) and the noise-free peak in bytes.
	draw func(rng *rand.Rand) (map[string]float64, float64)
}

const mib = 1 << 20

func logUniform(rng *rand.Rand, lo, hi float64) float64 {
	return math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo)))
}

// families are the synthetic workloads:
//   - export: a table export, linear in rows;
//   - aggregate: a hierarchical aggregation, quadratic in the density of
//     entity relationships;
//   - join: holds several upstream partitions at once;
//   - train: GPU training, dominated by the model's size.
var families = []family{
	{Type: "export", Sigma: 0.12, draw: func(rng *rand.Rand) (map[string]float64, float64) {
		rows := logUniform(rng, 1e4, 5e7)
		return map[string]float64{"rows": rows}, 150*mib + 60*rows
	}},
	{Type: "aggregate", Sigma: 0.2, draw: func(rng *rand.Rand) (map[string]float64, float64) {
		rows := logUniform(rng, 1e5, 2e7)
		entities := logUniform(rng, 1e3, 2e5)
		density := 1 + rng.Float64()*9 // relationships per entity
		return map[string]float64{"rows": rows, "entities": entities, "density": density},
			200*mib + 8*rows + 900*entities*density*density
	}},
	{Type: "join", Sigma: 0.25, draw: func(rng *rand.Rand) (map[string]float64, float64) {
		upstream := logUniform(rng, 1e8, 5e10)
		partitions := math.Round(logUniform(rng, 8, 512))
		rows := upstream / 200
		held := 3.0 // partitions in memory at once
		return map[string]float64{"rows": rows, "upstream_bytes": upstream, "partitions": partitions},
			300*mib + 1.3*held*upstream/partitions
	}},
	{Type: "train", Sigma: 0.08, draw: func(rng *rand.Rand) (map[string]float64, float64) {
		params := logUniform(rng, 1e7, 3e9)
		rows := logUniform(rng, 1e5, 1e8)
		// Weights, gradients and optimizer state: 16 bytes per parameter.
		return map[string]float64{"rows": rows, "model_params": params}, 2048*mib + 16*params + 2*rows
	}},
}

// syntheticFeatures is the feature order of synthetic datasets: rows, the
// one feature every family has, first.
var syntheticFeatures = []string{"rows", "entities", "density", "upstream_bytes", "partitions", "model_params"}

// Synthetic draws n runs of four synthetic job families shaped like a
// feature pipeline's (a table export linear in rows, an aggregation
// quadratic in the density of entity relationships, a join holding several
// upstream partitions, GPU training dominated by the model's size), whose
// peak is a known function of their features times lognormal noise, so
// that their true quantiles are known. The runs are spread evenly over the
// given days, in random order of families; the features are rows,
// entities, density, upstream_bytes, partitions and model_params, NaN
// where a family has none. They have no baseline: WithoutBaselines
// evaluates them.
func Synthetic(n int, days float64, seed uint64) *predictor.Dataset {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ds := &predictor.Dataset{Features: syntheticFeatures, Samples: make([]predictor.Sample, n)}
	for i := range n {
		fam := families[rng.IntN(len(families))]
		f, mean := fam.draw(rng)
		x := make([]float64, len(syntheticFeatures))
		for j, name := range syntheticFeatures {
			v, ok := f[name]
			if !ok {
				v = math.NaN()
			}
			x[j] = v
		}
		ds.Samples[i] = predictor.Sample{
			Time: float64(i) / float64(n) * days * 86400, Type: fam.Type, Features: x,
			Peak: mean * math.Exp(fam.Sigma*rng.NormFloat64()),
		}
	}
	return ds
}
