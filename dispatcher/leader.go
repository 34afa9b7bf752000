package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderConfig configures the election of the replica that runs the
// fleet-wide duties: collecting idle classes and the failure sensor.
// Intake runs on every replica.
type LeaderConfig struct {
	// Lease is the name of the Lease object. Default "jobfleet-dispatcher".
	Lease string
	// Identity names this replica; it must differ between replicas.
	// Default: the hostname and a random suffix, as Kubernetes' own
	// controllers do, so two replicas on one host do not both lead.
	Identity string
}

// runLeader runs f for as long as this replica holds the lease, until ctx
// ends.
func runLeader(ctx context.Context, kube kubernetes.Interface, namespace string, cfg LeaderConfig, log zerolog.Logger, f func(context.Context)) {
	if cfg.Lease == "" {
		cfg.Lease = "jobfleet-dispatcher"
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.Identity = host + "_" + hex.EncodeToString(b[:])
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaName(namespace, cfg.Lease),
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	// client-go runs OnStartedLeading in a goroutine it does not wait for:
	// a term's duties wait for the last term's to end, so two terms never
	// overlap.
	var term sync.Mutex
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			ReleaseOnCancel: true,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			Name:            cfg.Lease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					term.Lock()
					defer term.Unlock()
					if lctx.Err() != nil {
						return // the term ended while the last one finished
					}
					log.Info().Str("identity", cfg.Identity).Msg("leading: managing classes, collecting idle ones and watching for dead pods")
					f(lctx)
				},
				OnStoppedLeading: func() { log.Info().Str("identity", cfg.Identity).Msg("stopped leading") },
			},
		})
	}
	// Wait for the last term's duties, which client-go does not.
	term.Lock()
	defer term.Unlock()
}
