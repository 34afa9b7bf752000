package dispatcher

import (
	"math"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

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

func (f fixedModel) Predict(predictor.Job) predictor.Prediction {
	return predictor.Prediction{Memory: float64(f), Source: predictor.SourceType}
}

// raisedModel2x predicts 1.5Gi raised twofold after misses, as the
// dispatcher's raise sizes a job.
type raisedModel2x struct{}

func (raisedModel2x) Predict(predictor.Job) predictor.Prediction {
	return predictor.Prediction{Memory: 1.5 * gib, Raise: 2, Source: predictor.SourceSignature, Level: "type and rows", Group: "export, rows=1", Runs: 40}
}

// flooredModel's own size for a job is 300Mi, under its group's floor of
// 1.5Gi, with a raise of 2 when raised.
type flooredModel struct{ raised bool }

func (m flooredModel) Predict(predictor.Job) predictor.Prediction {
	p := predictor.Prediction{Memory: 300 << 20, Floor: 1.5 * gib, Source: predictor.SourceSignature, Level: "type and rows", Group: "export, rows=1", Runs: 40}
	if m.raised {
		p.Raise = 2
	}
	return p
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
		// wantAlone is the class the model alone gives, what the job
		// carries for retraining (0: the model did not decide).
		wantAlone int64
		// wantBy is what the job's state says decided, and wantRaise
		// the raise it shows.
		wantBy    string
		wantRaise float64
	}{
		{name: "no model uses the default", typ: "export", wantSize: gib, wantCap: CapacityAny, wantName: "jobfleet-export-cpu-1gi", wantBy: "default"},
		{name: "prediction rounds up the ladder", typ: "export", model: fixedModel(1.2 * gib), wantSize: 2 * gib, wantCap: CapacityAny, wantAlone: 2 * gib, wantBy: "type"},
		{name: "prediction below min is raised", typ: "export", model: fixedModel(10 << 20), wantSize: 512 << 20, wantCap: CapacityAny, wantName: "jobfleet-export-cpu-512mi", wantAlone: 512 << 20, wantBy: "type"},
		{name: "prediction above max is capped", typ: "export", model: fixedModel(100 * gib), wantSize: 16 * gib, wantCap: CapacityAny, wantAlone: 16 * gib, wantBy: "type"},
		{name: "a raise after misses", typ: "export", model: raisedModel2x{}, wantSize: 4 * gib, wantCap: CapacityAny, wantAlone: 2 * gib, wantBy: "type-features", wantRaise: 2},
		{name: "the group's floor above the model's size", typ: "export", model: flooredModel{}, wantSize: 2 * gib, wantCap: CapacityAny, wantAlone: 512 << 20, wantBy: "type-features"},
		{name: "the floor, raised", typ: "export", model: flooredModel{raised: true}, wantSize: 4 * gib, wantCap: CapacityAny, wantAlone: 512 << 20, wantBy: "type-features", wantRaise: 2},
		{name: "an OOM above the raised size", typ: "export", model: raisedModel2x{}, history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: 4 * gib}}, wantSize: 8 * gib, wantCap: CapacityAny, wantBy: "oom"},
		{name: "an OOM raises memory 1.5x", typ: "export", model: fixedModel(gib), history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: 2 * gib}}, wantSize: 4 * gib, wantCap: CapacityAny, wantBy: "oom"},
		{name: "an OOM below the prediction leaves it deciding", typ: "export", model: fixedModel(4 * gib), history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: gib}}, wantSize: 4 * gib, wantCap: CapacityAny, wantAlone: 4 * gib, wantBy: "type"},
		{name: "the last OOM counts, not an earlier smaller one", typ: "export", history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: gib}, {Attempt: 2, Reason: jobfleet.ReasonOOM, AllocatedBytes: 4 * gib}}, wantSize: 8 * gib, wantCap: CapacityAny, wantBy: "oom"},
		{name: "one interruption stays on spot", typ: "export", history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}}, wantSize: gib, wantCap: CapacityAny, wantBy: "default"},
		{name: "two interruptions move to on-demand", typ: "export", history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}, {Attempt: 2, Reason: jobfleet.ReasonInterrupted}}, wantSize: gib, wantCap: CapacityOnDemand, wantName: "jobfleet-export-cpu-1gi-od", wantBy: "default"},
		{name: "on-demand policy", typ: "report", wantSize: 2 * gib, wantCap: CapacityOnDemand, wantBy: "default"},
		{name: "spot policy", typ: "batch", wantSize: 2 * gib, wantCap: CapacitySpot, wantName: "jobfleet-batch-cpu-2gi-spot", wantBy: "default"},
		{name: "gpu default", typ: "train", wantSize: 8 * gib, wantCap: CapacityAny, wantName: "jobfleet-train-gpu-8gi", wantBy: "default"},
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
			if d.Alone != tt.wantAlone {
				t.Errorf("the model's class %d, want %d", d.Alone, tt.wantAlone)
			}
			by := d.SizedBy()
			if by.Source != tt.wantBy || by.Raise != tt.wantRaise || by.RequestBytes != d.Memory || by.PredictedBytes != d.Predicted {
				t.Errorf("sized by %+v, want %s raised %v, asking %d", by, tt.wantBy, tt.wantRaise, d.Memory)
			}
			// The floor, when it is above the model's own size and the
			// OOM history did not decide.
			if _, ok := tt.model.(flooredModel); ok && (by.FloorBytes != 1.5*gib || by.PredictedBytes != 300<<20) {
				t.Errorf("sized by %+v, want the model's 300Mi under a floor of 1.5Gi", by)
			} else if !ok && by.FloorBytes != 0 {
				t.Errorf("sized by %+v, want no floor", by)
			}
			// The model's group and own size, whenever it gave one.
			if p, ok := tt.model.(raisedModel2x); ok {
				want := p.Predict(predictor.Job{})
				if by.Level != want.Level || by.Group != want.Group || by.Runs != want.Runs || by.PredictedBytes != 1.5*gib {
					t.Errorf("sized by %+v, want the model's group %q (%s, %d runs) and its 1.5Gi", by, want.Group, want.Level, want.Runs)
				}
			}
			if d.Memory%mib != 0 || d.Memory > d.Class.Size {
				t.Errorf("memory %d is not whole MiB within the class size %d", d.Memory, d.Class.Size)
			}
		})
	}
}

// TestClassNamesAreValidLabelValues: the longest class a registry allows
// (a 30-character type, a 12-character pool, 128Gi, spot, a rerun class)
// has a name that is a valid label value and queue name, distinct from its
// neighbours'.
func TestClassNamesAreValidLabelValues(t *testing.T) {
	t.Parallel()
	typ, pool := strings.Repeat("t", 30), strings.Repeat("p", 12)
	seen := map[string]Class{}
	for _, size := range []int64{128 * gib, 96 * gib, 3 * gib, 3e9} {
		for _, c := range []Capacity{CapacityAny, CapacitySpot, CapacityOnDemand} {
			for _, ri := range []bool{false, true} {
				cl := Class{Type: typ, Pool: pool, Size: size, Capacity: c, AvoidInterrupted: ri}
				for _, prefix := range []string{"jobfleet", "a-much-longer-prefix"} {
					name := cl.Name(prefix)
					if errs := validation.IsValidLabelValue(name); len(errs) > 0 || len(name) > MaxNameLength {
						t.Errorf("%s: %v", name, errs)
					}
					if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
						t.Errorf("%s is not a valid object name: %v", name, errs)
					}
					if other, dup := seen[name]; dup && other != cl {
						t.Errorf("%s names both %v and %v", name, other, cl)
					}
					seen[name] = cl
				}
			}
		}
	}
	if got := (Class{Type: "export", Pool: "cpu", Size: 3 * gib}).Name("jobfleet"); got != "jobfleet-export-cpu-3gi" {
		t.Errorf("a short name is %s, want it whole", got)
	}
}

func TestSizeNames(t *testing.T) {
	t.Parallel()
	for size, want := range map[int64]string{3 * gib: "3gi", 512 << 20: "512mi", 3e9: "3g", 1536 << 20: "1536mi", 128 * gib: "128gi", 500e6: "500m", 1 << 40: "1ti"} {
		if got := jobtype.SizeName(size); got != want {
			t.Errorf("SizeName(%d) = %s, want %s", size, got, want)
		}
	}
}

func TestConfigRejectsBadOnlineRate(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{math.NaN(), 1.5} {
		cfg := Config{IntakeURL: "http://q/intake", DeadLetterURL: "http://q/dead", Registry: registry(t), Bucket: "b", Sizing: Sizing{OnlineRate: rate}}
		if err := cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "online rate") {
			t.Errorf("online rate %v: error %v", rate, err)
		}
	}
	for _, rate := range []float64{0, -1, 0.05, 1} {
		cfg := Config{IntakeURL: "http://q/intake", DeadLetterURL: "http://q/dead", Registry: registry(t), Bucket: "b", Sizing: Sizing{OnlineRate: rate}}
		if err := cfg.WithDefaults().Validate(); err != nil && strings.Contains(err.Error(), "online rate") {
			t.Errorf("online rate %v: %v", rate, err)
		}
	}
}

// TestConfigBoundsRaisesInterval: the raise is published often enough that
// a live file never looks like one a leader stopped writing.
func TestConfigBoundsRaisesInterval(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		interval time.Duration
		ok       bool
	}{{0, true}, {-1, true}, {75 * time.Second, true}, {76 * time.Second, false}} {
		cfg := Config{IntakeURL: "http://q/intake", DeadLetterURL: "http://q/dead", Registry: registry(t), Bucket: "b", RaisesInterval: tt.interval}
		if err := cfg.WithDefaults().Validate(); (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "raises interval")) {
			t.Errorf("raises interval %v: error %v, want ok %v", tt.interval, err, tt.ok)
		}
	}
}

// published is a model whose raise the leader publishes, as raisedModel
// with published set: the jobs it sizes say above which raise they would
// get a larger class.
type published struct {
	Model
	id string
}

func (p published) ID() string { return p.id }

// timesRaise is a model's prediction with its raise set to raise.
type timesRaise struct {
	Model
	raise float64
}

func (m timesRaise) Predict(job predictor.Job) predictor.Prediction {
	p := m.Model.Predict(job)
	p.Raise = m.raise
	return p
}

// TestResizeAbove: a job the model sized says the raise of its group
// above which it would get a larger class, and the model's name, when
// the raise is published; just above that raise the class is larger, at
// it the same. None is said where no raise within online.MaxRaise moves
// the job (the type's max, the pool's largest class, a class far above
// the model's size), where the OOM history decided, where the run was
// sent back once already, or where the raise is not published.
func TestResizeAbove(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	typ, _ := reg.Type("export")
	pool, _ := reg.Pool(typ.Pool)
	for _, tt := range []struct {
		name    string
		model   Model
		history jobfleet.History
		want    float64
	}{
		{name: "the model's size", model: published{fixedModel(1.2 * gib), "m-1"}, want: 2.0 / 1.2},
		{name: "raised", model: published{raisedModel2x{}, "m-1"}, want: 4.0 / 1.5},
		{name: "the floor, raised", model: published{flooredModel{raised: true}, "m-1"}, want: 4.0 / 1.5},
		{name: "at the type's max", model: published{fixedModel(100 * gib), "m-1"}},
		{name: "far above the model's size", model: published{fixedModel(10 << 20), "m-1"}},
		{name: "the OOM history decided", model: published{fixedModel(gib), "m-1"}, history: jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: 2 * gib}}},
		{name: "not published", model: published{fixedModel(1.2 * gib), ""}},
		{name: "sent back once already", model: published{fixedModel(1.2 * gib), "m-1"}, history: jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonResized, AllocatedBytes: gib}}},
		{name: "a model without a name", model: fixedModel(1.2 * gib)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job := &jobfleet.Job{Version: 1, ID: "j", Type: "export"}
			d := Sizing{}.Decide(job, tt.history, typ, pool, tt.model)
			by := d.SizedBy()
			if math.Abs(by.ResizeAbove-tt.want) > 1e-9 {
				t.Fatalf("resize above %v, want %v (sized %+v)", by.ResizeAbove, tt.want, by)
			}
			if (by.Model == "m-1") != (tt.want > 0) {
				t.Errorf("model %q, want m-1 exactly when the job says a raise", by.Model)
			}
			if tt.want == 0 {
				return
			}
			m := tt.model.(published).Model
			if at := (Sizing{}).Decide(job, nil, typ, pool, timesRaise{m, by.ResizeAbove}); at.Class.Size != d.Class.Size {
				t.Errorf("raised x%v, class %d, want the same %d", by.ResizeAbove, at.Class.Size, d.Class.Size)
			}
			if above := (Sizing{}).Decide(job, nil, typ, pool, timesRaise{m, by.ResizeAbove * (1 + 1e-6)}); above.Class.Size <= d.Class.Size {
				t.Errorf("raised just above x%v, class %d, want larger than %d", by.ResizeAbove, above.Class.Size, d.Class.Size)
			}
		})
	}
}
