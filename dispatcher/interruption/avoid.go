package interruption

import (
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Pair is an instance type in a zone.
type Pair struct {
	InstanceType string
	Zone         string
}

// Avoid remembers the (instance type, zone) pairs whose spot capacity was
// recently reclaimed, so that reruns of interrupted jobs can be steered
// elsewhere: AWS reclaims spot capacity by pool, and a pool that just lost
// an instance is likely to lose the next.
type Avoid struct {
	ttl   time.Duration
	clock clock.Clock

	mu    sync.Mutex
	pairs map[Pair]time.Time // expiry
	// changed is closed and replaced when the set changes.
	changed chan struct{}
}

// NewAvoid returns an empty set whose entries last ttl.
func NewAvoid(ttl time.Duration, clk clock.Clock) *Avoid {
	return &Avoid{ttl: ttl, clock: clk, pairs: map[Pair]time.Time{}, changed: make(chan struct{})}
}

// Add remembers a pair.
func (a *Avoid) Add(instanceType, zone string) {
	if instanceType == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p := Pair{instanceType, zone}
	_, known := a.pairs[p]
	a.pairs[p] = a.clock.Now().Add(a.ttl)
	if !known {
		close(a.changed)
		a.changed = make(chan struct{})
	}
}

// Pairs returns the pairs to avoid now, the most recently added first.
func (a *Avoid) Pairs() []Pair {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Now()
	var out []Pair
	for p, exp := range a.pairs {
		if exp.After(now) {
			out = append(out, p)
		} else {
			delete(a.pairs, p)
		}
	}
	slices.SortFunc(out, func(x, y Pair) int {
		if c := a.pairs[y].Compare(a.pairs[x]); c != 0 {
			return c
		}
		if x.InstanceType != y.InstanceType {
			if x.InstanceType < y.InstanceType {
				return -1
			}
			return 1
		}
		if x.Zone < y.Zone {
			return -1
		}
		if x.Zone > y.Zone {
			return 1
		}
		return 0
	})
	return out
}

// Changed returns a channel closed at the next change of the set.
func (a *Avoid) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}
