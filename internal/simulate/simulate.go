// Package simulate replays a trace of jobs under policies (memory sizing,
// OOM reruns, spot share and interruptions, checkpoints, Fargate or
// Karpenter EC2 nodes) and reports what each would cost and risk. It is
// deterministic: the same trace, policies and seeds give the same report.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// Options configure a simulation.
type Options struct {
	// Warmup is the start of the trace that is history only: learning
	// sizing methods train on it, no policy is charged for it. Negative:
	// none; zero: the longest sizing window of a learning policy.
	Warmup Duration
	// LabelKey names the label costs are also broken down by.
	LabelKey string
	// Progress, when set, is called with the job replays done and the
	// total, from any goroutine.
	Progress func(done, total int64)
}

// Stat is a mean over seeds with its 95% confidence interval (absent with
// one seed).
type Stat struct {
	Mean float64  `json:"mean"`
	Lo   *float64 `json:"ci95_low,omitempty"`
	Hi   *float64 `json:"ci95_high,omitempty"`
}

// Report is the result of a simulation.
type Report struct {
	Jobs         int            `json:"jobs"`
	HistoryJobs  int            `json:"history_jobs"`
	Types        int            `json:"types"`
	Censored     int            `json:"censored_jobs"`
	SpanDays     float64        `json:"span_days"`
	Skipped      map[string]int `json:"skipped,omitempty"`
	Seeds        int            `json:"seeds"`
	Baseline     string         `json:"baseline"`
	LabelKey     string         `json:"label_key,omitempty"`
	Policies     []*Result      `json:"policies"`
	WarmupSecond float64        `json:"warmup_seconds"`
	// CostData says where the prices came from (set by the caller).
	CostData string `json:"cost_data"`
	// Recommendations are filled by the caller (see Recommend).
	Recommendations []Recommendation `json:"recommendations,omitempty"`
}

// Result is one policy's outcome, averaged over seeds.
type Result struct {
	Name        string       `json:"name"`
	Assumptions []Assumption `json:"assumptions"`
	// Cost is the total in USD; VsBaseline the paired difference with the
	// baseline policy over the same seeds, and VsBaselinePct it relative
	// to the baseline's mean.
	Cost          Stat    `json:"cost_usd"`
	CostPerJob    float64 `json:"cost_per_job_usd"`
	VsBaseline    *Stat   `json:"vs_baseline_usd,omitempty"`
	VsBaselinePct float64 `json:"vs_baseline_pct"`
	// IdleCost is node cost no pod's share accounts for: empty or partly
	// filled nodes.
	IdleCost  float64 `json:"idle_cost_usd"`
	NodeHours float64 `json:"node_hours"`
	// Utilisation is what pods were allocated (and used) of the nodes'
	// allocatable CPU and memory over their lifetime.
	CPUUtil     float64 `json:"cpu_utilisation"`
	MemUtil     float64 `json:"memory_utilisation"`
	MemUsedUtil float64 `json:"memory_used_utilisation"`
	// SlackGBh is allocated-but-unused memory of successful attempts, GB
	// (GiB) hours.
	SlackGBh float64 `json:"slack_gb_hours"`
	// FirstOOMRate is the share of jobs whose first attempt was
	// OOM-killed; OOMCost what OOM-killed attempts cost; Failed the jobs
	// OOM-killed more than the reruns allow.
	FirstOOMRate  float64 `json:"first_attempt_oom_rate"`
	OOMCost       float64 `json:"oom_rerun_cost_usd"`
	Failed        float64 `json:"failed_jobs"`
	Unplaceable   int     `json:"unplaceable_jobs"`
	Interruptions float64 `json:"interruptions"`
	RedoneHours   float64 `json:"redone_hours"`
	NodesLaunched float64 `json:"nodes_launched"`
	// Waits are from submit to the job's command starting, seconds.
	WaitP50  float64 `json:"wait_p50_seconds"`
	WaitP95  float64 `json:"wait_p95_seconds"`
	Makespan float64 `json:"makespan_seconds"`
	// WaitQuantiles are the waits' 0th to 100th percentiles (first seed),
	// for plots.
	WaitQuantiles []float64 `json:"wait_percentiles"`
	ByType        []Group   `json:"by_type"`
	ByLabel       []Group   `json:"by_label,omitempty"`
	// spot interruption rate per hour, per type, of spot attempts; for
	// recommendations.
	spotRate map[string]float64
}

// Group is the cost and risk of one job type or label value.
type Group struct {
	Key          string  `json:"key"`
	Jobs         int     `json:"jobs"`
	Cost         float64 `json:"cost_usd"`
	CostPerJob   float64 `json:"cost_per_job_usd"`
	SlackGBh     float64 `json:"slack_gb_hours"`
	FirstOOMRate float64 `json:"first_attempt_oom_rate"`
	MeanRuntime  float64 `json:"mean_runtime_seconds"`
}

// Run replays the trace under every policy of the file, with each seed.
func Run(ctx context.Context, t *Trace, f *File, cat *Catalog, opts Options) (*Report, error) {
	if len(t.Jobs) == 0 {
		return nil, errors.New("the trace has no jobs")
	}
	warmup := opts.Warmup.Seconds()
	if opts.Warmup == 0 {
		for _, p := range f.Policies {
			if p.Sizing.learns() {
				warmup = max(warmup, p.Sizing.Window.Seconds())
			}
		}
	}
	warmup = max(warmup, 0)
	first := sort.Search(len(t.Jobs), func(i int) bool { return t.Jobs[i].Submit >= t.Jobs[0].Submit+warmup })
	if first == len(t.Jobs) {
		return nil, fmt.Errorf("the trace spans %.1f days, no more than its %.1f days of warm-up: pass a shorter --warmup", (t.Jobs[len(t.Jobs)-1].Submit-t.Jobs[0].Submit)/86400, warmup/86400)
	}
	rep := &Report{Jobs: len(t.Jobs) - first, HistoryJobs: first, Seeds: f.Seeds, Baseline: f.Baseline, LabelKey: opts.LabelKey, Skipped: t.Skipped, WarmupSecond: warmup,
		SpanDays: (t.Jobs[len(t.Jobs)-1].Submit - t.Jobs[first].Submit) / 86400}
	types := map[string]bool{}
	for _, j := range t.Jobs[first:] {
		types[j.Type] = true
		if j.Censored {
			rep.Censored++
		}
	}
	rep.Types = len(types)

	// The instance types each EC2 policy may launch, for CPU and GPU jobs.
	cpuTypes, gpuTypes := make([][]*Instance, len(f.Policies)), make([][]*Instance, len(f.Policies))
	gpuJobs := slices.ContainsFunc(t.Jobs[first:], func(j Job) bool { return j.GPUs > 0 })
	for i := range f.Policies {
		p := &f.Policies[i]
		if p.Platform != PlatformEC2 {
			continue
		}
		cpuTypes[i], gpuTypes[i] = p.EC2.instanceTypes(cat, false), p.EC2.instanceTypes(cat, true)
		if len(cpuTypes[i]) == 0 {
			return nil, fmt.Errorf("policies[%d] (%s): ec2: no instance type of the cost data matches categories %v, families %v, minGeneration %d, arch %s",
				i, p.Name, p.EC2.Categories, p.EC2.Families, p.EC2.MinGeneration, p.EC2.Arch)
		}
		if gpuJobs && len(gpuTypes[i]) == 0 {
			return nil, fmt.Errorf("policies[%d] (%s): ec2.gpuCategories: no GPU instance type of the cost data matches %v, minGeneration %d, arch %s, and the trace has GPU jobs",
				i, p.Name, p.EC2.GPUCategories, p.EC2.MinGeneration, p.EC2.Arch)
		}
	}

	// Sizing does not depend on the seed: once per policy.
	allocs := make([][]float64, len(f.Policies))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range f.Policies {
		g.Go(func() error {
			a, err := allocate(gctx, t, &f.Policies[i])
			if err != nil {
				return fmt.Errorf("policy %s: sizing: %w", f.Policies[i].Name, err)
			}
			allocs[i] = a
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	digests := make([][]*digest, len(f.Policies))
	var done atomic.Int64
	total := int64(len(f.Policies) * f.Seeds * rep.Jobs)
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range f.Policies {
		digests[i] = make([]*digest, f.Seeds)
		for s := range f.Seeds {
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				seed := uint64(s + 1)
				p := &f.Policies[i]
				r := &replay{t: t, p: p, cat: cat, alloc: allocs[i], seed: seed, rng: newRand(seed, p.Name), cpuTypes: cpuTypes[i], gpuTypes: gpuTypes[i]}
				r.run(first)
				digests[i][s] = digestOf(t, first, r, opts.LabelKey)
				if opts.Progress != nil {
					opts.Progress(done.Add(int64(rep.Jobs)), total)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	base := slices.IndexFunc(f.Policies, func(p Policy) bool { return p.Name == f.Baseline })
	var baseCost float64
	for _, d := range digests[base] {
		baseCost += d.cost / float64(f.Seeds)
	}
	for i := range f.Policies {
		res := summarise(t, first, &f.Policies[i], digests[i], opts.LabelKey)
		if i != base {
			diff := make([]float64, f.Seeds)
			for s := range diff {
				diff[s] = digests[i][s].cost - digests[base][s].cost
			}
			d := meanCI(diff)
			res.VsBaseline = &d
			if baseCost > 0 {
				res.VsBaselinePct = d.Mean / baseCost * 100
			}
		}
		rep.Policies = append(rep.Policies, res)
	}
	return rep, nil
}

// newRand is the random source of one policy's replay with one seed: the
// policy's name, not its place in the file, picks its stream.
func newRand(seed uint64, policy string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(policy))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// meanCI is the mean of xs with Student's t 95% interval.
func meanCI(xs []float64) Stat {
	if len(xs) < 2 {
		return Stat{Mean: stat.Mean(xs, nil)}
	}
	mean, std := stat.MeanStdDev(xs, nil)
	n := float64(len(xs))
	half := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: n - 1}.Quantile(0.975) * std / math.Sqrt(n)
	lo, hi := mean-half, mean+half
	return Stat{Mean: mean, Lo: &lo, Hi: &hi}
}

// digest is what one replay (one policy, one seed) came to: kept instead
// of its per-job outcomes, so memory does not grow with seeds.
type digest struct {
	cost, attributed              float64
	nodeHours, nodesLaunched      float64
	cpuUtil, memUtil, memUsedUtil float64
	slack, oomCost, redone        float64
	interrupts, failed, firstOOM  float64
	unplaceable                   int
	waitP50, waitP95, makespan    float64
	waitQuantiles                 []float64
	byType, byLabel               map[string]*groupAcc
	spotRate, spotRuns            map[string]float64
}

// digestOf sums a replay's outcomes over the replayed jobs. Node cost no
// pod's share accounts for is spread over the jobs in the groups, in
// proportion to their cost.
func digestOf(t *Trace, first int, r *replay, labelKey string) *digest {
	d := &digest{cost: r.nodeCost + r.fargateCost, nodeHours: r.nodeHours, nodesLaunched: float64(r.nodesLaunched),
		byType: map[string]*groupAcc{}, byLabel: map[string]*groupAcc{}, spotRate: map[string]float64{}, spotRuns: map[string]float64{}}
	if r.nodeCPUh > 0 {
		d.cpuUtil, d.memUtil, d.memUsedUtil = r.podCPUh/r.nodeCPUh, r.podMemGBh/r.nodeMemGBh, r.usedMemGBh/r.nodeMemGBh
	}
	for i := first; i < len(t.Jobs); i++ {
		d.attributed += r.out[i].cost
	}
	scale := 1.0
	if d.attributed > 0 {
		scale = d.cost / d.attributed
	}
	var waits []float64
	firstSubmit, lastEnd := math.Inf(1), math.Inf(-1)
	for i := first; i < len(t.Jobs); i++ {
		j, o := &t.Jobs[i], &r.out[i]
		add := func(a *groupAcc) {
			a.cost += o.cost * scale
			a.slack += o.slackGBh
			if o.firstOOM && !o.unplaceable {
				a.firstOOM++
			}
		}
		add(accOf(d.byType, j.Type))
		if labelKey != "" {
			add(accOf(d.byLabel, labelOf(j, labelKey)))
		}
		if o.unplaceable {
			d.unplaceable++
			continue
		}
		if !math.IsNaN(o.firstStart) {
			waits = append(waits, o.firstStart-j.Submit)
		}
		firstSubmit = min(firstSubmit, j.Submit)
		lastEnd = max(lastEnd, o.end)
		d.slack += o.slackGBh
		d.oomCost += o.oomCost
		d.redone += o.redone / 3600
		d.interrupts += float64(o.interrupts)
		if o.failed {
			d.failed++
		}
		if o.firstOOM {
			d.firstOOM++
		}
		if o.spotRuns > 0 {
			d.spotRate[j.Type] += o.spotNodes
			d.spotRuns[j.Type] += float64(o.spotRuns)
		}
	}
	if len(waits) > 0 {
		slices.Sort(waits)
		d.waitP50, d.waitP95 = stat.Quantile(0.5, stat.Empirical, waits, nil), stat.Quantile(0.95, stat.Empirical, waits, nil)
		for q := 0; q <= 100; q++ {
			d.waitQuantiles = append(d.waitQuantiles, stat.Quantile(float64(q)/100, stat.Empirical, waits, nil))
		}
	}
	if lastEnd > firstSubmit {
		d.makespan = lastEnd - firstSubmit
	}
	return d
}

// summarise averages a policy's replays over seeds.
func summarise(t *Trace, first int, p *Policy, ds []*digest, labelKey string) *Result {
	costs := make([]float64, len(ds))
	for i, d := range ds {
		costs[i] = d.cost
	}
	res := &Result{Name: p.Name, Assumptions: p.Assumptions(), Cost: meanCI(costs), spotRate: map[string]float64{}}
	n := float64(len(ds))
	jobs := len(t.Jobs) - first
	// Groups: their jobs and runtimes from the trace, the rest averaged.
	byType, byLabel := map[string]*groupAcc{}, map[string]*groupAcc{}
	for i := first; i < len(t.Jobs); i++ {
		j := &t.Jobs[i]
		count := func(a *groupAcc) {
			a.jobs++
			a.runtime += j.Runtime
		}
		count(accOf(byType, j.Type))
		if labelKey != "" {
			count(accOf(byLabel, labelOf(j, labelKey)))
		}
	}
	spotRate, spotRuns := map[string]float64{}, map[string]float64{}
	var attributed, unplaced float64
	for _, d := range ds {
		attributed += d.attributed / n
		res.NodeHours += d.nodeHours / n
		res.NodesLaunched += d.nodesLaunched / n
		res.CPUUtil += d.cpuUtil / n
		res.MemUtil += d.memUtil / n
		res.MemUsedUtil += d.memUsedUtil / n
		res.SlackGBh += d.slack / n
		res.OOMCost += d.oomCost / n
		res.RedoneHours += d.redone / n
		res.Interruptions += d.interrupts / n
		res.Failed += d.failed / n
		res.FirstOOMRate += d.firstOOM / float64(jobs) / n
		unplaced += float64(d.unplaceable) / n
		res.WaitP50 += d.waitP50 / n
		res.WaitP95 += d.waitP95 / n
		res.Makespan += d.makespan / n
		mergeMean(byType, d.byType, n)
		mergeMean(byLabel, d.byLabel, n)
		for typ, rate := range d.spotRate {
			spotRate[typ] += rate
			spotRuns[typ] += d.spotRuns[typ]
		}
	}
	res.Unplaceable = int(math.Round(unplaced))
	res.WaitQuantiles = ds[0].waitQuantiles
	res.IdleCost = max(0, res.Cost.Mean-attributed) // Fargate: rounding only
	res.CostPerJob = res.Cost.Mean / float64(jobs)
	for typ, rate := range spotRate {
		res.spotRate[typ] = rate / spotRuns[typ]
	}
	res.ByType = groups(byType)
	if labelKey != "" {
		res.ByLabel = groups(byLabel)
	}
	return res
}

// groupAcc sums one group's jobs and runtime (from the trace) and its
// cost, slack and first-attempt OOM kills (per seed, then averaged).
type groupAcc struct {
	jobs                           int
	cost, slack, firstOOM, runtime float64
}

// accOf returns a group's accumulator, making it the first time.
func accOf(m map[string]*groupAcc, key string) *groupAcc {
	a := m[key]
	if a == nil {
		a = &groupAcc{}
		m[key] = a
	}
	return a
}

// labelOf is a job's value of the label costs are broken down by.
func labelOf(j *Job, key string) string {
	if v, ok := j.Labels[key]; ok {
		return v
	}
	return "(none)"
}

// mergeMean adds one seed's group sums, divided by the seeds n, to the
// groups of the trace.
func mergeMean(dst, seed map[string]*groupAcc, n float64) {
	for key, g := range seed {
		a := accOf(dst, key)
		a.cost += g.cost / n
		a.slack += g.slack / n
		a.firstOOM += g.firstOOM / n
	}
}

// groups lists the groups, costliest first.
func groups(m map[string]*groupAcc) []Group {
	out := make([]Group, 0, len(m))
	for key, a := range m {
		out = append(out, Group{Key: key, Jobs: a.jobs, Cost: a.cost, CostPerJob: a.cost / float64(a.jobs),
			SlackGBh: a.slack, FirstOOMRate: a.firstOOM / float64(a.jobs), MeanRuntime: a.runtime / float64(a.jobs)})
	}
	slices.SortFunc(out, func(a, b Group) int {
		switch {
		case a.Cost > b.Cost:
			return -1
		case a.Cost < b.Cost:
			return 1
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}
