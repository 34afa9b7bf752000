package worker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/jobfleet/jobfleet/jobtype"
)

// Config configures a worker. Zero values take the documented defaults.
type Config struct {
	// QueueURL is the class queue the worker receives from. Required.
	QueueURL string
	// IntakeURL is where reruns go, so the dispatcher sizes them afresh.
	// Required.
	IntakeURL string
	// DeadLetterURL receives jobs that cannot run: poison messages and
	// jobs whose retry budget is spent. Required.
	DeadLetterURL string
	// RecordsURL receives one run record per attempt. Required.
	RecordsURL string
	// Bucket and Prefix locate checkpoints and claims in S3:
	// s3://<Bucket>/<Prefix>/<job id>/. Bucket is required; Prefix
	// defaults to "jobfleet".
	Bucket string
	Prefix string

	// JobType, when set, is the only job type this worker runs; a message
	// of another type is dead-lettered.
	JobType string
	// MaxAttempts is the job type's retry budget: failed and OOM attempts
	// count against it. Default 3.
	MaxAttempts int
	// MaxTotalAttempts bounds all attempts, interrupted ones included, so
	// that a job cannot loop forever. Default 25.
	MaxTotalAttempts int
	// CheckpointDir is the job's checkpoint directory. Default
	// /var/run/jobfleet/checkpoint.
	CheckpointDir string
	// CheckpointInterval is how often the directory is uploaded while the
	// job runs. Default 5m.
	CheckpointInterval time.Duration
	// GracePeriod is the time from SIGTERM to SIGKILL the worker gets (the
	// pod's terminationGracePeriodSeconds). Default 2m.
	GracePeriod time.Duration
	// UploadGrace is the part of GracePeriod kept for the final checkpoint
	// upload and the requeue; the job gets the rest to stop. Default 1m,
	// at most half of GracePeriod.
	UploadGrace time.Duration
	// MaxRuntime bounds one attempt. Default 24h.
	MaxRuntime time.Duration
	// VisibilityTimeout is how long a received message stays invisible;
	// the worker extends it by this much every third of it while the job
	// runs. Default 2m.
	VisibilityTimeout time.Duration
	// IdleTimeout is how long the worker waits for a message before it
	// exits: KEDA may start a pod for a message another pod took. Default
	// 20s.
	IdleTimeout time.Duration
	// MaxJobs is how many jobs one worker runs before it exits, for warm
	// reuse of a pod. Default 1.
	MaxJobs int
	// MemoryLimit is the memory allocated to the job, in bytes (the pod's
	// limit). Zero when unknown.
	MemoryLimit int64
	// Cgroup selects how memory is measured. Default CgroupContainer.
	Cgroup CgroupMode
	// CgroupParent is where CgroupJob creates job cgroups. Default
	// DefaultCgroupParent().
	CgroupParent string
	// ReasonFile is a downward-API file of the pod's annotations; the
	// dispatcher's interruption handler annotates the pod with why it is
	// evicting it, so the rerun is recorded as interrupted. Default
	// /etc/jobfleet/podinfo/annotations.
	ReasonFile string
	// Placement says where the worker runs, for run records and history.
	Placement Placement
	// Pod and PodNamespace name the worker's pod, recorded in claims and
	// in the pod index the failure sensor reads.
	Pod          string
	PodNamespace string
	// WorkDir holds the params file. Default: the system temp directory.
	WorkDir string
	// Stdout and Stderr receive the job command's output. Default: the
	// worker's own.
	Stdout, Stderr io.Writer
	// Hooks observe the worker, for metrics.
	Hooks Hooks
}

// Placement is where a worker runs.
type Placement struct {
	Node         string
	InstanceType string
	CapacityType string
	Zone         string
	Arch         string
	// Pool and Size name the job's class.
	Pool string
	Size string
}

// Defaults of Config.
const (
	DefaultPrefix            = "jobfleet"
	DefaultMaxTotalAttempts  = 25
	DefaultGracePeriod       = 2 * time.Minute
	DefaultVisibilityTimeout = 2 * time.Minute
	DefaultIdleTimeout       = 20 * time.Second
	DefaultReasonFile        = "/etc/jobfleet/podinfo/annotations"
)

// WithDefaults returns the config with zero values replaced by defaults.
func (c Config) WithDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = jobtype.DefaultMaxAttempts
	}
	if c.MaxTotalAttempts == 0 {
		c.MaxTotalAttempts = DefaultMaxTotalAttempts
	}
	if c.CheckpointDir == "" {
		c.CheckpointDir = jobtype.DefaultCheckpointDir
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = jobtype.DefaultCheckpointInterval
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.UploadGrace == 0 {
		c.UploadGrace = jobtype.DefaultUploadGrace
	}
	c.UploadGrace = min(c.UploadGrace, c.GracePeriod/2)
	if c.MaxRuntime == 0 {
		c.MaxRuntime = jobtype.DefaultMaxRuntime
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxJobs == 0 {
		c.MaxJobs = 1
	}
	if c.Cgroup == "" {
		c.Cgroup = CgroupContainer
	}
	if c.CgroupParent == "" {
		c.CgroupParent = DefaultCgroupParent()
	}
	if c.ReasonFile == "" {
		c.ReasonFile = DefaultReasonFile
	}
	if c.Placement.Arch == "" {
		c.Placement.Arch = runtime.GOARCH
	}
	if c.WorkDir == "" {
		c.WorkDir = os.TempDir()
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	return c
}

// Validate reports every problem of a config with defaults applied.
func (c Config) Validate() error {
	var errs []error
	required := map[string]string{
		"queue URL": c.QueueURL, "intake queue URL": c.IntakeURL, "dead-letter queue URL": c.DeadLetterURL,
		"records queue URL": c.RecordsURL, "bucket": c.Bucket,
	}
	for _, name := range []string{"queue URL", "intake queue URL", "dead-letter queue URL", "records queue URL", "bucket"} {
		if required[name] == "" {
			errs = append(errs, fmt.Errorf("the %s is required", name))
		}
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max attempts %d: at least 1", c.MaxAttempts))
	}
	if c.MaxJobs < 1 {
		errs = append(errs, fmt.Errorf("max jobs %d: at least 1", c.MaxJobs))
	}
	if c.VisibilityTimeout < 3*time.Second || c.VisibilityTimeout > 12*time.Hour {
		errs = append(errs, fmt.Errorf("visibility timeout %v: between 3s and 12h (the SQS maximum)", c.VisibilityTimeout))
	}
	if c.GracePeriod < 2*time.Second {
		errs = append(errs, fmt.Errorf("grace period %v: at least 2s", c.GracePeriod))
	}
	if c.CheckpointInterval < time.Second {
		errs = append(errs, fmt.Errorf("checkpoint interval %v: at least 1s", c.CheckpointInterval))
	}
	if c.MemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("memory limit %d: not negative", c.MemoryLimit))
	}
	switch c.Cgroup {
	case CgroupContainer, CgroupOff:
	case CgroupJob:
		if c.MemoryLimit == 0 {
			errs = append(errs, errors.New("cgroup mode job needs a memory limit"))
		}
	default:
		errs = append(errs, fmt.Errorf("cgroup mode %q: container, job or off", c.Cgroup))
	}
	return errors.Join(errs...)
}
