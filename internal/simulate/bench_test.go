package simulate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// synthetic is a trace of n jobs over 60 days: 50 types with their own
// memory and runtime scales, log-normal around them.
func synthetic(n int) *Trace {
	rng := rand.New(rand.NewPCG(7, 7))
	t := &Trace{}
	span := 60 * 86400.0
	for i := range n {
		typ := rng.IntN(50)
		mem := math.Exp(float64(typ%10)/2+rng.NormFloat64()*0.4) * (256 << 20)
		run := math.Exp(float64(typ%7)+rng.NormFloat64()*0.8) * 60
		t.Jobs = append(t.Jobs, Job{ID: fmt.Sprint(i), Type: fmt.Sprint("t", typ), Submit: span * float64(i) / float64(n), Runtime: run, Peak: mem, Requested: math.NaN()})
	}
	return t
}

// BenchmarkReplay100k replays 100,000 jobs once under each kind of policy:
// what `jobfleet simulate` does per policy and seed.
func BenchmarkReplay100k(b *testing.B) {
	tr := synthetic(100_000)
	cat, err := LoadCatalog(DefaultCostData())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, policy string }{
		{"fargate", `{name: x, platform: fargate, sizing: {method: type-max}}`},
		{"ec2-binpack-60-40-p90", `{name: x, platform: ec2, sizing: {method: type-quantile, buffer: 1.2}, capacity: {spotShare: 0.6}, checkpoint: {interval: 10m, cost: 20s}}`},
		{"ec2-one-per-node", `{name: x, platform: ec2, sizing: {method: type-max}, ec2: {packing: one-per-node}}`},
		{"ec2-binpack-predictor", `{name: x, platform: ec2, sizing: {method: predictor}, capacity: {spotShare: 0.6}}`},
	} {
		f, err := ParsePolicies([]byte("seeds: 1\npolicies: [" + tc.policy + "]"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Run(context.Background(), tr, f, cat, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
