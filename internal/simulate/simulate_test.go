package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

const gib = 1 << 30

func catalog(t *testing.T) *Catalog {
	t.Helper()
	c, err := LoadCatalog(DefaultCostData())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func policies(t *testing.T, yaml string) *File {
	t.Helper()
	f, err := ParsePolicies([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func run(t *testing.T, tr *Trace, f *File, opts Options) *Report {
	t.Helper()
	if opts.Warmup == 0 {
		opts.Warmup = -1
	}
	rep, err := Run(context.Background(), tr, f, catalog(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.6g, want %.6g (within %.3g)", what, got, want, tol)
	}
}

// One job on one node: every figure is known.
func TestOneJobOneNode(t *testing.T) {
	tr := &Trace{Jobs: []Job{{ID: "a", Type: "etl", Runtime: 3600, Peak: 1 * gib, Requested: math.NaN(), CPU: 1}}}
	f := policies(t, `
seeds: 1
policies:
- name: ec2
  platform: ec2
  sizing: {method: fixed, memory: 2Gi}
  ec2: {families: [m5], nodeLaunch: 60s, imagePull: 20s, idleTimeout: 60s, batchWindow: 0s}
- name: fargate
  platform: fargate
  sizing: {method: fixed, memory: 2Gi}
  fargate: {startup: 45s}
`)
	rep := run(t, tr, f, Options{})
	ec2, fg := rep.Policies[0], rep.Policies[1]

	// m5.large (2 vCPU, 6903 MiB allocatable) is the cheapest m5 that
	// holds 1 core and 2 GiB: 0.096 USD/h from launch until the idle
	// timeout after the job: 60 + 20 + 3600 + 60 seconds.
	near(t, "ec2 cost", ec2.Cost.Mean, 0.096*3740/3600, 1e-9)
	near(t, "ec2 wait", ec2.WaitP50, 80, 1e-9)
	near(t, "ec2 slack GB-h", ec2.SlackGBh, 1, 1e-9)
	near(t, "ec2 makespan", ec2.Makespan, 3680, 1e-9)
	near(t, "ec2 node hours", ec2.NodeHours, 3740.0/3600, 1e-9)
	// The job's share of the node is its dominant share: CPU here.
	m5 := catalog(t).Instance("m5.large")
	share := max(1000/m5.CPU, 2*gib/m5.Memory)
	near(t, "ec2 idle cost", ec2.IdleCost, 0.096*3740/3600-0.096*3680/3600*share, 1e-9)

	// Fargate: 1 vCPU and 2 GiB + 256 MiB round up to 1 vCPU / 3 GB,
	// billed from the start-up to the end.
	near(t, "fargate cost", fg.Cost.Mean, (3600+45)/3600.0*(0.04048+3*0.004445), 1e-9)
	near(t, "fargate wait", fg.WaitP50, 45, 1e-9)
	// Provisioned 3 GB, of which 256 MiB is Fargate's own: 1.75 GB-h slack.
	near(t, "fargate slack GB-h", fg.SlackGBh, 1.75, 1e-9)
	near(t, "fargate vs ec2 %", fg.VsBaselinePct, (fg.Cost.Mean-ec2.Cost.Mean)/ec2.Cost.Mean*100, 1e-9)
}

// A trace where p90 sizing is exactly computable: one type whose peaks
// are 1..10 GiB, over and over.
func TestTypeQuantileSizing(t *testing.T) {
	var tr Trace
	for day := range 40 {
		for k := 1; k <= 10; k++ {
			tr.Jobs = append(tr.Jobs, Job{ID: "j", Type: "train", Submit: float64(day*86400 + k*600), Runtime: 60, Peak: float64(k) * gib, Requested: math.NaN()})
		}
	}
	f := policies(t, `
seeds: 1
policies:
- name: p90
  platform: ec2
  sizing: {method: type-quantile, quantile: 0.9, window: 7d, retrainEvery: 1d}
  ec2: {families: [r5]}
- name: p90x1.2
  platform: ec2
  sizing: {method: type-quantile, quantile: 0.9, buffer: 1.2, window: 7d, retrainEvery: 1d}
  ec2: {families: [r5]}
`)
	rep := run(t, &tr, f, Options{Warmup: Duration(7 * 86400 * 1e9)})
	if rep.Jobs != 330 {
		t.Fatalf("%d jobs after the warm-up, want 330", rep.Jobs)
	}
	p90, buffered := rep.Policies[0], rep.Policies[1]
	// The 0.9 quantile of 1..10 GiB is 9 GiB: the 10 GiB jobs are killed.
	near(t, "p90 first-attempt OOM rate", p90.FirstOOMRate, 0.1, 1e-12)
	near(t, "p90x1.2 first-attempt OOM rate", buffered.FirstOOMRate, 0, 0)
	// Slack of the successful attempts: the 9 GiB allocation over peaks
	// 1..9 (36 GiB-minutes per 9 jobs) and the 10 GiB jobs' rerun at 13.5.
	wantSlack := 33.0 * ((9*9 - 45) + 3.5) / 60
	near(t, "p90 slack GB-h", p90.SlackGBh, wantSlack, 1e-9)
	near(t, "p90x1.2 slack GB-h", buffered.SlackGBh, 33*(10.8*10-55)/60, 1e-9)
	if p90.OOMCost <= 0 {
		t.Errorf("OOM reruns cost nothing")
	}
}

// TestPredictorRaisedAfterMisses: a type's jobs double their need half a
// week after a retraining. Sized by the model alone, every job is killed
// until the next retraining; raised after misses, as the dispatcher raises
// the model, the first dozen or so, and then about one in ten (1 - q) as
// the raise holds the group near q.
func TestPredictorRaisedAfterMisses(t *testing.T) {
	var tr Trace
	for k := range 21 * 144 { // every 10 minutes for three weeks
		at := float64(k * 600)
		peak := 1.0 * gib
		if at >= 17.5*86400 {
			peak = 2 * gib
		}
		tr.Jobs = append(tr.Jobs, Job{ID: fmt.Sprint(k), Type: "etl", Submit: at, Runtime: 60, Peak: peak * (1 - 0.01*float64(k%10)), Requested: math.NaN(), CPU: 1})
	}
	f := policies(t, `
seeds: 1
policies:
- name: raised
  platform: ec2
  sizing: {method: predictor, window: 30d, retrainEvery: 7d}
  ec2: {families: [r5]}
- name: alone
  platform: ec2
  sizing: {method: predictor, window: 30d, retrainEvery: 7d, onlineRate: -1}
  ec2: {families: [r5]}
`)
	rep := run(t, &tr, f, Options{Warmup: Duration(7 * 86400 * 1e9)})
	raised, alone := rep.Policies[0], rep.Policies[1]
	// 3.5 days of 144 jobs, of the 14 days after the warm-up, missed.
	near(t, "first-attempt OOM rate by the model alone", alone.FirstOOMRate, 3.5/14, 0.01)
	// 2 / (1 * e^margin) needs about ln(2 / 1.15) / (0.05 * 0.9) = 12
	// kills, then about 10% of the other 490 jobs miss.
	if n := raised.FirstOOMRate * float64(rep.Jobs); n < 12 || n > 12+49+15 {
		t.Errorf("raised after misses: %.0f first attempts OOM-killed, want about 12 + 49 (the model alone: %.0f)", n, alone.FirstOOMRate*float64(rep.Jobs))
	}
	var out bytes.Buffer
	if err := WriteText(&out, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "sizing.onlineRate") || !strings.Contains(out.String(), "none: the model alone") {
		t.Errorf("the report does not state the raise:\n%s", out.String())
	}
}

// TestPredictorHearsOfKillsWhenTheyHappen: the raise learns of a job
// that did not fit when it is killed, as the dispatcher does from the
// killed attempt's record, not when the job would have ended: jobs killed
// early in their runtime raise their group sooner.
func TestPredictorHearsOfKillsWhenTheyHappen(t *testing.T) {
	var tr Trace
	for k := range 21 * 144 { // every 10 minutes, each running 100 minutes
		at := float64(k * 600)
		peak := 1.0 * gib
		if at >= 17.5*86400 {
			peak = 2 * gib
		}
		tr.Jobs = append(tr.Jobs, Job{ID: fmt.Sprint(k), Type: "etl", Submit: at, Runtime: 6000, Peak: peak * (1 - 0.01*float64(k%10)), Requested: math.NaN(), CPU: 1})
	}
	missed := func(killedAt string) int {
		f := policies(t, `
policies:
- name: p
  platform: ec2
  sizing: {method: predictor, window: 30d, retrainEvery: 7d}
  oom: {killedAt: `+killedAt+`}
  ec2: {families: [r5]}
`)
		alloc, err := allocate(t.Context(), &tr, &f.Policies[0])
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i, j := range tr.Jobs {
			if j.Submit >= 17.5*86400 && j.Submit < 18.5*86400 && alloc[i] < j.Peak {
				n++
			}
		}
		return n
	}
	// Heard of at the end, each kill comes ten jobs late; killed at a
	// tenth of the runtime, one job late.
	late, early := missed("1"), missed("0.1")
	if early >= late || late-early < 5 {
		t.Errorf("first day after the shift: %d jobs missed with kills heard at the end, %d with kills heard at a tenth of the runtime; want clearly fewer", late, early)
	}
}

// Interruptions as a Poisson process: with no launch, pull or restore
// time, the expected time to finish Ts of work in segments of tau, each
// followed by a checkpoint of delta, is Daly's M(e^((tau+delta)/M) - 1)
// per segment (the last segment takes no checkpoint).
func TestInterruptionsMatchDaly(t *testing.T) {
	const (
		jobs  = 3000
		work  = 10 * 3600.0
		tau   = 3600.0
		delta = 360.0
		m     = 5 * 3600.0 // mean time between interruptions
	)
	var tr Trace
	for i := range jobs {
		tr.Jobs = append(tr.Jobs, Job{ID: "j", Type: "train", Submit: float64(i), Runtime: work, Peak: gib, Requested: math.NaN()})
	}
	f := policies(t, `
seeds: 1
policies:
- name: spot
  platform: ec2
  sizing: {method: fixed, memory: 2Gi}
  capacity: {spotShare: 1, onDemandAfter: 0}
  interruptions: {model: rate, perHour: 0.2}
  checkpoint: {interval: 1h, cost: 6m, onNotice: 0}
  ec2: {families: [m5], packing: one-per-node, nodeLaunch: 0s, imagePull: 0s, idleTimeout: 0s, batchWindow: 0s}
`)
	r := replayOnce(t, &tr, f, 0)
	f1 := func(x float64) float64 { return m * (math.Exp(x/m) - 1) }
	want := 9*f1(tau+delta) + f1(tau)
	var sum, ss, redone, interrupts float64
	for i, o := range r.out {
		d := o.end - tr.Jobs[i].Submit
		sum += d
		ss += d * d
		redone += o.redone
		interrupts += float64(o.interrupts)
	}
	mean := sum / jobs
	se := math.Sqrt((ss/jobs - mean*mean) / jobs)
	if math.Abs(mean-want) > 4*se {
		t.Errorf("mean time to finish %.0f s, Daly's closed form %.0f s (standard error %.0f s)", mean, want, se)
	}
	// Young's first-order form, the work plus its checkpoints plus half an
	// interval per expected interruption, is within a few percent when
	// the interval is small against the mean time between interruptions.
	young := work + (work/tau-1)*delta + work/m*tau/2
	near(t, "mean time to finish against Young's first-order form", mean, young, 0.03*young)
	// The work lost per interruption: for exponential times X, E[min(X,
	// tau) | X < tau+delta] in the nine checkpointed segments and
	// E[X | X < tau] in the last, weighted by their expected interruptions
	// (e^(s/M) - 1 per segment).
	lost := func(s float64) float64 {
		return (m - (tau+m)*math.Exp(-tau/m) + tau*(math.Exp(-tau/m)-math.Exp(-s/m))) / (1 - math.Exp(-s/m))
	}
	wMid, wLast := 9*(math.Exp((tau+delta)/m)-1), math.Exp(tau/m)-1
	exact := (wMid*lost(tau+delta) + wLast*lost(tau)) / (wMid + wLast)
	perInterrupt := redone / interrupts
	near(t, "work lost per interruption", perInterrupt, exact, 0.015*exact)
	// Interruptions per hour of node time match the rate.
	near(t, "interruptions per hour", interrupts/(sum/3600), 0.2, 0.01)
}

// replayOnce runs a policy file's i-th policy with seed 1.
func replayOnce(t *testing.T, tr *Trace, f *File, i int) *replay {
	t.Helper()
	p := &f.Policies[i]
	alloc, err := allocate(context.Background(), tr, p)
	if err != nil {
		t.Fatal(err)
	}
	r := &replay{t: tr, p: p, cat: catalog(t), alloc: alloc, seed: 1, rng: newRand(1, p.Name)}
	r.run(0)
	return r
}

func TestPolicyErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`policies: [{name: a, platform: gcp, sizing: {method: fixed, memory: 1Gi}}]`, "platform"},
		{`policies: [{name: a, platform: ec2, sizing: {method: guess}}]`, "sizing.method"},
		{`policies: [{name: a, platform: ec2, sizing: {method: fixed}}]`, "sizing.memory"},
		{`policies: [{name: a, platform: fargate, sizing: {method: fixed, memory: 1Gi}, capacity: {spotShare: 0.6}}]`, "capacity.spotShare"},
		{`policies: [{name: a, platform: ec2, sizing: {method: fixed, memory: 1Gi}, interruptions: {model: band, band: "7%"}}]`, "interruptions.band"},
		{`policies: [{name: a, platform: ec2, sizing: {method: fixed, memory: 1Gi}, checkpoint: {interval: soon}}]`, `policies[0] (a): checkpoint.interval: "soon" is not a duration`},
		{`policies: [{name: a, platform: ec2, sizing: {method: fixed, memory: lots}}]`, `policies[0] (a): sizing.memory: "lots" is not a memory size`},
		{`policies: [{name: a, platform: ec2, sizing: {method: fixed, memory: 1Gi}, ec2: {nodeLaunch: -5s}}]`, `policies[0] (a): ec2.nodeLaunch: "-5s" is negative`},
		{`policies: [{name: a, platform: ec2, sizing: {method: fixed, memory: 1Gi}, spot: 1}]`, "unknown field"},
		{`baseline: b
policies: [{name: a, platform: ec2, sizing: {method: fixed, memory: 1Gi}}]`, "baseline"},
		{`policies: []`, "policies"},
		{`policies: [{name: a, platform: ec2, sizing: {method: predictor, onlineRate: 2}}]`, "sizing.onlineRate"},
	} {
		_, err := ParsePolicies([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.yaml, err, tc.want)
		}
	}
}

// Daly's interval minimises the expected time (so the cost) of a job on
// spot capacity, and the replay's expected time matches his closed form
// with a restart time (here the new node's launch).
func TestDalyIntervalMinimisesTime(t *testing.T) {
	const (
		jobs   = 2000
		work   = 20 * 3600.0
		delta  = 360.0
		m      = 5 * 3600.0
		launch = 600.0
	)
	tau := DalyInterval(delta, m)
	near(t, "Daly's interval", tau, math.Sqrt(2*delta*m)*(1+math.Sqrt(0.01)/3+0.01/9)-delta, 1e-9)
	if y := YoungInterval(delta, m); math.Abs(y-3600) > 1e-9 {
		t.Fatalf("Young's interval %v, want 3600", y)
	}
	var tr Trace
	for i := range jobs {
		tr.Jobs = append(tr.Jobs, Job{ID: "j", Type: "train", Submit: float64(i), Runtime: work, Peak: gib, Requested: math.NaN()})
	}
	var yaml strings.Builder
	yaml.WriteString("seeds: 1\npolicies:\n")
	for _, f := range []float64{0.5, 1, 2} {
		fmt.Fprintf(&yaml, `- name: x%v
  platform: ec2
  sizing: {method: fixed, memory: 2Gi}
  capacity: {spotShare: 1, onDemandAfter: 0}
  interruptions: {model: rate, perHour: 0.2}
  checkpoint: {interval: %ds, cost: 6m, onNotice: 0}
  ec2: {families: [m5], packing: one-per-node, nodeLaunch: %ds, imagePull: 0s, idleTimeout: 0s, batchWindow: 0s}
`, f, int(f*tau), int(launch))
	}
	f := policies(t, yaml.String())
	means := make([]float64, 3)
	for i := range means {
		r := replayOnce(t, &tr, f, i)
		for k, o := range r.out {
			means[i] += (o.end - tr.Jobs[k].Submit) / jobs
		}
	}
	if !(means[1] < means[0] && means[1] < means[2]) {
		t.Errorf("mean times at half, one and twice Daly's interval: %.0f, %.0f, %.0f s: Daly's is not the shortest", means[0], means[1], means[2])
	}
	// The first launch can be interrupted too: M(e^(L/M) - 1) before the
	// segments, each taking Daly's M e^(L/M) (e^(s/M) - 1).
	ti := float64(int(tau))
	segs := math.Floor(work / ti)
	last := work - segs*ti
	want := m*(math.Exp(launch/m)-1) + DalyWallTime(segs*ti, ti, delta, launch, m) + m*math.Exp(launch/m)*(math.Exp(last/m)-1)
	if last == 0 {
		t.Fatal("the work is a multiple of the interval; the last segment would take no checkpoint")
	}
	near(t, "mean time at Daly's interval", means[1], want, 0.01*want)

	rep := run(t, &tr, &File{Seeds: 1, Baseline: "x1", Policies: f.Policies[1:2]}, Options{})
	recs := Recommend(&File{Policies: f.Policies[1:2]}, rep)
	if len(recs) != 1 {
		t.Fatalf("%d recommendations, want 1", len(recs))
	}
	near(t, "recommended interruption rate", recs[0].Rate, 0.2, 1e-12)
	near(t, "recommended interval", recs[0].Daly, tau, 1e-9)
	if !recs[0].Periodic {
		t.Errorf("a 20 h job with an interval under an hour should checkpoint periodically")
	}
}

// A spot share caps the saving at the share times the spot discount.
func TestSpotShareCapsTheSaving(t *testing.T) {
	var tr Trace
	for i := range 4000 {
		tr.Jobs = append(tr.Jobs, Job{ID: "j", Type: "etl", Submit: float64(i * 7200), Runtime: 3600, Peak: gib, Requested: math.NaN()})
	}
	f := policies(t, `
seeds: 4
policies:
- name: od
  platform: ec2
  sizing: {method: fixed, memory: 2Gi}
  ec2: {families: [m5], packing: one-per-node, nodeLaunch: 0s, imagePull: 0s, idleTimeout: 0s, batchWindow: 0s}
- name: 60/40
  platform: ec2
  sizing: {method: fixed, memory: 2Gi}
  capacity: {spotShare: 0.6}
  interruptions: {model: none}
  ec2: {families: [m5], packing: one-per-node, nodeLaunch: 0s, imagePull: 0s, idleTimeout: 0s, batchWindow: 0s}
`)
	rep := run(t, &tr, f, Options{})
	m5 := catalog(t).Instance("m5.large")
	near(t, "on-demand cost", rep.Policies[0].Cost.Mean, 4000*m5.OnDemand, 1e-6)
	want := -0.6 * m5.Spot.SavingsPct
	near(t, "60/40 saving %", rep.Policies[1].VsBaselinePct, want, 0.03*m5.Spot.SavingsPct)
	if ci := rep.Policies[1].VsBaseline; ci.Lo == nil || *ci.Lo > ci.Mean || *ci.Hi < ci.Mean {
		t.Errorf("no confidence interval around the difference: %+v", ci)
	}
}

// A checkpoint on the two-minute notice saves the work done until the
// notice: the attempt loses only the last two minutes.
func TestNoticeCheckpoint(t *testing.T) {
	var tr Trace
	for i := range 2000 {
		tr.Jobs = append(tr.Jobs, Job{ID: "j", Type: "train", Submit: float64(i), Runtime: 10 * 3600, Peak: gib, Requested: math.NaN()})
	}
	f := policies(t, `
seeds: 1
policies:
- name: notice
  platform: ec2
  sizing: {method: fixed, memory: 2Gi}
  capacity: {spotShare: 1, onDemandAfter: 0}
  interruptions: {model: rate, perHour: 0.2}
  checkpoint: {interval: 0s, cost: 30s, onNotice: 1}
  ec2: {families: [m5], packing: one-per-node, nodeLaunch: 0s, imagePull: 0s, idleTimeout: 0s, batchWindow: 0s}
`)
	r := replayOnce(t, &tr, f, 0)
	var redone, interrupts float64
	for _, o := range r.out {
		redone += o.redone
		interrupts += float64(o.interrupts)
	}
	if interrupts < 1000 {
		t.Fatalf("%v interruptions of 20,000 spot hours at 0.2 an hour", interrupts)
	}
	// Interruptions within two minutes of an attempt's start lose less.
	if per := redone / interrupts; per > noticeSeconds || per < 0.95*noticeSeconds {
		t.Errorf("%.0f s lost per interruption, want just under the %d s of the notice", per, noticeSeconds)
	}
}

// OOM-killed attempts rerun with 1.5 times the memory on Fargate too,
// and a rerun no Fargate size holds fails the job, which stays in the
// risk figures.
func TestFargateOOMReruns(t *testing.T) {
	tr := &Trace{Jobs: []Job{
		{ID: "fits-on-rerun", Type: "a", Runtime: 600, Peak: 5 * gib, Requested: math.NaN()},
		{ID: "too-big", Type: "b", Submit: 1, Runtime: 600, Peak: 200 * gib, Requested: math.NaN()},
	}}
	f := policies(t, `
seeds: 1
policies:
- name: fargate
  platform: fargate
  sizing: {method: fixed, memory: 4Gi}
- name: ec2
  platform: ec2
  sizing: {method: fixed, memory: 4Gi}
  oom: {maxReruns: 0}
`)
	rep := run(t, tr, f, Options{})
	fg, ec2 := rep.Policies[0], rep.Policies[1]
	if fg.FirstOOMRate != 1 || fg.Failed != 1 || fg.Unplaceable != 0 || fg.OOMCost <= 0 {
		t.Errorf("fargate: first OOM %v, failed %v, unplaced %d, OOM cost %v; want 1, 1 (the 200 GiB job), 0, > 0", fg.FirstOOMRate, fg.Failed, fg.Unplaceable, fg.OOMCost)
	}
	// 4 GiB, then 6 GiB (+256 MiB each): 1 vCPU / 5 GB, then 1 vCPU / 7 GB.
	first := (60 + 300) / 3600.0 * (0.04048 + 5*0.004445)
	rerun := (60 + 600) / 3600.0 * (0.04048 + 7*0.004445)
	if cost := fg.ByType[slices.IndexFunc(fg.ByType, func(g Group) bool { return g.Key == "a" })].Cost; math.Abs(cost-(first+rerun)) > 1e-9 {
		t.Errorf("fargate: the rerun job cost %v, want %v", cost, first+rerun)
	}
	// maxReruns 0: both jobs fail on their first kill.
	if ec2.Failed != 2 || ec2.FirstOOMRate != 1 {
		t.Errorf("ec2 with no reruns: failed %v, first OOM %v; want 2, 1", ec2.Failed, ec2.FirstOOMRate)
	}
}

// A job interrupted onDemandAfter times moves to on-demand capacity.
func TestOnDemandAfterInterruptions(t *testing.T) {
	var tr Trace
	for i := range 200 {
		tr.Jobs = append(tr.Jobs, Job{ID: "j", Type: "train", Submit: float64(i), Runtime: 20 * 3600, Peak: gib, Requested: math.NaN()})
	}
	f := policies(t, `
seeds: 1
policies:
- name: spot
  platform: ec2
  sizing: {method: fixed, memory: 2Gi}
  capacity: {spotShare: 1, onDemandAfter: 2}
  interruptions: {model: rate, perHour: 1}
  ec2: {families: [m5], packing: one-per-node}
`)
	r := replayOnce(t, &tr, f, 0)
	for i, o := range r.out {
		// At one interruption an hour, every 20-hour job is interrupted
		// twice, then runs to its end on-demand.
		if o.interrupts != 2 {
			t.Fatalf("job %d was interrupted %d times, want 2", i, o.interrupts)
		}
	}
}

// A baseline that costs nothing gives no percentage, not infinity, and
// the report still encodes; a policy that selects no instance type is an
// error naming it.
func TestEdgeCases(t *testing.T) {
	tr := &Trace{Jobs: []Job{{ID: "g", Type: "train", Runtime: 60, Peak: gib, GPUs: 1, Requested: math.NaN()}}}
	f := policies(t, `
seeds: 2
policies:
- {name: fargate, platform: fargate, sizing: {method: fixed, memory: 2Gi}}
- {name: ec2, platform: ec2, sizing: {method: fixed, memory: 2Gi}}
`)
	rep := run(t, tr, f, Options{})
	if rep.Policies[1].VsBaselinePct != 0 {
		t.Errorf("%% against a free baseline: %v", rep.Policies[1].VsBaselinePct)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("encoding: %v", err)
	}
	var html bytes.Buffer
	if err := WriteHTML(&html, rep); err != nil {
		t.Errorf("the HTML report: %v", err)
	}
	f = policies(t, `policies: [{name: typo, platform: ec2, sizing: {method: fixed, memory: 2Gi}, ec2: {families: [m7]}}]`)
	_, err := Run(context.Background(), tr, f, catalog(t), Options{Warmup: -1})
	if err == nil || !strings.Contains(err.Error(), "policies[0] (typo): ec2: no instance type") {
		t.Errorf("error %v, want one naming the policy's ec2 selection", err)
	}
}
