package dispatcher

import (
	"testing"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/jobtype"
	"github.com/jobfleet/jobfleet/predictor"
)

const gib = 1 << 30

func registry(t testing.TB) *jobtype.Registry {
	t.Helper()
	reg, err := jobtype.Load("testdata/jobtypes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// fixedModel predicts one value for every job; it stands in for a trained
// model in tests of sizing logic.
type fixedModel float64

func (f fixedModel) Predict(string, string, map[string]float64) (float64, predictor.Source) {
	return float64(f), predictor.SourceType
}

func TestDecide(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	tests := []struct {
		name     string
		typ      string
		model    Model
		history  jobfleet.History
		wantSize int64
		wantCap  Capacity
		wantName string
	}{
		{name: "no model uses the default", typ: "export", wantSize: gib, wantCap: CapacityAny, wantName: "jobfleet-export-cpu-1gi"},
		{name: "prediction rounds up the ladder", typ: "export", model: fixedModel(1.2 * gib), wantSize: 2 * gib, wantCap: CapacityAny},
		{name: "prediction below min is raised", typ: "export", model: fixedModel(10 << 20), wantSize: 512 << 20, wantCap: CapacityAny, wantName: "jobfleet-export-cpu-512mi"},
		{name: "prediction above max is capped", typ: "export", model: fixedModel(100 * gib), wantSize: 16 * gib, wantCap: CapacityAny},
		{name: "an OOM raises memory 1.5x", typ: "export", model: fixedModel(gib), history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: 2 * gib}}, wantSize: 4 * gib, wantCap: CapacityAny},
		{name: "the last OOM counts, not an earlier smaller one", typ: "export", history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: gib}, {Attempt: 2, Reason: jobfleet.ReasonOOM, AllocatedBytes: 4 * gib}}, wantSize: 8 * gib, wantCap: CapacityAny},
		{name: "one interruption stays on spot", typ: "export", history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}}, wantSize: gib, wantCap: CapacityAny},
		{name: "two interruptions move to on-demand", typ: "export", history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}, {Attempt: 2, Reason: jobfleet.ReasonInterrupted}}, wantSize: gib, wantCap: CapacityOnDemand, wantName: "jobfleet-export-cpu-1gi-od"},
		{name: "on-demand policy", typ: "report", wantSize: 2 * gib, wantCap: CapacityOnDemand},
		{name: "spot policy", typ: "batch", wantSize: 2 * gib, wantCap: CapacitySpot, wantName: "jobfleet-batch-cpu-2gi-spot"},
		{name: "gpu default", typ: "train", wantSize: 8 * gib, wantCap: CapacityAny, wantName: "jobfleet-train-gpu-8gi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			typ, _ := reg.Type(tt.typ)
			pool, _ := reg.Pool(typ.Pool)
			job := &jobfleet.Job{Version: 1, ID: "j", Type: tt.typ}
			d := Sizing{}.Decide(job, tt.history, typ, pool, tt.model)
			if d.Class.Size != tt.wantSize || d.Class.Capacity != tt.wantCap {
				t.Errorf("class = %v, want size %d capacity %s", d.Class, tt.wantSize, tt.wantCap)
			}
			if tt.wantName != "" && d.Class.Name("jobfleet") != tt.wantName {
				t.Errorf("name = %s, want %s", d.Class.Name("jobfleet"), tt.wantName)
			}
			if d.Memory%mib != 0 || d.Memory > d.Class.Size {
				t.Errorf("memory %d is not whole MiB within the class size %d", d.Memory, d.Class.Size)
			}
		})
	}
}
