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
// takes up where it was; the retraining replays the runs its model's
// predecessor sized (Replay) to carry the raise, so the carried part is
// the same for every replica.
package online

import (
	"container/heap"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/internal/contract"
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
// group at the raise it carries (Model.Raises), or 1; r then forgets the
// model it raised before.
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
	raises := m.Raises()
	// In the groups' order, so that every replica keeps the same ones
	// of a model file carrying more than it can hold.
	for _, k := range slices.Sorted(maps.Keys(raises)) {
		if len(r.logs) >= maxGroups {
			break
		}
		if l := math.Log(min(raises[k], MaxRaise)); l >= 1e-9 {
			r.logs[k] = raised{log: l}
		}
	}
}

// Observe counts a run that ended, for model m (a model not seen before
// starts every group at the raise it carries, or 1): alone is the
// allocation the model's size gave it before any raise, and missed tells
// whether it needed more memory than it was given. It moves the
// multiplier of the group m sizes job by, if m would have given the job
// the same allocation: a run an older model sized differently, or one
// sized otherwise (a rerun after an OOM kill), tells nothing of m's.
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
// told of: a model r has not seen starts at the raises it carries, and r
// forgets the one it raised before. Without prev, next is returned as it
// is.
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

// SizedAfter is when m's runs were read (Model.RunsUntil, or when it was
// trained if that is not known): every run m sized ended after it.
func SizedAfter(m *predictor.Model) time.Time {
	if until := m.RunsUntil(); !until.IsZero() {
		return until
	}
	return m.TrainedAt()
}

// Run is a run that ended, as a replay is told of it: the job, when it
// ended, the allocation the model's size alone gave it, and whether it
// needed more memory than it was given.
type Run struct {
	Job    predictor.Job
	Ended  time.Time
	Alone  float64
	Missed bool
}

// Replay tells a Raiser of r's rate and allocations, started at the
// raises prev carries, of the runs prev sized (those that ended after its
// runs were read), in the order they ended, and returns Carry(prev, next)
// from it: the raise a retraining that read runs carries into next.
// Without prev, next is returned as it is.
func (r *Raiser) Replay(prev, next *predictor.Model, runs []Run) *predictor.Model {
	if prev == nil {
		return next
	}
	since := SizedAfter(prev)
	sized := slices.DeleteFunc(slices.Clone(runs), func(run Run) bool { return !run.Ended.After(since) })
	slices.SortStableFunc(sized, func(a, b Run) int { return a.Ended.Compare(b.Ended) })
	replay := &Raiser{rate: r.rate, alloc: r.alloc}
	for _, run := range sized {
		replay.Observe(prev, run.Job, run.Alone, run.Missed)
	}
	return replay.Carry(prev, next)
}

// Raised counts the groups whose sizes are raised now.
func (r *Raiser) Raised() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.logs)
}

// Raises returns the raise of every group r raises now under m (a model
// not seen before starts at the raises it carries), by the group's
// contract.RaiseGroup.
func (r *Raiser) Raises(m *predictor.Model) map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.use(m)
	out := make(map[string]float64, len(r.logs))
	for k, g := range r.logs {
		out[k] = math.Exp(g.log)
	}
	return out
}

// key names the group that decided a job's size: its level and group, or
// with a model that keeps no groups (estimators), its level and type.
func key(job predictor.Job, p predictor.Prediction) string {
	return contract.RaiseGroup(p.Level, p.Group, job.Type)
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
