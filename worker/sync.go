package worker

import (
	"context"
	"sync"
)

// checkpointer uploads the checkpoint directory every CheckpointInterval
// while the job runs.
type checkpointer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (w *Worker) startCheckpointing(ctx context.Context, a *attempt) *checkpointer {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx)) // uploads outlive the stop; stop() ends them
	c := &checkpointer{cancel: cancel}
	c.wg.Go(func() {
		ticker := w.clock.NewTicker(w.cfg.CheckpointInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
			}
			if a.hold.err() != nil {
				return // the attempt may be another worker's now
			}
			uploaded, err := a.store.upload(ctx, a.job.ID, a.run, a.number, w.clock.Now())
			if uploaded {
				a.uploads++
				a.log.Debug().Int("generation", a.store.last.Generation).Msg("checkpoint uploaded")
			}
			if err != nil && ctx.Err() == nil {
				// A failed upload leaves the previous checkpoint complete;
				// the next tick tries again.
				a.log.Warn().Err(err).Msg("uploading a checkpoint")
			}
			if w.cfg.Hooks.Checkpointed != nil {
				w.cfg.Hooks.Checkpointed(a.job.ID, uploaded, err)
			}
		}
	})
	return c
}

// stop ends the periodic uploads and waits for one in progress.
func (c *checkpointer) stop() {
	c.cancel()
	c.wg.Wait()
}
