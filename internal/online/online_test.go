package online

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/predictor"
)

// constantModel is a model file's worth of per-type sizes, read as the
// dispatcher reads one.
func constantModel(t *testing.T, sizes map[string]float64) *predictor.Model {
	t.Helper()
	m, err := readConstantModel(sizes, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readConstantModel reads a model file of per-type sizes with the
// fields of extra.
func readConstantModel(sizes map[string]float64, extra map[string]any) (*predictor.Model, error) {
	types := map[string]any{}
	for typ, v := range sizes {
		types[typ] = map[string]any{"kind": "quantile", "constant": math.Log(v), "floor": 0, "ceiling": 100}
	}
	f := map[string]any{"format": "jobfleet-predictor", "version": 2, "quantile": 0.9, "types": types}
	maps.Copy(f, extra)
	file, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return predictor.ReadModel(bytes.NewReader(file))
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*b }

// size is what a job gets: the model's size times the raise.
func size(p predictor.Prediction) float64 { return p.Allocation() }

func TestRaise(t *testing.T) {
	t.Parallel()
	model := constantModel(t, map[string]float64{"a": 1000, "b": 1000})
	r := New(0, nil)
	a, b := predictor.Job{Type: "a"}, predictor.Job{Type: "b"}
	sized := func(job predictor.Job) float64 { return size(r.Predict(model, job)) }
	if p := r.Predict(model, a); !near(p.Memory, 1000) || p.Raise != 0 {
		t.Fatalf("before any run ended: %v (raise %v), want the model's 1000", p.Memory, p.Raise)
	}
	alone := model.Predict(a).Memory
	current := model
	observe := func(job predictor.Job, n int, missed bool) {
		for range n {
			r.Observe(current, job, alone, missed)
		}
	}
	// Ten misses: up by 0.05 * 0.9 each, in log space; the prediction's
	// Memory stays the model's own.
	observe(a, 10, true)
	want := 1000 * math.Exp(10*DefaultRate*0.9)
	if p := r.Predict(model, a); !near(p.Memory, 1000) || !near(size(p), want) {
		t.Errorf("after 10 misses: model %v raised by %v, want the model's 1000 raised to %v", p.Memory, p.Raise, want)
	}
	if got := sized(b); !near(got, 1000) {
		t.Errorf("another group: %v, want its own 1000", got)
	}
	if r.Raised() != 1 {
		t.Errorf("%d groups raised, want 1", r.Raised())
	}
	// Each run that fits lowers it by 0.05 * 0.1: ninety undo ten misses,
	// and more never go below the model.
	observe(a, 90, false)
	if got := sized(a); !near(got, 1000) {
		t.Errorf("after 90 runs that fit: %v, want back to the model's 1000", got)
	}
	observe(a, 50, false)
	if got := sized(a); !near(got, 1000) || r.Raised() != 0 {
		t.Errorf("after more runs that fit: %v and %d groups raised, want the model's 1000 and none", got, r.Raised())
	}
	// Never above MaxRaise.
	observe(a, 1000, true)
	if got := sized(a); !near(got, 1000*MaxRaise) {
		t.Errorf("after 1,000 misses: %v, want %v", got, 1000*MaxRaise)
	}
	// Runs sized otherwise than the model alone would (a rerun after an
	// OOM kill, an older model's size) tell nothing.
	for range 10 {
		r.Observe(model, b, 1500, true)
	}
	if got := sized(b); !near(got, 1000) {
		t.Errorf("after misses of runs given 1500: %v, want the model's 1000", got)
	}
	// A job the model has nothing to size by is left alone, and tells
	// nothing.
	r.Observe(model, predictor.Job{Type: "unknown"}, 0, true)
	if p := r.Predict(model, predictor.Job{Type: "unknown"}); p.Source != predictor.SourceNone || p.Memory != 0 || r.Raised() != 1 {
		t.Errorf("unknown type: %v from %s, %d groups raised (want only a)", p.Memory, p.Source, r.Raised())
	}

	// A new model starts from its own sizes; runs sized by the old one
	// (1000, where the new one gives 2000) do not move it.
	next := constantModel(t, map[string]float64{"a": 2000})
	if p := r.Predict(next, a); !near(p.Memory, 2000) || p.Raise != 0 || r.Raised() != 0 {
		t.Errorf("a new model: %v (raise %v), %d groups raised; want its 2000 and none", p.Memory, p.Raise, r.Raised())
	}
	current = next
	observe(a, 10, true)
	if got := size(r.Predict(next, a)); !near(got, 2000) {
		t.Errorf("after misses of runs an older model sized: %v, want 2000", got)
	}
	r.Observe(next, a, next.Predict(a).Memory, true)
	if got := size(r.Predict(next, a)); got <= 2000*1.01 {
		t.Errorf("after a miss of a run it sized: %v, want above 2000", got)
	}
}

// TestRaiseCarry: a retraining carries half of each group's raise, in
// log space, into the model it trains; the runs the new model sizes move
// it from there, and the model file keeps it.
func TestRaiseCarry(t *testing.T) {
	t.Parallel()
	model := constantModel(t, map[string]float64{"a": 1000, "b": 1000, "c": 1000})
	a, b, c := predictor.Job{Type: "a"}, predictor.Job{Type: "b"}, predictor.Job{Type: "c"}
	r := New(0, nil)
	alone := model.Predict(a).Memory
	for range 20 {
		r.Observe(model, a, alone, true) // log 0.9
	}
	r.Observe(model, b, alone, true) // log 0.045
	r.Observe(model, c, alone, true)
	r.Observe(model, c, alone, false) // log 0.04
	for range 8 {
		r.Observe(model, c, alone, false) // back at 1
	}
	next := r.Carry(model, constantModel(t, map[string]float64{"a": 2000, "b": 1000, "c": 1000}))
	// A group goes with its jobs where the new model decides them at
	// another level: here, its global estimator.
	global, err := readConstantModel(map[string]float64{"z": 1000}, map[string]any{"global": map[string]any{"kind": "quantile", "constant": math.Log(3000), "floor": 0, "ceiling": 100}})
	if err != nil {
		t.Fatal(err)
	}
	if p := New(0, nil).Predict(r.Carry(model, global), a); p.Source != predictor.SourceGlobal || !near(p.Raise, math.Exp(0.45)) {
		t.Errorf("a decided by %s under the new model: raised x%v, want x%v", p.Source, p.Raise, math.Exp(0.45))
	}
	raises := next.Raises()
	if len(raises) != 2 {
		t.Errorf("carried %v, want two groups (c is back at 1)", raises)
	}
	if p := r.Predict(next, a); !near(p.Memory, 2000) || !near(p.Raise, math.Exp(0.45)) {
		t.Errorf("a under the new model: %v raised x%v, want its 2000 raised x%v", p.Memory, p.Raise, math.Exp(0.45))
	}
	if p := r.Predict(next, b); !near(p.Raise, math.Exp(0.0225)) {
		t.Errorf("b under the new model: raised x%v, want x%v", p.Raise, math.Exp(0.0225))
	}
	if p := r.Predict(next, c); p.Raise != 0 {
		t.Errorf("c under the new model: raised x%v, want none", p.Raise)
	}
	// The new model's runs move it from there: ten that fit, -0.05.
	for range 10 {
		r.Observe(next, a, next.Predict(a).Memory, false)
	}
	if p := r.Predict(next, a); !near(p.Raise, math.Exp(0.4)) {
		t.Errorf("after ten fits: raised x%v, want x%v", p.Raise, math.Exp(0.4))
	}
	// Another process reading the model file starts from the same.
	var file bytes.Buffer
	if err := next.Write(&file); err != nil {
		t.Fatal(err)
	}
	read, err := predictor.ReadModel(&file)
	if err != nil {
		t.Fatal(err)
	}
	if p := New(0, nil).Predict(read, a); !near(p.Raise, math.Exp(0.45)) {
		t.Errorf("from the model file: raised x%v, want x%v", p.Raise, math.Exp(0.45))
	}
	if p := read.Predict(a); p.Raise != 0 || !near(p.Allocation(), 2000) {
		t.Errorf("the model alone: %v raised x%v, want its 2000 (the raise is the dispatcher's)", p.Allocation(), p.Raise)
	}
	// The carried raise is held to MaxRaise; a model file with one below
	// 1, or not a number, is rejected.
	if m, err := readConstantModel(map[string]float64{"a": 1000}, map[string]any{"raises": map[string]any{key(a, model.Predict(a)): 1e6}}); err != nil {
		t.Error(err)
	} else if p := New(0, nil).Predict(m, a); !near(p.Raise, MaxRaise) {
		t.Errorf("a carried raise of 1e6: x%v, want x%v", p.Raise, MaxRaise)
	}
	for _, bad := range []any{0.5, "NaN", -1} {
		if _, err := readConstantModel(map[string]float64{"a": 1000}, map[string]any{"raises": map[string]any{"x": bad}}); err == nil || !strings.Contains(err.Error(), "raises") {
			t.Errorf("a carried raise of %v: %v, want an error naming raises", bad, err)
		}
	}
}

// TestRaiseReplay: the retraining replays the runs its model's
// predecessor sized, in the order they ended, as the dispatcher told
// them, and carries the raise they add up to.
func TestRaiseReplay(t *testing.T) {
	t.Parallel()
	until := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	prev, err := readConstantModel(map[string]float64{"a": 1000, "b": 1000}, map[string]any{"runs_until": until})
	if err != nil {
		t.Fatal(err)
	}
	a, b := predictor.Job{Type: "a"}, predictor.Job{Type: "b"}
	alone := prev.Predict(a).Memory // 1000, to a rounding
	run := func(job predictor.Job, end time.Duration, missed bool) Run {
		return Run{Job: job, Ended: until.Add(end), Alone: alone, Missed: missed}
	}
	// Given out of order: b's fit ended first (at 1, it stays at 1), its
	// miss last, so b ends at log 0.045; the other way round it would end
	// at 0.04.
	runs := []Run{run(b, 3*time.Hour, true), run(b, time.Hour, false)}
	for i := range 10 {
		runs = append(runs, run(a, time.Duration(i+1)*time.Minute, true))
	}
	rerun := run(a, time.Hour, true)
	rerun.Alone = 1500
	runs = append(runs,
		run(a, 2*time.Hour, false), // fit: log 0.45 - 0.005
		run(a, 0, true),            // ended as prev's runs were read
		rerun,                      // sized otherwise (a rerun)
	)
	next, err := readConstantModel(map[string]float64{"a": 1000, "b": 1000}, map[string]any{"runs_until": until.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	carried := New(0, nil).Replay(prev, next, runs)
	if p := New(0, nil).Predict(carried, a); !near(p.Raise, math.Exp(0.445/2)) {
		t.Errorf("a: carried x%v, want x%v", p.Raise, math.Exp(0.445/2))
	}
	if p := New(0, nil).Predict(carried, b); !near(p.Raise, math.Exp(0.045/2)) {
		t.Errorf("b: carried x%v, want x%v (its runs told in the order they ended)", p.Raise, math.Exp(0.045/2))
	}
	if got := New(0, nil).Replay(nil, next, runs); got != next {
		t.Error("without a previous model, Replay changed the model")
	}
	// The next retraining replays the runs the carried model sized from
	// where it started them: a from 0.2225, plus five misses, halved; b,
	// which ran nothing, halved again.
	var later []Run
	for i := range 5 {
		later = append(later, run(a, 24*time.Hour+time.Duration(i+1)*time.Minute, true))
	}
	again := New(0, nil).Replay(carried, constantModel(t, map[string]float64{"a": 1000, "b": 1000}), append(later, runs...))
	if p := New(0, nil).Predict(again, a); !near(p.Raise, math.Exp((0.445/2+0.225)/2)) {
		t.Errorf("a, a model later: carried x%v, want x%v", p.Raise, math.Exp((0.445/2+0.225)/2))
	}
	if p := New(0, nil).Predict(again, b); !near(p.Raise, math.Exp(0.045/4)) {
		t.Errorf("b, a model later: carried x%v, want x%v", p.Raise, math.Exp(0.045/4))
	}
}

// TestRaiseAllocation: the raiser compares a run's allocation with the
// one the model's size gives after bounds and rounding, as the
// dispatcher's classes round it.
func TestRaiseAllocation(t *testing.T) {
	t.Parallel()
	model := constantModel(t, map[string]float64{"a": 1000})
	r := New(0, func(_ predictor.Job, memory float64) float64 { return math.Ceil(memory/512) * 512 })
	a := predictor.Job{Type: "a"}
	r.Predict(model, a)
	r.Observe(model, a, 1000, true) // the model's size, not its class: not this model's allocation
	if r.Raised() != 0 {
		t.Errorf("a run given 1000, where the model's class is 1024, raised its group")
	}
	r.Observe(model, a, 1024, true)
	if r.Raised() != 1 {
		t.Errorf("a run given the model's class 1024 did not raise its group")
	}
}

func TestRaiseWithoutModel(t *testing.T) {
	t.Parallel()
	r := New(0, nil)
	r.Observe(nil, predictor.Job{Type: "a"}, 1000, true) // no model: nothing to raise
	if r.Raised() != 0 {
		t.Errorf("%d groups raised before any model", r.Raised())
	}
}

// TestRaiseFromRunsBeforeSizing: a Raiser told of a model's runs before
// it sized any job (a dispatcher that restarted and reads the runs stored
// since the model was trained) raises that model's sizes, and the runs of
// a newer model start it again at 1.
func TestRaiseFromRunsBeforeSizing(t *testing.T) {
	t.Parallel()
	model := constantModel(t, map[string]float64{"a": 1000})
	r, a := New(0, nil), predictor.Job{Type: "a"}
	r.Observe(model, a, model.Predict(a).Memory, true)
	if p := r.Predict(model, a); !near(size(p), 1000*math.Exp(DefaultRate*0.9)) {
		t.Errorf("after a miss observed before sizing: %v, want raised", size(p))
	}
	next := constantModel(t, map[string]float64{"a": 1000})
	r.Observe(next, a, next.Predict(a).Memory, false)
	if r.Raised() != 0 {
		t.Errorf("%d groups raised once a new model's run was observed, want 0", r.Raised())
	}
	if p := r.Predict(model, a); p.Raise != 0 {
		t.Errorf("the old model again starts at 1: raise %v", p.Raise)
	}
}

// sizingA is a Raiser whose model sizes jobs of type a at 1000, after it
// sized one: the job and the model's size for it.
func sizingA(t *testing.T) (r *Raiser, model *predictor.Model, a predictor.Job, alone float64) {
	t.Helper()
	model = constantModel(t, map[string]float64{"a": 1000})
	r, a = New(0, nil), predictor.Job{Type: "a"}
	return r, model, a, r.Predict(model, a).Memory
}

// TestRaiseConcurrent sizes and observes from many goroutines, as the
// dispatcher's receivers and record consumer do; run with -race.
func TestRaiseConcurrent(t *testing.T) {
	t.Parallel()
	r, model, a, alone := sizingA(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				r.Observe(model, a, alone, true)
				r.Predict(model, a)
			}
		})
	}
	wg.Wait()
	if got := size(r.Predict(model, a)); !near(got, 1000*MaxRaise) {
		t.Errorf("after 800 misses: %v, want %v", got, 1000*MaxRaise)
	}
}

// TestRaiseBackAtOne: a miss and the nine fits that undo it leave the
// group at 1, not raised by a rounding residue.
func TestRaiseBackAtOne(t *testing.T) {
	t.Parallel()
	r, model, a, alone := sizingA(t)
	r.Observe(model, a, alone, true)
	for range 9 {
		r.Observe(model, a, alone, false)
	}
	if p := r.Predict(model, a); r.Raised() != 0 || p.Raise != 0 {
		t.Errorf("after a miss and nine fits: %d groups raised, raise %v; want none", r.Raised(), p.Raise)
	}
}

// TestPending: runs come back once they ended, earliest first, each once.
func TestPending(t *testing.T) {
	t.Parallel()
	var p Pending[string]
	p.Add(30, "c")
	p.Add(10, "a")
	p.Add(20, "b")
	p.Add(20, "b2")
	var got []string
	take := func(run string) { got = append(got, run) }
	p.Ended(5, take)
	if len(got) != 0 {
		t.Fatalf("before any end: %v", got)
	}
	p.Ended(20, take)
	if len(got) != 3 || got[0] != "a" || !slices.Contains(got, "b") || !slices.Contains(got, "b2") {
		t.Fatalf("at 20: %v, want a, then b and b2", got)
	}
	p.Ended(100, take)
	p.Ended(100, take)
	if len(got) != 4 || got[3] != "c" {
		t.Fatalf("at 100: %v, want c last, once", got)
	}
}
