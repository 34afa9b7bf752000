package online

import (
	"bytes"
	"encoding/json"
	"math"
	"sync"
	"testing"
	"time"

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

func TestRaise(t *testing.T) {
	t.Parallel()
	model := constantModel(t, map[string]float64{"a": 1000, "b": 1000})
	r := New(0)
	t0 := time.Unix(1000, 0)
	a, b := predictor.Job{Type: "a"}, predictor.Job{Type: "b"}
	size := func(job predictor.Job) predictor.Prediction { return r.Predict(model, job, t0) }
	if p := size(a); !near(p.Memory, 1000) || p.Raise != 0 {
		t.Fatalf("before any run ended: %v (raise %v), want the model's 1000", p.Memory, p.Raise)
	}
	observe := func(job predictor.Job, n int, missed bool) {
		for range n {
			r.Observe(job, t0, missed)
		}
	}
	// Ten misses: up by 0.05 * 0.9 each, in log space.
	observe(a, 10, true)
	want := 1000 * math.Exp(10*DefaultRate*0.9)
	if p := size(a); math.Abs(p.Memory-want) > 1e-6 || math.Abs(p.Raise-want/1000) > 1e-9 {
		t.Errorf("after 10 misses: %v (raise %v), want %v", p.Memory, p.Raise, want)
	}
	if p := size(b); !near(p.Memory, 1000) {
		t.Errorf("another group: %v, want its own 1000", p.Memory)
	}
	if r.Raised() != 1 {
		t.Errorf("%d groups raised, want 1", r.Raised())
	}
	// Each run that fits lowers it by 0.05 * 0.1: ninety undo ten misses,
	// and more never go below the model.
	observe(a, 90, false)
	if p := size(a); !near(p.Memory, 1000) {
		t.Errorf("after 90 runs that fit: %v, want back to the model's 1000", p.Memory)
	}
	observe(a, 50, false)
	if p := size(a); !near(p.Memory, 1000) || r.Raised() != 0 {
		t.Errorf("after more runs that fit: %v and %d groups raised, want the model's 1000 and none", p.Memory, r.Raised())
	}
	// Never above MaxRaise.
	observe(a, 1000, true)
	if p := size(a); math.Abs(p.Memory-1000*MaxRaise) > 1e-6 {
		t.Errorf("after 1,000 misses: %v, want %v", p.Memory, 1000*MaxRaise)
	}
	// A job the model has nothing to size by is left alone, and tells
	// nothing.
	observe(predictor.Job{Type: "unknown"}, 10, true)
	if p := size(predictor.Job{Type: "unknown"}); p.Source != predictor.SourceNone || p.Memory != 0 {
		t.Errorf("unknown type: %v from %s", p.Memory, p.Source)
	}

	// A new model starts from its own sizes; runs that started before it
	// sized its first job do not move it.
	next := constantModel(t, map[string]float64{"a": 2000})
	t1 := t0.Add(time.Hour)
	if p := r.Predict(next, a, t1); !near(p.Memory, 2000) || p.Raise != 0 {
		t.Errorf("a new model: %v (raise %v), want its 2000", p.Memory, p.Raise)
	}
	for range 10 {
		r.Observe(a, t1.Add(-time.Second), true)
	}
	if p := r.Predict(next, a, t1); !near(p.Memory, 2000) {
		t.Errorf("after misses of runs an older model sized: %v, want 2000", p.Memory)
	}
	r.Observe(a, t1, true)
	if p := r.Predict(next, a, t1); p.Memory <= 2000*1.01 {
		t.Errorf("after a miss of a run it sized: %v, want above 2000", p.Memory)
	}
}

func TestRaiseWithoutModel(t *testing.T) {
	t.Parallel()
	r := New(0)
	r.Observe(predictor.Job{Type: "a"}, time.Now(), true) // before any model: nothing to raise
	if r.Raised() != 0 {
		t.Errorf("%d groups raised before any model", r.Raised())
	}
}

// TestRaiseConcurrent sizes and observes from many goroutines, as the
// dispatcher's receivers and record consumer do; run with -race.
func TestRaiseConcurrent(t *testing.T) {
	t.Parallel()
	model := constantModel(t, map[string]float64{"a": 1000})
	r := New(0)
	t0 := time.Unix(1000, 0)
	r.Predict(model, predictor.Job{Type: "a"}, t0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				r.Observe(predictor.Job{Type: "a"}, t0, true)
				r.Predict(model, predictor.Job{Type: "a"}, t0)
			}
		})
	}
	wg.Wait()
	if p := r.Predict(model, predictor.Job{Type: "a"}, t0); math.Abs(p.Memory-1000*MaxRaise) > 1e-6 {
		t.Errorf("after 800 misses: %v, want %v", p.Memory, 1000*MaxRaise)
	}
}
