package dispatcher

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/jobtype"
)

// Config configures a dispatcher. Zero values take the documented defaults.
type Config struct {
	// IntakeURL is the queue producers publish to. Required.
	IntakeURL string
	// DeadLetterURL receives jobs that cannot run, with the reason in the
	// jobfleet-error attribute. Required, and not the intake queue.
	DeadLetterURL string
	// Bucket and Prefix locate jobfleet's records in S3: the runs of jobs
	// and their attempts (shared with the workers), the wanted classes, and
	// dead letters too large for SQS. Bucket is required; Prefix defaults to
	// "jobfleet".
	Bucket, Prefix string
	// Registry is the job types and pools. Required.
	Registry *jobtype.Registry
	// Template configures the class ScaledJobs; its Namespace is required
	// when the dispatcher has a Kubernetes client.
	Template Template

	// Receivers is how many long-poll receivers drain intake. Default 4.
	Receivers int
	// MaxInFlight bounds the messages held between receiving and deleting.
	// Default 1000.
	MaxInFlight int
	// Linger is how long a partial batch waits for more messages to the
	// same queue. Default 25ms.
	Linger time.Duration
	// IntakeVisibility is the visibility timeout of received intake
	// messages. Default 2m.
	IntakeVisibility time.Duration
	// RetryDelay is how soon a message that could not be forwarded
	// returns to intake. Default 10s.
	RetryDelay time.Duration
	// DrainTimeout bounds forwarding what is held at shutdown. Default 30s.
	DrainTimeout time.Duration

	// Sizing decides classes.
	Sizing Sizing
	// ClassMaxReceives is the class queues' redrive threshold: a message
	// received this often without being deleted goes to the dead-letter
	// queue. Default 10.
	ClassMaxReceives int
	// ClassIdleTTL is how long a class stays with no messages and no Jobs
	// before its ScaledJob and queue are removed. Default 30m.
	ClassIdleTTL time.Duration
	// ClassPoll is how often the leader looks for classes that replicas
	// asked for; a job of a new class waits about twice as long. Default 2s.
	ClassPoll time.Duration
	// ClassFresh is how long a replica sends to a class it saw ready
	// without looking again. Default 1m.
	ClassFresh time.Duration
	// CollectFence is how long the collector waits between marking an idle
	// class and removing it, for sends confirmed before the mark to land
	// and show in the queue's counts (which lag up to a minute on SQS).
	// Default 3m; it must be longer than ClassFresh.
	CollectFence time.Duration
	// CollectInterval is how often the leader looks for idle classes.
	// Default 1m.
	CollectInterval time.Duration
	// ReconcileInterval is how often the leader re-applies the ScaledJobs
	// of every class. Default 5m.
	ReconcileInterval time.Duration
	// RaisesInterval is how often the leader publishes the raise after
	// misses for workers (contract.Raises), when it changed, and every
	// contract.RaisesRefresh intervals regardless (at most 75s, so that a
	// live file never looks older than contract.MaxRaisesAge): a worker
	// about to start a job whose group's raise has risen enough, while it
	// waited, to give it a larger class sends it back to be sized again.
	// Default 15s; negative publishes nothing, and jobs keep the size
	// they were given. Without the raise (Sizing.OnlineRate negative)
	// nothing is published either.
	RaisesInterval time.Duration
}

// WithDefaults returns the config with zero values replaced by defaults.
func (c Config) WithDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = contract.DefaultPrefix
	}
	if c.Receivers == 0 {
		c.Receivers = 4
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1000
	}
	if c.Linger == 0 {
		c.Linger = 25 * time.Millisecond
	}
	if c.IntakeVisibility == 0 {
		c.IntakeVisibility = 2 * time.Minute
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.ClassMaxReceives == 0 {
		c.ClassMaxReceives = 10
	}
	if c.ClassIdleTTL == 0 {
		c.ClassIdleTTL = 30 * time.Minute
	}
	if c.ClassPoll == 0 {
		c.ClassPoll = 2 * time.Second
	}
	if c.ClassFresh == 0 {
		c.ClassFresh = time.Minute
	}
	if c.CollectFence == 0 {
		c.CollectFence = 3 * time.Minute
	}
	if c.RaisesInterval == 0 {
		c.RaisesInterval = 15 * time.Second
	}
	if c.CollectInterval == 0 {
		c.CollectInterval = time.Minute
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = 5 * time.Minute
	}
	return c
}

// Validate reports every problem of a config with defaults applied.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, q := range []struct{ name, url string }{{"intake", c.IntakeURL}, {"dead-letter", c.DeadLetterURL}} {
		if q.url == "" {
			bad("the %s queue URL is required", q.name)
		} else if u, err := url.Parse(q.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("the %s queue URL %q is not a URL", q.name, q.url)
		}
	}
	if c.IntakeURL != "" && c.IntakeURL == c.DeadLetterURL {
		bad("the intake and dead-letter queues are the same queue (%s): dead letters would come back as jobs", c.IntakeURL)
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("the bucket is required"))
	}
	if c.Registry == nil {
		errs = append(errs, errors.New("the job type registry is required"))
	}
	if c.Receivers < 1 {
		bad("receivers %d: at least 1", c.Receivers)
	}
	if c.RaisesInterval*contract.RaisesRefresh > contract.MaxRaisesAge {
		bad("raises interval %v: at most %v, so that workers never take the published raise for one a leader stopped writing", c.RaisesInterval, contract.MaxRaisesAge/contract.RaisesRefresh)
	}
	if c.MaxInFlight < 10*c.Receivers {
		bad("max in flight %d: at least 10 per receiver (%d)", c.MaxInFlight, 10*max(1, c.Receivers))
	}
	if c.Linger <= 0 {
		bad("linger %v: above zero", c.Linger)
	}
	if c.IntakeVisibility < 10*time.Second || c.IntakeVisibility > 12*time.Hour {
		bad("intake visibility %v: between 10s and 12h", c.IntakeVisibility)
	}
	if c.RetryDelay < 0 || c.RetryDelay > 12*time.Hour {
		bad("retry delay %v: between 0 and 12h", c.RetryDelay)
	}
	if c.DrainTimeout <= 0 {
		bad("drain timeout %v: above zero", c.DrainTimeout)
	}
	if c.ClassMaxReceives < 1 || c.ClassMaxReceives > 1000 {
		bad("class max receives %d: between 1 and 1000", c.ClassMaxReceives)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"class idle TTL", c.ClassIdleTTL}, {"class poll", c.ClassPoll}, {"class fresh", c.ClassFresh}, {"collect interval", c.CollectInterval}, {"reconcile interval", c.ReconcileInterval}} {
		if d.v <= 0 {
			bad("%s %v: above zero", d.name, d.v)
		}
	}
	if c.CollectFence <= c.ClassFresh {
		bad("collect fence %v: longer than class fresh (%v), or a replica may send to a class being removed", c.CollectFence, c.ClassFresh)
	}
	if c.Sizing.OOMFactor < 0 || (c.Sizing.OOMFactor > 0 && c.Sizing.OOMFactor <= 1) {
		bad("OOM factor %v: above 1 (a rerun after an OOM kill needs more memory)", c.Sizing.OOMFactor)
	}
	if math.IsNaN(c.Sizing.OnlineRate) || c.Sizing.OnlineRate > 1 {
		bad("online rate %v: at most 1 (negative: none)", c.Sizing.OnlineRate)
	}
	if c.Sizing.OnDemandAfter < 0 {
		bad("on-demand after %d: not negative", c.Sizing.OnDemandAfter)
	}
	return errors.Join(errs...)
}
