package dispatcher

import (
	"context"
	"os"
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
	// Identity names this replica. Default: the hostname.
	Identity string
}

// runLeader runs f for as long as this replica holds the lease, until ctx
// ends.
func runLeader(ctx context.Context, kube kubernetes.Interface, namespace string, cfg LeaderConfig, log zerolog.Logger, f func(context.Context)) {
	if cfg.Lease == "" {
		cfg.Lease = "jobfleet-dispatcher"
	}
	if cfg.Identity == "" {
		cfg.Identity, _ = os.Hostname()
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaName(namespace, cfg.Lease),
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
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
					log.Info().Str("identity", cfg.Identity).Msg("leading: collecting idle classes and watching for dead pods")
					f(lctx)
				},
				OnStoppedLeading: func() { log.Info().Str("identity", cfg.Identity).Msg("stopped leading") },
			},
		})
	}
}
