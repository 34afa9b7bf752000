package predictor

import (
	"math"
)

// levels are the calibration levels a type may be moved to.
var levels = []float64{0.5, 0.6, 0.7, 0.75, 0.8, 0.83, 0.86, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99}

// balanceLevels calibrates each type at its own level so that the fleet's
// coverage meets the target with the least memory. Covering a type whose
// peaks swing widely costs far more memory per covered run than covering a
// steady one; the levels are set where the marginal memory per covered run
// is the same for every type (a Lagrange multiplier, found by bisection),
// each within MaxShortfall below the target. Coverage and cost are measured
// on the replayed, out-of-sample predictions that calibrated the types.
func balanceLevels(m *Model, opts Options, shares groupShares) {
	type option struct{ offset, cov, cost float64 }
	type typeLevels struct {
		est     *Estimator
		weight  float64 // the estimator's share of upcoming runs
		options []option
	}
	var types []typeLevels
	participants := map[*Estimator]float64{}
	typeRuns := 0.0
	for _, e := range m.Types {
		if e.cal != nil {
			typeRuns += float64(len(e.cal.scores))
		}
	}
	for _, e := range m.Types {
		if e.cal != nil && typeRuns > 0 {
			participants[e] = shares.typed * float64(len(e.cal.scores)) / typeRuns
		}
	}
	if m.Thin != nil {
		participants[m.Thin] = shares.thin
	}
	if m.Global != nil {
		participants[m.Global] = shares.unseen
	}
	for e, weight := range participants {
		c := e.cal
		if c == nil || len(c.scores) == 0 || weight == 0 {
			continue
		}
		tl := typeLevels{est: e, weight: weight}
		for _, level := range levels {
			if level < opts.Quantile-opts.MaxShortfall-1e-9 {
				continue
			}
			off := weightedConformalOffset(c.scores, c.weights, level)
			covered := 0
			for _, s := range c.scores {
				if s <= off+1e-12 {
					covered++
				}
			}
			// Cost per run: the allocation this level gives now.
			alloc := math.Exp(min(c.base+off, c.maxY+opts.ceilingMargin()))
			tl.options = append(tl.options, option{offset: off, cov: float64(covered) / float64(len(c.scores)), cost: alloc})
		}
		if len(tl.options) > 0 {
			types = append(types, tl)
		}
	}
	if len(types) == 0 {
		return
	}
	choose := func(lambda float64) (coverage float64, picks []int) {
		picks = make([]int, len(types))
		var covered, total float64
		for i, t := range types {
			best, bestVal := 0, math.Inf(1)
			for k, o := range t.options {
				if v := o.cost - lambda*o.cov; v < bestVal {
					best, bestVal = k, v
				}
			}
			picks[i] = best
			covered += t.weight * t.options[best].cov
			total += t.weight
		}
		return covered / total, picks
	}
	// Find the smallest multiplier that reaches the target coverage.
	lo, hi := 0.0, 1.0
	for {
		if cov, _ := choose(hi); cov >= opts.Quantile || hi > 1e30 {
			break
		}
		hi *= 4
	}
	for range 100 {
		mid := (lo + hi) / 2
		if cov, _ := choose(mid); cov >= opts.Quantile {
			hi = mid
		} else {
			lo = mid
		}
	}
	_, picks := choose(hi)
	for i, t := range types {
		o := t.options[picks[i]]
		t.est.Offset = o.offset
		t.est.Coverage = o.cov
		t.est.Ceiling = t.est.cal.maxY + opts.ceilingMargin()
	}
}
