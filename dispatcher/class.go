package dispatcher

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/jobtype"
	"github.com/jobfleet/jobfleet/predictor"
)

// Class is a (type, pool, size, capacity) a job is routed to: one class
// queue and one KEDA ScaledJob each, since a pod's memory is fixed per
// template.
type Class struct {
	Type     string
	Pool     string
	Size     int64
	Capacity Capacity
	// AvoidInterrupted classes carry reruns of interrupted jobs: their pods
	// keep away from the instance types and zones whose spot capacity was
	// recently reclaimed.
	AvoidInterrupted bool
}

// Capacity is what capacity a class's pods may run on.
type Capacity string

// Capacities of a class.
const (
	// CapacityAny lets Karpenter choose among the pool's capacity types;
	// it launches spot first where the pool allows it.
	CapacityAny      Capacity = "any"
	CapacitySpot     Capacity = jobfleet.CapacitySpot
	CapacityOnDemand Capacity = jobfleet.CapacityOnDemand
)

// MaxNameLength bounds class names: they are label values
// (scaledjob.keda.sh/name, jobfleet.io/class), which Kubernetes limits to
// 63 characters, and SQS queue names, limited to 80.
const MaxNameLength = 63

// Name is the class's queue and ScaledJob name:
// <prefix>-<type>-<pool>-<size>, with -spot or -od when the capacity is
// pinned and -ri for reruns of interrupted jobs. A name longer than
// MaxNameLength is cut and ends in a hash of the whole name instead, so
// names stay valid and distinct.
func (c Class) Name(prefix string) string {
	name := fmt.Sprintf("%s-%s-%s-%s", prefix, c.Type, c.Pool, jobtype.SizeName(c.Size))
	switch c.Capacity {
	case CapacitySpot:
		name += "-spot"
	case CapacityOnDemand:
		name += "-od"
	}
	if c.AvoidInterrupted {
		name += "-ri"
	}
	if len(name) <= MaxNameLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	hash := hex.EncodeToString(sum[:4])
	head := strings.TrimRight(name[:MaxNameLength-len(hash)-1], "-")
	return head + "-" + hash
}

// Model is what sizing needs of the predictor: a size from the job's
// type, pool, labels (those the model groups by) and features.
type Model interface {
	Predict(job predictor.Job) predictor.Prediction
}

// resizable is a Model whose raise after misses the leader publishes for
// workers (contract.Raises): a job it sizes may be sized again when it is
// about to start, if its group's raise has passed the one that gives it a
// larger class. ID names the model; "" when the raise is not published.
type resizable interface {
	Model
	ID() string
}

// Sizing decides a job's class.
type Sizing struct {
	// OOMFactor multiplies the allocation of the last attempt that ran out
	// of memory. Default 1.5.
	OOMFactor float64
	// OnDemandAfter moves a job to on-demand capacity after this many
	// interruptions. Default 2.
	OnDemandAfter int
	// OnlineRate is how fast a group's sizes rise after misses between
	// the model's retrainings, from the run records this dispatcher
	// consumes (see internal/online): the step of the group's log
	// multiplier per run. Default online.DefaultRate (0.05); negative
	// sizes by the model alone.
	OnlineRate float64
}

// Decision is how a job was sized.
type Decision struct {
	Class Class
	// Predicted is the model's own prediction in bytes, zero without one;
	// Floor the least the model gives the job's group, when above it (its
	// quantile over about a week's runs; 0: none); Raise the multiplier
	// put on the larger after recent misses in the job's group (0: none);
	// Memory is what was asked for after the floor, raise, OOM history and
	// bounds, before rounding up to the class size.
	Predicted int64
	Floor     int64
	Raise     float64
	Memory    int64
	Source    predictor.Source
	// Alone is the class memory the model's prediction alone would have
	// given the job (no floor, no raise, no OOM history), zero when the model did
	// not decide the size: what retraining calibrates the model's margin
	// on, carried to the run record as predicted_bytes.
	Alone int64
	// Level, Group and Runs name the model's group that decided
	// (predictor.Prediction), and OOM says the run's OOM history raised
	// the size above what the model or the default gives.
	Level, Group string
	Runs         int
	OOM          bool
	// Model names the model that sized the job, and ResizeAbove the raise
	// of its group above which it would get a larger class (0: none
	// would, or the raise is not published; jobfleet.SizedBy).
	Model       string
	ResizeAbove float64
}

// SizedBy is the decision as the job's state shows it.
func (d Decision) SizedBy() *jobfleet.SizedBy {
	by := &jobfleet.SizedBy{Source: string(d.Source), PredictedBytes: d.Predicted, FloorBytes: d.Floor, Raise: d.Raise, RequestBytes: d.Memory}
	switch {
	case d.OOM:
		// The history's size beat the model's, raised or not.
		by.Source, by.FloorBytes, by.Raise = jobfleet.SizedByOOM, 0, 0
	case d.Source == predictor.SourceNone:
		by.Source = jobfleet.SizedByDefault
	}
	if d.Source != predictor.SourceNone {
		by.Level, by.Group, by.Runs = d.Level, d.Group, d.Runs
	}
	if !d.OOM && d.ResizeAbove > 0 {
		by.Model, by.ResizeAbove = d.Model, d.ResizeAbove
	}
	return by
}

// Decide sizes a job of a registered type: the model's prediction (at
// least its group's floor, raised after recent misses in its group), or
// the type's default, raised to
// OOMFactor times the allocation of its last OOM-killed attempt, clamped
// to the type's bounds and rounded up to the pool's size ladder; capacity from the type's spot policy, on-demand after
// repeated interruptions.
//
// history is the run's earlier attempts, as jobfleet recorded them (never
// as a message says).
func (s Sizing) Decide(job *jobfleet.Job, history jobfleet.History, t *jobtype.Type, pool *jobtype.Pool, model Model) Decision {
	oomFactor := s.OOMFactor
	if oomFactor <= 0 {
		oomFactor = 1.5
	}
	onDemandAfter := s.OnDemandAfter
	if onDemandAfter <= 0 {
		onDemandAfter = 2
	}
	d := Decision{Source: predictor.SourceNone}
	memory := t.Memory.Default
	var base float64 // the model's size after the floor, before the raise
	if model != nil {
		p := model.Predict(predictor.Job{Type: t.Name, Pool: t.Pool, Labels: job.Labels, Features: job.Features})
		if p.Source != predictor.SourceNone && p.Memory > 0 && !math.IsInf(p.Memory, 0) {
			d.Predicted, d.Source = int64(math.Ceil(p.Memory)), p.Source
			d.Level, d.Group, d.Runs = p.Level, p.Group, p.Runs
			d.Alone = classSize(t, pool, d.Predicted)
			memory, base = d.Predicted, max(p.Memory, p.Floor)
			if alloc := p.Allocation(); alloc > p.Memory && !math.IsInf(alloc, 0) {
				if p.Floor > p.Memory {
					d.Floor = int64(math.Ceil(p.Floor))
				}
				if p.Raise > 1 {
					d.Raise = p.Raise
				}
				memory = int64(math.Ceil(alloc))
			}
		}
	}
	for _, a := range history {
		if a.Reason == jobfleet.ReasonOOM && a.AllocatedBytes > 0 {
			if m := int64(math.Ceil(float64(a.AllocatedBytes) * oomFactor)); m > memory {
				memory, d.Alone, d.OOM = m, 0, true // the history decides, not the model
			}
		}
	}
	d.Memory = request(t, memory)
	size := sizeFor(pool, d.Memory)
	d.Class = Class{Type: t.Name, Pool: pool.Name, Size: size, Capacity: capacity(history, t, pool, onDemandAfter)}
	// A rerun of an interrupted job that may land on spot again keeps
	// away from the capacity just reclaimed.
	d.Class.AvoidInterrupted = d.Class.Capacity != CapacityOnDemand && history.Count(jobfleet.ReasonInterrupted) > 0
	if r, ok := model.(resizable); ok && !d.OOM && base > 0 && history.Count(jobfleet.ReasonResized) == 0 {
		if id := r.ID(); id != "" {
			d.Model, d.ResizeAbove = id, resizeAbove(t, d.Class.Size, base)
		}
	}
	return d
}

// resizeAbove is the raise of a job's group above which a job the model
// sized at base bytes (after its group's floor) gets a class larger than
// size: base times the raise above size rounds up to a larger class,
// unless the type's bounds (at most its pool's largest size) cap it at
// size. 0 when none does, or only a raise above online.MaxRaise would.
func resizeAbove(t *jobtype.Type, size int64, base float64) float64 {
	if t.Memory.Max <= size {
		return 0
	}
	if above := float64(size) / base; above < online.MaxRaise {
		return above
	}
	return 0
}

const mib = 1 << 20

// classSize is the class memory a job of type t gets in pool for memory
// bytes: its request, rounded up to the pool's size ladder.
func classSize(t *jobtype.Type, pool *jobtype.Pool, memory int64) int64 {
	return sizeFor(pool, request(t, memory))
}

// request is memory clamped to the type's bounds, in whole MiB.
func request(t *jobtype.Type, memory int64) int64 {
	memory = t.Clamp(memory)
	return (memory + mib - 1) / mib * mib
}

// sizeFor is the pool's smallest size that holds a request, or its
// largest.
func sizeFor(pool *jobtype.Pool, request int64) int64 {
	if size, ok := pool.SizeFor(request); ok {
		return size
	}
	return pool.Largest()
}

func capacity(history jobfleet.History, t *jobtype.Type, pool *jobtype.Pool, onDemandAfter int) Capacity {
	interrupted := history.Count(jobfleet.ReasonInterrupted)
	switch {
	case t.Spot == jobtype.OnDemandOnly:
		return CapacityOnDemand
	case interrupted >= onDemandAfter && pool.AllowsCapacity(jobfleet.CapacityOnDemand):
		return CapacityOnDemand
	case t.Spot == jobtype.SpotOnly:
		return CapacitySpot
	}
	return CapacityAny
}
