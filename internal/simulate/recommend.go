package simulate

import "math"

// YoungInterval is Young's first-order optimum checkpoint interval,
// sqrt(2 delta M), for checkpoint cost delta and mean time between
// interruptions m (seconds).
func YoungInterval(delta, m float64) float64 { return math.Sqrt(2 * delta * m) }

// DalyInterval is Daly's higher-order optimum checkpoint interval (J. T.
// Daly, "A higher order estimate of the optimum checkpoint interval for
// restart dumps", FGCS 22(3), 2006): sqrt(2 delta M) [1 + sqrt(delta/2M)/3
// + (delta/2M)/9] - delta for delta < 2M, else M.
func DalyInterval(delta, m float64) float64 {
	if delta >= 2*m {
		return m
	}
	x := delta / (2 * m)
	return math.Sqrt(2*delta*m)*(1+math.Sqrt(x)/3+x/9) - delta
}

// DalyWallTime is Daly's expected time to finish work seconds of work in
// segments of tau, each followed by a checkpoint of delta, with restart
// time r after each of the exponential interruptions of mean m:
// m e^(r/m) (e^((tau+delta)/m) - 1) work/tau.
func DalyWallTime(work, tau, delta, r, m float64) float64 {
	return m * math.Exp(r/m) * (math.Exp((tau+delta)/m) - 1) * work / tau
}

// Recommendation is the checkpoint interval that minimises a job type's
// expected cost under one policy's spot capacity.
type Recommendation struct {
	Policy string `json:"policy"`
	Type   string `json:"type"`
	Jobs   int    `json:"jobs"`
	// MeanRuntime of the type's jobs, seconds.
	MeanRuntime float64 `json:"mean_runtime_seconds"`
	// Rate is the interruption rate per hour of the spot nodes the type's
	// attempts ran on; MTBI its inverse, seconds.
	Rate float64 `json:"interruptions_per_hour"`
	MTBI float64 `json:"mean_time_between_interruptions_seconds"`
	// Cost is the type's checkpoint cost (seconds); Young and Daly the
	// intervals (seconds).
	Cost  float64 `json:"checkpoint_cost_seconds"`
	Young float64 `json:"young_interval_seconds"`
	Daly  float64 `json:"daly_interval_seconds"`
	// Periodic is false when Daly's interval is longer than the type's
	// mean runtime: periodic checkpoints would cost more than they save,
	// and the checkpoint on the interruption notice is enough.
	Periodic bool `json:"periodic"`
}

// Recommend computes, for every policy that runs jobs on spot capacity and
// every job type whose attempts ran there (costliest first), Daly's checkpoint interval from
// the type's checkpoint cost and the interruption rate its spot nodes had.
func Recommend(f *File, rep *Report) []Recommendation {
	var out []Recommendation
	for i, res := range rep.Policies {
		p := &f.Policies[i]
		if p.Capacity.SpotShare == 0 {
			continue
		}
		for _, g := range res.ByType {
			rate := res.spotRate[g.Key]
			if rate <= 0 {
				continue
			}
			m := 3600 / rate
			delta := p.Checkpoint.cost(g.Key).Seconds()
			r := Recommendation{Policy: p.Name, Type: g.Key, Jobs: g.Jobs, MeanRuntime: g.MeanRuntime, Rate: rate, MTBI: m, Cost: delta}
			if delta > 0 {
				r.Young, r.Daly = YoungInterval(delta, m), DalyInterval(delta, m)
				r.Periodic = r.Daly < g.MeanRuntime
			}
			out = append(out, r)
		}
	}
	return out
}
