// Package online raises a memory model's sizes between its retrainings,
// group by group, from how the runs it sized fared.
//
// The dispatcher retrains its model once a day. A group of jobs that
// starts needing more memory in between (a user's new input, a new
// release) would be sized too small, and OOM-killed, until then. A Raiser
// keeps, for each group that decides a size (the Prediction's Level and
// Group; with estimators, the level and the job's type), a multiplier on
// the model's size that every run of the group moves when it ends: up by
// rate*q after a miss (an OOM kill), down by rate*(1-q) after a run that
// fit, in log space, never below 1 nor above 4. This is adaptive
// conformal inference per group: while a group's misses run above 1 - q
// its sizes rise, and they come back down as it fits again. Only runs the
// current model would have sized the same move them.
//
// A new model has learned from the runs that raised its predecessor, but
// a group whose needs keep growing (each burst of a user's jobs larger
// than the last) outruns what a day's retraining learns. So a retraining
// carries half of each group's raise, in log space (CarryShare), into the
// model it trains (Model.Raises): a group raised x4 starts the new model
// at x2, and one raised x1.2 at x1.095. The runs the new model sizes move
// it from there.
//
// A Raiser lives in one process and learns from the runs it is told of.
// The dispatcher tells every replica's Raiser of every run stored since
// its model was trained, so the replicas raise alike and a restarted one
// takes up where it was; the retraining replays the same runs (Replay)
// to carry the raise, so the carried part is the same for every replica.
package online

import (
	"cmp"
	"container/heap"
	"math"
	"slices"
	"sync"

	"github.com/jobfleet/jobfleet/predictor"
)

// DefaultRate is the step of a group's log multiplier per run: after a
// miss at q = 0.9 a group's sizes rise by 4.6%, and a group whose jobs
// all miss doubles its sizes in 16 runs.
const DefaultRate = 0.05

// MaxRaise bounds the multiplier.
const MaxRaise = 4.0

// CarryShare is the share of a group's log multiplier that a retraining
// carries into the model it trains.
const CarryShare = 0.5

// maxGroups bounds the groups raised at once; others wait for room.
const maxGroups = 100_000

// Raiser raises a model's sizes by group after misses. It is safe for
// concurrent use.
type Raiser struct {
	rate  float64
	alloc func(job predictor.Job, memory float64) float64

	mu    sync.Mutex
	model *predictor.Model
	logs  map[string]raised // by group, only those above 1
}

// New returns a Raiser that moves a group's log multiplier by rate per
// run (DefaultRate when zero). alloc gives the allocation a job gets for
// the model's size memory, before any raise (its bounds and rounding);
// nil takes the model's size as it is.
func New(rate float64, alloc func(job predictor.Job, memory float64) float64) *Raiser {
	if rate == 0 {
		rate = DefaultRate
	}
	if alloc == nil {
		alloc = func(_ predictor.Job, memory float64) float64 { return memory }
	}
	return &Raiser{rate: rate, alloc: alloc}
}

// Predict sizes job with m: the model's prediction, with Raise set to its
// group's multiplier when that is above 1 (Memory stays the model's own;
// the job gets its Allocation). A model not seen before starts every
// group at 1.
func (r *Raiser) Predict(m *predictor.Model, job predictor.Job) predictor.Prediction {
	p := m.Predict(job)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.use(m)
	if p.Source == predictor.SourceNone {
		return p
	}
	if g := r.logs[key(job, p)]; g.log > 0 {
		p.Raise = math.Exp(g.log)
	}
	return p
}

// use makes m the model sized with; a new one starts every group at the
// raise m carries for it (Model.Raises), or 1.
func (r *Raiser) use(m *predictor.Model) {
	if m == r.model {
		return
	}
	r.model, r.logs = m, map[string]raised{}
	for k, v := range m.Raises() {
		if len(r.logs) >= maxGroups {
			break
		}
		if l := math.Log(min(v, MaxRaise)); l >= 1e-9 {
			r.logs[k] = raised{log: l}
		}
	}
}

// Observe counts a run that ended, for model m (a model not seen before
// starts every group at 1): alone is the allocation the model's size gave
// it before any raise, and missed tells whether it needed more memory
// than it was given. It moves the multiplier of the group m sizes job
// by, if m would have given the job the same allocation: a run an older
// model sized differently, or one sized otherwise (a rerun after an OOM
// kill), tells nothing of m's.
func (r *Raiser) Observe(m *predictor.Model, job predictor.Job, alone float64, missed bool) {
	if m == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.use(m)
	p := m.Predict(job)
	if p.Source == predictor.SourceNone || r.alloc(job, p.Memory) != alone {
		return
	}
	k := key(job, p)
	g, ok := r.logs[k]
	if !ok && len(r.logs) >= maxGroups {
		return
	}
	q := m.Quantile()
	step := -r.rate * (1 - q)
	if missed {
		step = r.rate * q
	}
	l := min(g.log+step, math.Log(MaxRaise))
	if l < 1e-9 { // back at 1 (a sum of steps rarely lands on 0 exactly)
		delete(r.logs, k)
		return
	}
	r.logs[k] = raised{log: l, job: &job}
}

// raised is a group's raise: its log multiplier, and the last job told
// of in it (nil for a raise a model carried in).
type raised struct {
	log float64
	job *predictor.Job
}

// Carry returns next, starting every group at CarryShare of the raise r
// holds for prev (in log space): how a retraining that replaces prev with
// next carries the raise over. A group's raise goes to the group that
// sizes its last job under next (next may decide it at another level);
// where several land on one, the largest. prev is the model r has been
// told of (a model r has not seen starts at the raises it carries);
// without prev, next is returned as it is.
func (r *Raiser) Carry(prev, next *predictor.Model) *predictor.Model {
	if prev == nil {
		return next
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.use(prev)
	raises := make(map[string]float64, len(r.logs))
	for k, g := range r.logs {
		if g.log*CarryShare < 1e-9 {
			continue
		}
		if g.job != nil {
			p := next.Predict(*g.job)
			if p.Source == predictor.SourceNone {
				continue
			}
			k = key(*g.job, p)
		}
		raises[k] = max(raises[k], math.Exp(g.log*CarryShare))
	}
	return next.WithRaises(raises)
}

// Replay tells a Raiser of r's rate and allocations, started afresh, of
// the runs of ds that prev sized (those that ended after its runs were
// read, in the order they ended), as the dispatcher's replicas were told
// of them, and returns Carry(prev, next) from it: the carried raise of a
// retraining that read ds. A run is told as the dispatcher tells a run
// record: Sample.Predicted the model's allocation, a miss when it was
// OOM-killed or peaked above Sample.Allocated. Without prev, next is
// returned as it is.
func (r *Raiser) Replay(prev, next *predictor.Model, ds *predictor.Dataset) *predictor.Model {
	if prev == nil {
		return next
	}
	since := prev.RunsUntil()
	if since.IsZero() {
		since = prev.TrainedAt()
	}
	after := float64(since.UnixMilli()) / 1e3
	var runs []int
	for i, s := range ds.Samples {
		if s.End() > after && s.Predicted > 0 && !math.IsNaN(s.Allocated) {
			runs = append(runs, i)
		}
	}
	slices.SortStableFunc(runs, func(a, b int) int { return cmp.Compare(ds.Samples[a].End(), ds.Samples[b].End()) })
	replay := New(r.rate, nil)
	replay.alloc = r.alloc
	for _, i := range runs {
		s := ds.Samples[i]
		job := predictor.Job{Type: s.Type, Pool: s.Pool, Labels: s.Labels, Features: make(map[string]float64, len(ds.Features))}
		for j, name := range ds.Features {
			if !math.IsNaN(s.Features[j]) {
				job.Features[name] = s.Features[j]
			}
		}
		replay.Observe(prev, job, s.Predicted, s.Missed || s.Peak > s.Allocated)
	}
	return replay.Carry(prev, next)
}

// Raised counts the groups whose sizes are raised now.
func (r *Raiser) Raised() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.logs)
}

// key names the group that decided a job's size: its level and group, or
// with a model that keeps no groups (estimators), its level and type.
func key(job predictor.Job, p predictor.Prediction) string {
	if p.Group == "" {
		return p.Level + "\x00" + job.Type
	}
	return p.Level + "\x00" + p.Group
}

// Pending holds the runs a replay of the raise over a trace has sized
// and that have not ended yet: each is handed back, to be observed, once
// its end has passed. The zero value is empty.
type Pending[T any] struct{ runs pendingRuns[T] }

// Add holds run until end.
func (p *Pending[T]) Add(end float64, run T) { heap.Push(&p.runs, pending[T]{end, run}) }

// Ended calls observe with every run held that ended at or before now,
// earliest first, and lets it go.
func (p *Pending[T]) Ended(now float64, observe func(T)) {
	for len(p.runs) > 0 && p.runs[0].end <= now {
		observe(heap.Pop(&p.runs).(pending[T]).run)
	}
}

type pending[T any] struct {
	end float64
	run T
}

// pendingRuns is a min-heap of runs by end.
type pendingRuns[T any] []pending[T]

func (e pendingRuns[T]) Len() int           { return len(e) }
func (e pendingRuns[T]) Less(i, j int) bool { return e[i].end < e[j].end }
func (e pendingRuns[T]) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *pendingRuns[T]) Push(x any)        { *e = append(*e, x.(pending[T])) }
func (e *pendingRuns[T]) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}
