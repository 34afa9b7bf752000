package simulate

import (
	"cmp"
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
)

// noticeSeconds is the warning EC2 gives before it reclaims a spot instance.
const noticeSeconds = 120

// attempt is a job's pod: pending, placed on a node, or running.
type attempt struct {
	job   int
	alloc float64 // memory limit, bytes
	cpu   float64 // cores
	gpus  int
	spot  bool
	// remaining is the work left, from the last checkpoint.
	remaining float64
	resumed   bool
	// attempts run so far, interruptions and OOM kills of the job.
	attempts, interruptions, ooms int

	node *node
	// placedAt is when it was placed; runStart when its command started
	// (after the node was ready, the image pulled, the checkpoint
	// restored); NaN until then.
	placedAt, runStart float64
	// willOOM marks an attempt bound to be OOM-killed.
	willOOM bool
	gen     int // invalidates start and finish events after a move
}

// resources are a node's CPU (millicores), memory (bytes), pod slots and
// GPUs.
type resources struct {
	cpu, mem   float64
	pods, gpus int
}

// capacity is what a node of the type can allocate to pods.
func capacity(t *Instance) resources {
	return resources{cpu: t.CPU, mem: t.Memory, pods: t.Pods, gpus: t.GPUs}
}

// holds reports whether the attempt fits in the resources.
func (r resources) holds(a *attempt) bool {
	return r.cpu >= a.cpu*1000 && r.mem >= a.alloc && r.pods >= 1 && r.gpus >= a.gpus
}

// add adds (sign 1) or takes away (sign -1) what the attempt uses.
func (r *resources) add(a *attempt, sign int) {
	r.cpu += float64(sign) * a.cpu * 1000
	r.mem += float64(sign) * a.alloc
	r.pods += sign
	r.gpus += sign * a.gpus
}

// node is an EC2 instance Karpenter launched.
type node struct {
	typ         *Instance
	spot        bool
	launch      float64
	ready       float64
	interruptAt float64
	free        resources
	running     []*attempt
	idleGen     int
	gone        bool
	idx         int                // in replay.nodes while live
	pulled      map[string]float64 // job type -> when its image is pulled
	// attributed is the node's cost charged to its pods so far, USD.
	attributed float64
}

type eventKind uint8

const (
	evArrive eventKind = iota
	evProvision
	evStart
	evFinish
	evInterrupt
	evIdle
)

type event struct {
	at   float64
	seq  uint64
	kind eventKind
	a    *attempt
	n    *node
	gen  int
	job  int
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// jobOutcome is what became of one job in one replay.
type jobOutcome struct {
	cost        float64 // attributed, USD
	oomCost     float64 // of OOM-killed attempts
	firstStart  float64 // NaN: never ran
	end         float64
	firstOOM    bool
	failed      bool // OOM-killed more than MaxReruns times
	unplaceable bool
	slackGBh    float64
	redone      float64 // seconds of work lost to interruptions
	interrupts  int
	spotNodes   float64 // interruption rate sum over spot attempts, per hour
	spotRuns    int
}

// replay is one policy's replay of a trace with one seed.
type replay struct {
	t       *Trace
	p       *Policy
	cat     *Catalog
	alloc   []float64
	rng     *rand.Rand
	seed    uint64
	q       eventQueue
	seq     uint64
	now     float64
	pending []*attempt
	// provisionAt is when the next batch is launched; NaN: none scheduled.
	provisionAt float64
	nodes       []*node
	cpuTypes    []*Instance
	gpuTypes    []*Instance
	out         []jobOutcome
	// totals
	nodeCost, nodeHours            float64
	nodeCPUh, nodeMemGBh           float64
	podCPUh, podMemGBh, usedMemGBh float64
	fargateCost                    float64
	nodesLaunched                  int
}

func (r *replay) push(e event) {
	r.seq++
	e.seq = r.seq
	heap.Push(&r.q, e)
}

// run replays the jobs from first on; earlier jobs are history only.
func (r *replay) run(first int) {
	r.out = make([]jobOutcome, len(r.t.Jobs))
	for i := range r.out {
		r.out[i].firstStart = math.NaN()
	}
	r.provisionAt = math.NaN()
	if r.p.Platform == PlatformEC2 && r.cpuTypes == nil {
		r.cpuTypes = r.p.EC2.instanceTypes(r.cat, false)
		r.gpuTypes = r.p.EC2.instanceTypes(r.cat, true)
	}
	for i := first; i < len(r.t.Jobs); i++ {
		r.push(event{at: r.t.Jobs[i].Submit, kind: evArrive, job: i})
	}
	for r.q.Len() > 0 {
		e := heap.Pop(&r.q).(event)
		r.now = e.at
		switch e.kind {
		case evArrive:
			r.arrive(e.job)
		case evProvision:
			r.provision()
		case evStart:
			if e.gen == e.a.gen && e.a.node == e.n {
				r.start(e.a)
			}
		case evFinish:
			if e.gen == e.a.gen && e.a.node == e.n {
				r.finish(e.a)
			}
		case evInterrupt:
			if !e.n.gone {
				r.interrupt(e.n)
			}
		case evIdle:
			if !e.n.gone && len(e.n.running) == 0 && e.n.idleGen == e.gen {
				r.terminate(e.n)
			}
		}
	}
	for len(r.nodes) > 0 {
		r.terminate(r.nodes[0])
	}
}

func (r *replay) arrive(i int) {
	j := &r.t.Jobs[i]
	a := &attempt{job: i, alloc: r.alloc[i], cpu: j.CPU, gpus: j.GPUs, remaining: j.Runtime, placedAt: math.NaN(), runStart: math.NaN()}
	if a.cpu == 0 {
		a.cpu = r.p.CPU
	}
	// The same jobs go to spot under every policy with the same seed.
	a.spot = r.p.Capacity.SpotShare > 0 && spotDraw(r.seed, i) < r.p.Capacity.SpotShare
	// Sized too small: its first attempt is bound to be OOM-killed (even
	// if an interruption ends it first).
	r.out[i].firstOOM = a.alloc < r.need(i)
	if r.p.Platform == PlatformFargate {
		r.runFargate(a, r.now)
		return
	}
	r.enqueue(a)
}

// spotDraw is a uniform draw in [0, 1) from the seed and the job alone.
func spotDraw(seed uint64, job int) float64 {
	x := seed*0x9E3779B97F4A7C15 + uint64(job)*0xBF58476D1CE4E5B9 + 1
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// need is the memory the job really needs in the replay.
func (r *replay) need(i int) float64 { return need(&r.t.Jobs[i], r.p.OOM.CensoredGrowth) }

// runFargate runs every attempt of a job on Fargate, one pod each.
func (r *replay) runFargate(a *attempt, at float64) {
	f := &r.cat.Fargate
	o := &r.out[a.job]
	startup := r.p.Fargate.Startup.Seconds()
	for {
		size, ok := fargateSize(f, a.cpu, a.alloc)
		if !ok || a.gpus > 0 {
			if a.attempts == 0 {
				o.unplaceable = true
			} else {
				o.failed = true // its rerun fits no Fargate size
			}
			return
		}
		a.attempts++
		start := at + startup
		if math.IsNaN(o.firstStart) {
			o.firstStart = start
		}
		oom := a.alloc < r.need(a.job)
		work := r.wall(a, a.remaining)
		if oom {
			work = r.p.OOM.KilledAt * a.remaining
		}
		billed := max(startup+work, f.MinimumSeconds)
		cost := billed / 3600 * (size.VCPU*f.PerVCPUHour + size.Memory/(1<<30)*f.PerGBHour)
		r.fargateCost += cost
		o.cost += cost
		r.nodeHours += billed / 3600
		r.nodeCPUh += size.VCPU * billed / 3600
		r.nodeMemGBh += size.Memory / (1 << 30) * billed / 3600
		r.podCPUh += a.cpu * work / 3600
		r.podMemGBh += a.alloc / (1 << 30) * work / 3600
		at = start + work
		if !oom {
			peak := r.need(a.job)
			r.usedMemGBh += peak / (1 << 30) * work / 3600
			o.slackGBh += (size.Memory - f.Overhead - peak) / (1 << 30) * work / 3600
			o.end = at
			return
		}
		r.usedMemGBh += a.alloc / (1 << 30) * work / 3600
		o.oomCost += cost
		if !r.oomKilled(a) {
			o.end = at
			return
		}
	}
}

// oomKilled records an OOM kill and raises the allocation; false when the
// job is out of reruns.
func (r *replay) oomKilled(a *attempt) bool {
	o := &r.out[a.job]
	a.ooms++
	if a.ooms > *r.p.OOM.MaxReruns {
		o.failed = true
		return false
	}
	a.alloc *= r.p.OOM.RerunFactor
	if r.p.Sizing.Ladder {
		a.alloc = ladder(a.alloc)
	}
	return true
}

func (r *replay) enqueue(a *attempt) {
	a.node, a.placedAt, a.runStart = nil, math.NaN(), math.NaN()
	r.pending = append(r.pending, a)
	if math.IsNaN(r.provisionAt) {
		r.provisionAt = r.now + r.p.EC2.BatchWindow.Seconds()
		r.push(event{at: r.provisionAt, kind: evProvision})
	}
}

// fits reports whether the attempt fits in a node's free resources.
func (n *node) fits(a *attempt, now float64) bool {
	return !n.gone && n.interruptAt-now > noticeSeconds && n.spot == a.spot && (n.typ.GPUs > 0) == (a.gpus > 0) && n.free.holds(a)
}

func (n *node) take(a *attempt) {
	n.free.add(a, -1)
	n.running = append(n.running, a)
}

func (n *node) release(a *attempt) {
	n.free.add(a, 1)
	if i := slices.Index(n.running, a); i >= 0 {
		n.running = slices.Delete(n.running, i, i+1)
	}
}

// provision places the pending attempts: on nodes with room first (best
// fit on memory), then on new nodes of the type with the lowest price per
// pending pod it holds (binpack) or the cheapest that holds one
// (one-per-node).
func (r *replay) provision() {
	r.provisionAt = math.NaN()
	pending := r.pending
	r.pending = nil
	slices.SortStableFunc(pending, func(a, b *attempt) int { return cmp.Compare(b.alloc, a.alloc) })
	binpack := r.p.EC2.Packing == PackBin
	var left []*attempt
	for _, a := range pending {
		var best *node
		for _, n := range r.nodes {
			if n.fits(a, r.now) && (binpack || len(n.running) == 0) && (best == nil || n.free.mem < best.free.mem) {
				best = n
			}
		}
		if best != nil {
			r.place(a, best)
			continue
		}
		left = append(left, a)
	}
	for len(left) > 0 {
		a := left[0]
		types := r.cpuTypes
		if a.gpus > 0 {
			types = r.gpuTypes
		}
		var best *Instance
		bestScore := math.Inf(1)
		for _, t := range types {
			if a.spot && (t.Spot == nil || t.Spot.SavingsPct <= 0) {
				continue
			}
			if !capacity(t).holds(a) {
				continue
			}
			score := t.Price(a.spot)
			if binpack && len(left) > 1 {
				score /= float64(packCount(t, a, left))
			}
			if score < bestScore {
				best, bestScore = t, score
			}
		}
		if best == nil && a.spot {
			// No spot offering fits: Karpenter launches on-demand.
			a.spot = false
			continue
		}
		if best == nil {
			if a.attempts == 0 {
				r.out[a.job].unplaceable = true
			} else {
				r.out[a.job].failed = true // its rerun fits no instance type
			}
			left = left[1:]
			continue
		}
		n := r.launch(best, a.spot)
		var rest []*attempt
		for i, b := range left {
			if (i == 0 || binpack) && n.fits(b, math.Inf(-1)) { // Karpenter does not know of a notice to come
				r.place(b, n)
			} else {
				rest = append(rest, b)
			}
		}
		left = rest
	}
}

// packCount is how many of the first pending attempts (up to 32, which
// bounds the search) that may share a node with a fit on an empty node of
// the type, first fit.
func packCount(t *Instance, first *attempt, pending []*attempt) int {
	free := capacity(t)
	n := 0
	for _, a := range pending[:min(len(pending), 32)] {
		if a.spot == first.spot && (a.gpus > 0) == (first.gpus > 0) && free.holds(a) {
			free.add(a, -1)
			n++
		}
	}
	return max(n, 1)
}

func (r *replay) launch(t *Instance, spot bool) *node {
	n := &node{typ: t, spot: spot, launch: r.now, ready: r.now + r.p.EC2.NodeLaunch.Seconds(), free: capacity(t), interruptAt: math.Inf(1)}
	n.idx = len(r.nodes)
	r.nodes = append(r.nodes, n)
	r.nodesLaunched++
	if spot {
		if rate := r.p.Interruptions.rate(t); rate > 0 {
			n.interruptAt = r.now + r.rng.ExpFloat64()/rate*3600
			r.push(event{at: n.interruptAt, kind: evInterrupt, n: n})
		}
	}
	return n
}

// place puts an attempt on a node; it starts once the node is ready, the
// image pulled and its checkpoint restored.
func (r *replay) place(a *attempt, n *node) {
	n.take(a)
	a.node, a.placedAt = n, r.now
	a.gen++
	start := max(r.now, n.ready)
	typ := r.t.Jobs[a.job].Type
	if n.pulled == nil {
		n.pulled = map[string]float64{}
	}
	if done, ok := n.pulled[typ]; ok {
		start = max(start, done) // a pull under way
	} else {
		start += r.p.EC2.ImagePull.Seconds()
		n.pulled[typ] = start
	}
	if a.resumed {
		start += r.p.Checkpoint.Restore.Seconds()
	}
	r.push(event{at: start, kind: evStart, a: a, n: n, gen: a.gen})
}

// checkpoints are an attempt's checkpoint interval and cost, seconds.
func (r *replay) checkpoints(a *attempt) (tau, delta float64) {
	return r.p.Checkpoint.Interval.Seconds(), r.p.Checkpoint.cost(r.t.Jobs[a.job].Type).Seconds()
}

// wall is the time an attempt takes to do work with periodic checkpoints
// (none after the last piece).
func (r *replay) wall(a *attempt, work float64) float64 {
	tau, delta := r.checkpoints(a)
	if tau <= 0 || work <= tau {
		return work
	}
	return work + (math.Ceil(work/tau)-1)*delta
}

// done is the work done, and the work checkpointed, after running for e
// seconds of an attempt's wall time.
func (r *replay) done(a *attempt, e float64) (work, saved float64) {
	tau, delta := r.checkpoints(a)
	if tau <= 0 {
		return e, 0
	}
	k := math.Floor(e / (tau + delta))
	rest := e - k*(tau+delta)
	return k*tau + min(rest, tau), k * tau
}

func (r *replay) start(a *attempt) {
	o := &r.out[a.job]
	a.attempts++
	a.runStart = r.now
	if math.IsNaN(o.firstStart) {
		o.firstStart = r.now
	}
	a.willOOM = a.alloc < r.need(a.job)
	runFor := r.wall(a, a.remaining)
	if a.willOOM {
		runFor = r.p.OOM.KilledAt * a.remaining
	}
	r.push(event{at: r.now + runFor, kind: evFinish, a: a, n: a.node, gen: a.gen})
}

// nodeShare is the part of a node's cost an attempt bears: its dominant
// share of the node's CPU, memory and (on GPU nodes) GPUs.
func nodeShare(a *attempt, t *Instance) float64 {
	share := max(a.cpu*1000/t.CPU, a.alloc/t.Memory)
	if t.GPUs > 0 {
		share = max(share, float64(a.gpus)/float64(t.GPUs))
	}
	return min(share, 1)
}

// account charges an attempt's time on its node, from placement to now.
func (r *replay) account(a *attempt, ran float64, oom bool) {
	n := a.node
	o := &r.out[a.job]
	held := r.now - a.placedAt
	share := nodeShare(a, n.typ)
	cost := n.typ.Price(n.spot) * held / 3600 * share
	// Dominant shares of pods that fill different resources can add up to
	// more than the node: never attribute more than it has cost so far.
	cost = min(cost, max(0, n.typ.Price(n.spot)*(r.now-n.launch)/3600-n.attributed))
	n.attributed += cost
	o.cost += cost
	if oom {
		o.oomCost += cost
	}
	r.podCPUh += a.cpu * ran / 3600
	r.podMemGBh += a.alloc / (1 << 30) * ran / 3600
	if n.spot {
		o.spotNodes += r.p.Interruptions.rate(n.typ)
		o.spotRuns++
	}
}

func (r *replay) finish(a *attempt) {
	n := a.node
	o := &r.out[a.job]
	ran := r.now - a.runStart
	r.account(a, ran, a.willOOM)
	n.release(a)
	r.nodeEmpty(n)
	if a.willOOM {
		r.usedMemGBh += a.alloc / (1 << 30) * ran / 3600
		if r.oomKilled(a) {
			r.enqueue(a)
			return
		}
		o.end = r.now
		return
	}
	peak := r.need(a.job)
	r.usedMemGBh += peak / (1 << 30) * ran / 3600
	o.slackGBh += (a.alloc - peak) / (1 << 30) * ran / 3600
	o.end = r.now
	a.node = nil
}

// interrupt reclaims a spot node: the attempts on it lose the work since
// their last checkpoint, unless the checkpoint taken on the two-minute
// notice completes, and are placed again.
func (r *replay) interrupt(n *node) {
	notice := r.now - noticeSeconds
	onNotice := *r.p.Checkpoint.OnNotice
	for _, a := range slices.Clone(n.running) {
		o := &r.out[a.job]
		var ran float64
		if !math.IsNaN(a.runStart) && a.runStart < r.now {
			ran = r.now - a.runStart
			o.interrupts++
			a.interruptions++
			if !a.willOOM { // an attempt bound to be OOM-killed loses its work either way
				work, saved := r.done(a, ran)
				if _, delta := r.checkpoints(a); onNotice > 0 && delta <= noticeSeconds && notice > a.runStart && r.rng.Float64() < onNotice {
					saved, _ = r.done(a, notice-a.runStart)
				}
				o.redone += work - saved
				if saved > 0 {
					a.remaining -= saved
					a.resumed = true
				}
			}
		}
		r.account(a, ran, a.willOOM)
		n.release(a)
		if after := *r.p.Capacity.OnDemandAfter; after > 0 && a.interruptions >= after {
			a.spot = false
		}
		r.enqueue(a)
	}
	r.terminate(n)
}

func (r *replay) nodeEmpty(n *node) {
	if len(n.running) > 0 {
		return
	}
	n.idleGen++
	r.push(event{at: r.now + r.p.EC2.IdleTimeout.Seconds(), kind: evIdle, n: n, gen: n.idleGen})
}

// terminate removes a node now and bills it.
func (r *replay) terminate(n *node) {
	n.gone = true
	last := r.nodes[len(r.nodes)-1]
	r.nodes[n.idx], last.idx = last, n.idx
	r.nodes = r.nodes[:len(r.nodes)-1]
	hours := max(r.now-n.launch, 60) / 3600 // EC2 bills Linux per second, 60 s minimum
	r.nodeCost += n.typ.Price(n.spot) * hours
	r.nodeHours += hours
	r.nodeCPUh += n.typ.CPU / 1000 * hours
	r.nodeMemGBh += n.typ.Memory / (1 << 30) * hours
}
