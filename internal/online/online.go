// Package online raises a memory model's sizes between its retrainings,
// group by group, from how the runs it sized fared.
//
// The dispatcher retrains its model once a day. A group of jobs that
// starts needing more memory in between (a user's new input, a new
// release) would be sized too small, and OOM-killed, until then. A Raiser
// keeps, for each group that decides a size (the Prediction's Level and
// Group; with estimators, the level and the job's type), a multiplier on the model's size that every run of the group
// moves when it ends: up by rate*q after a miss (an OOM kill), down by
// rate*(1-q) after a run that fit, in log space, never below 1 nor above
// 4. This is adaptive conformal inference per group: while a group's
// misses run above 1 - q its sizes rise, and they come back down as it
// fits again. The multipliers start at 1 with every new model, which has
// learned from those runs.
//
// A Raiser lives in one process: it learns from the runs that process
// observes, and starts again at 1 when the process restarts.
package online

import (
	"math"
	"sync"
	"time"

	"github.com/jobfleet/jobfleet/predictor"
)

// DefaultRate is the step of a group's log multiplier per run: after a
// miss at q = 0.9 a group's sizes rise by 4.6%, and a group whose jobs
// all miss doubles its sizes in 17 runs.
const DefaultRate = 0.05

// MaxRaise bounds the multiplier.
const MaxRaise = 4.0

// maxGroups bounds the groups tracked; later ones are not raised.
const maxGroups = 100_000

// Raiser raises a model's sizes by group after misses. It is safe for
// concurrent use.
type Raiser struct {
	rate float64

	mu    sync.Mutex
	model *predictor.Model
	since time.Time          // when model sized its first job
	logs  map[string]float64 // log multiplier by group
}

// New returns a Raiser that moves a group's log multiplier by rate per
// run (DefaultRate when zero).
func New(rate float64) *Raiser {
	if rate == 0 {
		rate = DefaultRate
	}
	return &Raiser{rate: rate}
}

// Predict sizes job with m, raised by its group's multiplier. now is when
// the job is sized: the first job a model sizes starts its groups at 1.
func (r *Raiser) Predict(m *predictor.Model, job predictor.Job, now time.Time) predictor.Prediction {
	p := m.Predict(job)
	r.mu.Lock()
	defer r.mu.Unlock()
	if m != r.model {
		r.model, r.since, r.logs = m, now, map[string]float64{}
	}
	if p.Source == predictor.SourceNone {
		return p
	}
	if l := r.logs[key(job, p)]; l > 0 {
		f := math.Exp(l)
		p.Memory, p.Raise = p.Memory*f, f
	}
	return p
}

// Observe counts a run that ended: missed tells whether it needed more
// memory than it was given. It moves the multiplier of the group the
// current model sizes job by. Runs that started before that model sized
// its first job are left out: an older model sized them.
func (r *Raiser) Observe(job predictor.Job, started time.Time, missed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.model == nil || started.Before(r.since) {
		return
	}
	p := r.model.Predict(job)
	if p.Source == predictor.SourceNone {
		return
	}
	k := key(job, p)
	l, ok := r.logs[k]
	if !ok && len(r.logs) >= maxGroups {
		return
	}
	q := r.model.Quantile()
	step := -r.rate * (1 - q)
	if missed {
		step = r.rate * q
	}
	r.logs[k] = min(max(l+step, 0), math.Log(MaxRaise))
}

// Raised counts the groups whose sizes are raised now.
func (r *Raiser) Raised() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.logs {
		if l > 0 {
			n++
		}
	}
	return n
}

// key names the group that decided a job's size: its level and group, or
// with a model that keeps no groups (estimators), its level and type.
func key(job predictor.Job, p predictor.Prediction) string {
	if p.Group == "" {
		return p.Level + "\x00" + job.Type
	}
	return p.Level + "\x00" + p.Group
}
