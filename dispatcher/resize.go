package dispatcher

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/jobfleet/jobfleet/internal/contract"
)

// raisePublisher publishes the leader's raise after misses for workers
// (contract.Raises): a worker about to start a job compares the raise of
// the job's group with the one that would give it a larger class
// (jobfleet.SizedBy.ResizeAbove) and, past it, sends the job back to be
// sized again. Every replica raises alike from the same run records, so
// the leader's view is the fleet's.
type raisePublisher struct {
	d *Dispatcher

	mu   sync.Mutex
	last *contract.Raises // what was published last, nil before
	// unchanged counts the publishes skipped since it was written.
	unchanged int
}

// forget lets the next publish write whatever it finds.
func (p *raisePublisher) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = nil
}

// publish writes the raise of the current model's groups, when it changed
// since it was last published or was last written contract.RaisesRefresh
// intervals ago.
func (p *raisePublisher) publish(ctx context.Context) error {
	m := p.d.models.Model()
	if m == nil {
		return nil
	}
	raises := p.d.raiser.Raises(m)
	r := &contract.Raises{Model: modelID(m), At: p.d.clock.Now().UTC(), Groups: make(map[string]float64, min(len(raises), contract.MaxPublishedRaises))}
	// The most raised first, and by name among equals, so that every
	// leader keeps the same groups of more than fit.
	groups := slices.SortedFunc(maps.Keys(raises), func(a, b string) int {
		return cmp.Or(cmp.Compare(raises[b], raises[a]), cmp.Compare(a, b))
	})
	for _, g := range groups[:min(len(groups), contract.MaxPublishedRaises)] {
		r.Groups[contract.RaiseKey(g)] = raises[g]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != nil && p.last.Model == r.Model && maps.Equal(p.last.Groups, r.Groups) && p.unchanged+1 < contract.RaisesRefresh {
		p.unchanged++
		return nil
	}
	if err := p.d.store.WriteRaises(ctx, r); err != nil {
		return fmt.Errorf("publishing the raise after misses: %w", err)
	}
	p.last, p.unchanged = r, 0
	p.d.log.Debug().Str("model", r.Model).Int("groups", len(r.Groups)).Msg("published the raise after misses")
	return nil
}
