package dispatcher

import (
	"errors"
	"fmt"
	"time"

	"github.com/jobfleet/jobfleet/jobtype"
)

// Config configures a dispatcher. Zero values take the documented defaults.
type Config struct {
	// IntakeURL is the queue producers publish to. Required.
	IntakeURL string
	// DeadLetterURL receives jobs that cannot run, with the reason in the
	// jobfleet-error attribute. Required.
	DeadLetterURL string
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
	// CollectInterval is how often the leader looks for idle classes.
	// Default 1m.
	CollectInterval time.Duration
	// ReconcileInterval is how often ScaledJobs in use are re-applied.
	// Default 5m.
	ReconcileInterval time.Duration
}

// WithDefaults returns the config with zero values replaced by defaults.
func (c Config) WithDefaults() Config {
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
	if c.IntakeURL == "" {
		errs = append(errs, errors.New("the intake queue URL is required"))
	}
	if c.DeadLetterURL == "" {
		errs = append(errs, errors.New("the dead-letter queue URL is required"))
	}
	if c.Registry == nil {
		errs = append(errs, errors.New("the job type registry is required"))
	}
	if c.Receivers < 1 {
		errs = append(errs, fmt.Errorf("receivers %d: at least 1", c.Receivers))
	}
	if c.MaxInFlight < 10*c.Receivers {
		errs = append(errs, fmt.Errorf("max in flight %d: at least 10 per receiver (%d)", c.MaxInFlight, 10*c.Receivers))
	}
	if c.IntakeVisibility < 10*time.Second || c.IntakeVisibility > 12*time.Hour {
		errs = append(errs, fmt.Errorf("intake visibility %v: between 10s and 12h", c.IntakeVisibility))
	}
	if c.RetryDelay < 0 || c.RetryDelay > 12*time.Hour {
		errs = append(errs, fmt.Errorf("retry delay %v: between 0 and 12h", c.RetryDelay))
	}
	if c.ClassMaxReceives < 1 || c.ClassMaxReceives > 1000 {
		errs = append(errs, fmt.Errorf("class max receives %d: between 1 and 1000", c.ClassMaxReceives))
	}
	return errors.Join(errs...)
}
