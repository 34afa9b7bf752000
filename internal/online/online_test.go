package online

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/jobfleet/jobfleet/predictor"
)

// constantModel is a model file's worth of per-type sizes, read as the
// dispatcher reads one.
func constantModel(t *testing.T, sizes map[string]float64) *predictor.Model {
	t.Helper()
	types := map[string]any{}
	for typ, v := range sizes {
		types[typ] = map[string]any{"kind": "quantile", "constant": math.Log(v), "floor": 0, "ceiling": 100}
	}
	file, err := json.Marshal(map[string]any{"format": predictor.Format, "version": predictor.FormatVersion, "quantile": 0.9, "types": types})
	if err != nil {
		t.Fatal(err)
	}
	m, err := predictor.ReadModel(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	return m
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
