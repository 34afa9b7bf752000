package interruption

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
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
// an instance is likely to lose the next. It keeps the pairs in memory, for
// one process (jobfleet local); AvoidConfigMap keeps them in the cluster,
// for every replica of the dispatcher.
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
func (a *Avoid) Add(_ context.Context, instanceType, zone string) error {
	if instanceType == "" {
		return nil
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
	return nil
}

// Pairs returns the pairs to avoid now, the most recently added first.
func (a *Avoid) Pairs() []Pair {
	a.mu.Lock()
	defer a.mu.Unlock()
	return live(a.pairs, a.clock.Now())
}

// Changed returns a channel closed at the next change of the set.
func (a *Avoid) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// live returns the unexpired pairs, the latest expiry first.
func live(pairs map[Pair]time.Time, now time.Time) []Pair {
	var out []Pair
	for p, exp := range pairs {
		if exp.After(now) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(x, y Pair) int {
		if c := pairs[y].Compare(pairs[x]); c != 0 {
			return c
		}
		if c := strings.Compare(x.InstanceType, y.InstanceType); c != 0 {
			return c
		}
		return strings.Compare(x.Zone, y.Zone)
	})
	return out
}

// AvoidConfigMap keeps the pairs to avoid in a ConfigMap, one key per pair
// (<instance type>_<zone>) whose value is its expiry (RFC 3339), so that
// whichever replica handled a notice, the leader renders the same
// affinities for every rerun. Expired keys are dropped on the next Add.
type AvoidConfigMap struct {
	Client    kubernetes.Interface
	Namespace string
	// Name of the ConfigMap. Default "jobfleet-avoid".
	Name  string
	TTL   time.Duration
	Clock clock.Clock

	mu      sync.Mutex
	store   cache.Store
	changed chan struct{}
}

func (a *AvoidConfigMap) name() string {
	if a.Name == "" {
		return "jobfleet-avoid"
	}
	return a.Name
}

// Add records a pair for TTL from now.
func (a *AvoidConfigMap) Add(ctx context.Context, instanceType, zone string) error {
	if instanceType == "" {
		return nil
	}
	now := a.Clock.Now()
	key := pairKey(Pair{instanceType, zone})
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cms := a.Client.CoreV1().ConfigMaps(a.Namespace)
		cm, err := cms.Get(ctx, a.name(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: a.name(), Namespace: a.Namespace, Labels: map[string]string{labelManagedBy: "jobfleet"}}}
			cm.Data = map[string]string{key: now.Add(a.TTL).UTC().Format(time.RFC3339)}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), a.name(), err)
			}
			return err
		}
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		for k, v := range cm.Data {
			if exp, err := time.Parse(time.RFC3339, v); err != nil || !exp.After(now) {
				delete(cm.Data, k)
			}
		}
		cm.Data[key] = now.Add(a.TTL).UTC().Format(time.RFC3339)
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
}

// Start watches the ConfigMap until ctx ends, for Pairs and Changed, and
// returns once its cache is filled.
func (a *AvoidConfigMap) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(a.Client, 10*time.Minute,
		informers.WithNamespace(a.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.name()).String()
		}))
	inf := factory.Core().V1().ConfigMaps().Informer()
	a.mu.Lock()
	a.store = inf.GetStore()
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	a.mu.Unlock()
	notify := func(any) {
		a.mu.Lock()
		defer a.mu.Unlock()
		close(a.changed)
		a.changed = make(chan struct{})
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify, UpdateFunc: func(_, obj any) { notify(obj) }, DeleteFunc: notify,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		factory.Shutdown()
		return errors.New("the avoid ConfigMap's informer did not sync")
	}
	go func() { <-ctx.Done(); factory.Shutdown() }()
	return nil
}

// Pairs returns the pairs to avoid now, the latest expiry first; none
// before Start.
func (a *AvoidConfigMap) Pairs() []Pair {
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if store == nil {
		return nil
	}
	obj, ok, err := store.GetByKey(a.Namespace + "/" + a.name())
	if err != nil || !ok {
		return nil
	}
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return nil
	}
	pairs := map[Pair]time.Time{}
	for k, v := range cm.Data {
		p, err := parsePairKey(k)
		if err != nil {
			continue
		}
		if exp, err := time.Parse(time.RFC3339, v); err == nil {
			pairs[p] = exp
		}
	}
	return live(pairs, a.Clock.Now())
}

// Changed returns a channel closed at the next change of the ConfigMap.
func (a *AvoidConfigMap) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	return a.changed
}

// pairKey is a pair's ConfigMap key: instance types and zones hold only
// letters, digits, '.' and '-', so '_' separates them.
func pairKey(p Pair) string { return p.InstanceType + "_" + p.Zone }

func parsePairKey(k string) (Pair, error) {
	typ, zone, ok := strings.Cut(k, "_")
	if !ok || typ == "" {
		return Pair{}, fmt.Errorf("%q is not <instance type>_<zone>", k)
	}
	return Pair{InstanceType: typ, Zone: zone}, nil
}
