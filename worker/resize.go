package worker

import (
	"context"
	"math"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
)

// raisesTimeout bounds reading the dispatcher's published raise: a job
// whose size cannot be checked in that time runs with the size it has.
const raisesTimeout = 10 * time.Second

// outgrown reports whether a job about to start should go back to be
// sized again: while it waited in its class queue, the dispatcher's raise
// after misses of the group that sized it rose past the raise that gives
// it a larger class (jobfleet.SizedBy.ResizeAbove), under the model that
// sized it. A run goes back once at most, and whatever cannot be read or
// matched (no raise published, or none lately, another model, a sizing
// recorded for another class than this worker's, S3 unreachable) leaves
// the job its size.
func (w *Worker) outgrown(ctx context.Context, a *attempt, v contract.Verified) bool {
	by := v.SizedBy
	switch {
	case by == nil || by.ResizeAbove <= 0 || by.Model == "" || a.history.Count(jobfleet.ReasonResized) > 0:
		return false
	case w.cfg.MemoryLimit <= 0 || v.MemoryBytes != w.cfg.MemoryLimit:
		// The state's sizing is of another class (the message was
		// sized twice, and this copy forwarded by the first).
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, raisesTimeout)
	defer cancel()
	raises, err := w.store.ReadRaises(ctx)
	switch {
	case contract.IsNotFound(err):
		return false
	case err != nil:
		a.log.Warn().Err(err).Msg("the dispatcher's raise after misses could not be read: the job runs with the size it was given")
		return false
	case raises.Model != by.Model:
		return false
	case w.clock.Now().Sub(raises.At) > contract.MaxRaisesAge:
		a.log.Warn().Time("published_at", raises.At).Msg("the dispatcher's raise after misses was last published too long ago: the job runs with the size it was given")
		return false
	}
	raise := raises.Groups[contract.RaiseKey(contract.RaiseGroup(by.Level, by.Group, a.job.Type))]
	if math.IsInf(raise, 0) || !(raise > by.ResizeAbove) {
		return false
	}
	a.log.Info().Float64("raise", raise).Float64("resize_above", by.ResizeAbove).Str("level", by.Level).Str("group", by.Group).
		Msg("the job's group was raised while it waited: sending it back to be sized again")
	return true
}
