package simulate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/internal/quantreg"
	"github.com/jobfleet/jobfleet/predictor"
)

// allocate returns each job's first-attempt memory under the policy's
// sizing. Learning methods walk forward: every RetrainEvery they are
// trained on the jobs that ended (in the trace) within the last Window,
// and size the jobs submitted until the next retraining. A job whose peak
// is censored enters training as its bound times OOM.CensoredGrowth (the
// type quantile) or as an OOM-killed run (the predictor): never as a peak.
func allocate(ctx context.Context, t *Trace, p *Policy) ([]float64, error) {
	s := p.Sizing
	alloc := make([]float64, len(t.Jobs))
	// final turns a method's size into what the job is given; a user's
	// own request is taken as it is.
	final := func(i int, a float64) float64 {
		return s.give(a, s.Method != SizingRequested || !(t.Jobs[i].Requested > 0))
	}
	switch s.Method {
	case SizingFixed:
		for i := range alloc {
			alloc[i] = final(i, float64(s.Memory))
		}
	case SizingRequested:
		for i, j := range t.Jobs {
			a := j.Requested
			if !(a > 0) {
				a = float64(s.Memory)
			}
			alloc[i] = final(i, a)
		}
	case SizingTypeQuantile, SizingTypeMax, SizingPredictor:
		if err := walkForward(ctx, t, p, alloc, final); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("sizing method %q", s.Method)
	}
	return alloc, nil
}

// give is what a job is given for a method's size a: times the buffer
// when buffered, at least the minimum, up the ladder.
func (s Sizing) give(a float64, buffered bool) float64 {
	if buffered {
		a *= s.Buffer
	}
	a = max(a, float64(*s.Minimum))
	if s.Ladder {
		a = ladder(a)
	}
	return a
}

// sizer is a learning sizing method; train, at time now, sees the
// allocations the jobs of its history were given.
type sizer interface {
	train(ctx context.Context, now float64, history []int, alloc []float64) error
	size(j int) float64
}

// known is when a job's need became known.
func (j *Job) known() float64 {
	if j.Known > 0 {
		return j.Known
	}
	return j.Submit + j.Runtime
}

func walkForward(ctx context.Context, t *Trace, p *Policy, alloc []float64, final func(int, float64) float64) error {
	every, window := p.Sizing.RetrainEvery.Seconds(), p.Sizing.Window.Seconds()
	// Jobs become history when they end.
	byEnd := make([]int, len(t.Jobs))
	for i := range byEnd {
		byEnd[i] = i
	}
	end := func(i int) float64 { return t.Jobs[i].known() }
	sort.SliceStable(byEnd, func(a, b int) bool { return end(byEnd[a]) < end(byEnd[b]) })

	var m sizer
	switch p.Sizing.Method {
	case SizingPredictor:
		ps := &predictorSizer{t: t, q: p.Sizing.Quantile, growth: p.OOM.CensoredGrowth, killedAt: p.OOM.KilledAt}
		ps.give = func(memory float64) float64 { return p.Sizing.give(memory, true) }
		ps.alone = make([]float64, len(t.Jobs))
		if p.Sizing.OnlineRate >= 0 {
			ps.raiser = online.New(p.Sizing.OnlineRate, func(_ predictor.Job, memory float64) float64 { return ps.give(memory) })
		}
		m = ps
	case SizingTypeMax:
		m = &quantileSizer{t: t, q: 1, growth: p.OOM.CensoredGrowth}
	default:
		m = &quantileSizer{t: t, q: p.Sizing.Quantile, growth: p.OOM.CensoredGrowth}
	}
	trained := false
	lo, hi := 0, 0
	next := 0
	for start := t.Jobs[0].Submit; next < len(t.Jobs); start += every {
		if err := ctx.Err(); err != nil {
			return err
		}
		for hi < len(byEnd) && end(byEnd[hi]) <= start {
			hi++
		}
		for lo < hi && end(byEnd[lo]) < start-window {
			lo++
		}
		if hi > lo {
			if err := m.train(ctx, start, byEnd[lo:hi], alloc); err != nil {
				return err
			}
			trained = true
		}
		for next < len(t.Jobs) && t.Jobs[next].Submit < start+every {
			a := math.NaN()
			if trained {
				a = m.size(next)
			}
			if math.IsNaN(a) {
				a = coldStart(t, p, next) // nothing has ended yet
			}
			alloc[next] = final(next, a)
			next++
		}
	}
	return nil
}

// coldStart sizes a job submitted before any job ended: the policy's
// memory if it names one, else the user's request, else 4 GiB.
func coldStart(t *Trace, p *Policy, i int) float64 {
	switch {
	case p.Sizing.Memory > 0:
		return float64(p.Sizing.Memory)
	case t.Jobs[i].Requested > 0:
		return t.Jobs[i].Requested
	}
	return 4 << 30
}

// need is what training takes a job to have needed.
func need(j *Job, growth float64) float64 {
	if j.Censored {
		return j.Peak * growth
	}
	return j.Peak
}

// quantileSizer is the per-type quantile of past peaks; types without
// history get the quantile over all types.
type quantileSizer struct {
	t      *Trace
	q      float64
	growth float64
	byType quantreg.Groups
}

func (s *quantileSizer) train(_ context.Context, _ float64, history []int, _ []float64) error {
	s.byType = quantreg.GroupQuantiles(s.q, func(add func(string, float64)) {
		for _, i := range history {
			j := &s.t.Jobs[i]
			add(j.Type, need(j, s.growth))
		}
	})
	return nil
}

func (s *quantileSizer) size(i int) float64 { return s.byType.Of(s.t.Jobs[i].Type) }

// predictorSizer is jobfleet's predictor, retrained at each step, and
// raised after misses between retrainings as the dispatcher raises it.
type predictorSizer struct {
	t      *Trace
	q      float64
	growth float64
	model  *predictor.Model
	// killedAt is the share of its runtime a job that needs more than it
	// was given runs before it is killed (OOM.KilledAt).
	killedAt float64
	// raiser raises the model's sizes from the jobs sized that ended, or
	// were killed (pending), before each job is sized; nil for the model
	// alone. alone
	// is what the model's size alone gave each job, 0 when it gave none;
	// give turns a size into what a job is given (Sizing.give).
	raiser  *online.Raiser
	pending online.Pending[sizedJob]
	alone   []float64
	give    func(float64) float64
}

// sizedJob is a job the predictor sized, observed when it ends or is
// killed: missed says it needed more than it was given.
type sizedJob struct {
	i      int
	job    predictor.Job
	missed bool
}

// observe tells the raiser, for the current model, how a job it sized
// fared.
func (s *predictorSizer) observe(e sizedJob) {
	s.raiser.Observe(s.model, e.job, s.alone[e.i], e.missed)
}

func (s *predictorSizer) train(ctx context.Context, now float64, history []int, alloc []float64) error {
	ds := &predictor.Dataset{Features: s.t.Features, Samples: make([]predictor.Sample, 0, len(history))}
	for _, i := range history {
		j := &s.t.Jobs[i]
		// What the job was given and whether that sufficed, as run records
		// tell the predictor: it adapts its margin from them.
		smp := predictor.Sample{Time: j.known(), Type: j.Type, Features: j.Features, Peak: j.Peak, Allocated: alloc[i]}
		if s.alone[i] > 0 {
			// The margin measures the model's own sizes, not the floor
			// nor the raise.
			smp.Predicted = s.alone[i]
		}
		switch {
		case j.Censored:
			// Only the kill is known: no peak to learn from.
			smp.Missed, smp.Allocated = true, j.Peak
		case alloc[i] < j.Peak:
			// Killed at its allocation, then rerun with more: two records.
			killed := smp
			killed.Missed = true
			ds.Samples = append(ds.Samples, killed)
			smp.Allocated = math.NaN()
		}
		ds.Samples = append(ds.Samples, smp)
	}
	m, err := s.model.Retrain(ctx, ds, predictor.Options{Quantile: s.q})
	if errors.Is(err, predictor.ErrNoData) {
		return nil // only censored jobs so far: keep the previous model
	}
	if err != nil {
		return fmt.Errorf("training the predictor: %w", err)
	}
	if s.raiser != nil {
		// What was heard before now tells the model it replaces: the
		// dispatcher's raise reads only the runs stored after a model's
		// records were read. (A kill heard before now whose job is
		// known only later is in neither this model's history nor its
		// raise; the dispatcher would train on its record.)
		s.pending.Ended(now, s.observe)
		m = s.raiser.Carry(s.model, m)
	}
	s.model = m
	return nil
}

func (s *predictorSizer) size(i int) float64 {
	if s.model == nil {
		return math.NaN()
	}
	j := &s.t.Jobs[i]
	job := predictor.Job{Type: j.Type, Features: make(map[string]float64, len(j.Features))}
	for k, name := range s.t.Features {
		job.Features[name] = j.Features[k]
	}
	if s.raiser == nil {
		p := s.model.Predict(job)
		if !(p.Memory > 0) {
			return math.NaN()
		}
		s.alone[i] = s.give(p.Memory)
		return p.Allocation()
	}
	// The jobs that ended, or were killed, before this one is sized have
	// told the dispatcher whether they fit.
	s.pending.Ended(j.Submit, s.observe)
	p := s.raiser.Predict(s.model, job)
	if !(p.Memory > 0) {
		return math.NaN()
	}
	s.alone[i] = s.give(p.Memory)
	size := p.Allocation()
	// The dispatcher hears of a run that fit when it ends, of one that
	// did not when it is killed. (What the job is given is what
	// walkForward makes of size: give.)
	missed := s.give(size) < need(j, s.growth)
	told := j.known()
	if missed {
		told = j.Submit + s.killedAt*j.Runtime
	}
	s.pending.Add(told, sizedJob{i: i, job: job, missed: missed})
	return size
}
