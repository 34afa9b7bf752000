package worker

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"time"

	"github.com/jobfleet/jobfleet/internal/cgroup"
	"github.com/jobfleet/jobfleet/internal/contract"
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
	// EventsTopic is the SNS topic that gets a completion event when a job
	// ends; empty publishes none. Needs WithAnnouncements.
	EventsTopic string
	// Bucket and Prefix locate claims and checkpoints in S3:
	// s3://<Bucket>/<Prefix>/jobs/<job id>/. Bucket is required; Prefix
	// defaults to "jobfleet".
	Bucket string
	Prefix string

	// JobType, when set, is the only job type this worker runs; a message
	// of another type is dead-lettered.
	JobType string
	// MaxAttempts is the job type's retry budget: failed and OOM attempts
	// count against it. Default 3.
	MaxAttempts int
	// MaxTotalAttempts bounds all attempts, interrupted ones included (not
	// one sent back to be sized again, which ran nothing), so
	// that a job cannot loop forever. Default 25.
	MaxTotalAttempts int
	// CheckpointDir is the job's checkpoint directory. Default
	// /var/run/jobfleet/checkpoint.
	CheckpointDir string
	// CheckpointInterval is how often the directory is uploaded while the
	// job runs. Default 5m.
	CheckpointInterval time.Duration
	// GracePeriod is the time from SIGTERM to SIGKILL the worker gets (the
	// pod's terminationGracePeriodSeconds). Default 2m. When the
	// interruption controller tells the worker of an earlier deadline (a
	// late spot notice), the worker plans its stop from that one.
	GracePeriod time.Duration
	// UploadGrace is the part of GracePeriod kept for the final checkpoint
	// upload and the requeue; the job gets the rest to stop. Default 1m;
	// it must be shorter than GracePeriod.
	UploadGrace time.Duration
	// MaxRuntime bounds one attempt. Default 24h.
	MaxRuntime time.Duration
	// VisibilityTimeout is how long a received message stays invisible and
	// how long the claim's lease lasts; the worker renews both every third
	// of it. A worker that could renew neither for this long stops its job,
	// since another may take the attempt over. Default 2m.
	VisibilityTimeout time.Duration
	// CancelPoll is how often a running attempt checks whether its job was
	// cancelled (one S3 read). Default 5s.
	CancelPoll time.Duration
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
	// CgroupParent is where CgroupJob creates job cgroups. Default: a
	// jobfleet directory in the host's memory cgroup hierarchy.
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

// CgroupMode says how the worker measures a job's memory and tells an OOM
// kill.
type CgroupMode string

const (
	// CgroupContainer reads the memory cgroup the worker itself runs in: in
	// a pod, the container's, which holds the job. The default.
	CgroupContainer CgroupMode = "container"
	// CgroupJob creates a memory cgroup per job under CgroupParent, limited
	// to the job's memory, and runs the job's command in it. For running
	// jobs outside Kubernetes (jobfleet local); needs root on Linux.
	CgroupJob CgroupMode = "job"
	// CgroupOff measures the peak resident set of the job's process from
	// the kernel's rusage and cannot tell an OOM kill from other SIGKILLs
	// unless the peak was near the limit.
	CgroupOff CgroupMode = "off"
)

// Peak sources reported in run records.
const (
	SourceCgroupV2 = cgroup.SourceV2
	SourceCgroupV1 = cgroup.SourceV1
	SourceRusage   = "rusage"
)

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
	// GPUs is how many GPUs the job was given.
	GPUs int
}

// Defaults of Config.
const (
	DefaultPrefix            = contract.DefaultPrefix
	DefaultMaxTotalAttempts  = contract.MaxTotalAttempts
	DefaultGracePeriod       = 2 * time.Minute
	DefaultVisibilityTimeout = 2 * time.Minute
	DefaultIdleTimeout       = 20 * time.Second
	DefaultCancelPoll        = 5 * time.Second
	DefaultReasonFile        = "/etc/jobfleet/podinfo/annotations"
)

// FromEnv returns the configuration that jobfleet's pod template (or
// `jobfleet local`) gives a worker in JOBFLEET_* environment variables;
// `jobfleet worker --help` lists them. lookup is usually os.LookupEnv.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	env, err := contract.ParseWorkerEnv(lookup)
	if err != nil {
		return Config{}, err
	}
	return Config{
		QueueURL: env.Queue, IntakeURL: env.Intake, DeadLetterURL: env.DeadLetter, RecordsURL: env.Records, EventsTopic: env.EventsTopic,
		Bucket: env.Bucket, Prefix: env.Prefix, JobType: env.JobType, MaxAttempts: env.MaxAttempts,
		CheckpointDir: env.CheckpointDir, CheckpointInterval: env.CheckpointInterval,
		GracePeriod: env.GracePeriod, UploadGrace: env.UploadGrace, MaxRuntime: env.MaxRuntime,
		VisibilityTimeout: env.VisibilityTimeout, IdleTimeout: env.IdleTimeout, MaxJobs: env.MaxJobs,
		MemoryLimit: env.Memory, Cgroup: CgroupMode(env.Cgroup), CgroupParent: env.CgroupParent,
		ReasonFile: env.ReasonFile, Pod: env.Pod, PodNamespace: env.PodNamespace,
		Placement: Placement{
			Node: env.Node, InstanceType: env.InstanceType, CapacityType: env.CapacityType, Zone: env.Zone, GPUs: env.GPUs,
			Pool: env.Pool, Size: env.Size,
		},
	}, nil
}

// WithDefaults returns the config with zero values replaced by defaults.
func (c Config) WithDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = contract.DefaultMaxAttempts
	}
	if c.MaxTotalAttempts == 0 {
		c.MaxTotalAttempts = DefaultMaxTotalAttempts
	}
	if c.CheckpointDir == "" {
		c.CheckpointDir = contract.DefaultCheckpointDir
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = contract.DefaultCheckpointInterval
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.UploadGrace == 0 {
		c.UploadGrace = min(contract.DefaultUploadGrace, c.GracePeriod/2)
	}
	if c.MaxRuntime == 0 {
		c.MaxRuntime = contract.DefaultMaxRuntime
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if c.CancelPoll == 0 {
		c.CancelPoll = DefaultCancelPoll
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
		c.CgroupParent = cgroup.DefaultParent()
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

// Validate reports every problem of a config with defaults applied. Each
// names the setting and the environment variable that sets it.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, q := range []struct{ name, env, url string }{
		{"QueueURL", "JOBFLEET_QUEUE", c.QueueURL},
		{"IntakeURL", "JOBFLEET_INTAKE", c.IntakeURL},
		{"DeadLetterURL", "JOBFLEET_DEAD_LETTER", c.DeadLetterURL},
		{"RecordsURL", "JOBFLEET_RECORDS", c.RecordsURL},
	} {
		if q.url == "" {
			bad("%s (%s) is required", q.name, q.env)
			continue
		}
		if u, err := url.Parse(q.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("%s (%s) %q is not a queue URL", q.name, q.env, q.url)
		}
	}
	if c.Bucket == "" {
		bad("Bucket (JOBFLEET_BUCKET) is required")
	}
	if c.MaxAttempts < 1 {
		bad("MaxAttempts (JOBFLEET_MAX_ATTEMPTS) %d: at least 1", c.MaxAttempts)
	}
	if c.MaxTotalAttempts < c.MaxAttempts {
		bad("MaxTotalAttempts %d: at least MaxAttempts (%d)", c.MaxTotalAttempts, c.MaxAttempts)
	}
	if c.MaxJobs < 1 {
		bad("MaxJobs (JOBFLEET_MAX_JOBS) %d: at least 1", c.MaxJobs)
	}
	if c.VisibilityTimeout < 3*time.Second || c.VisibilityTimeout > 12*time.Hour {
		bad("VisibilityTimeout (JOBFLEET_VISIBILITY_TIMEOUT) %v: between 3s and 12h (the SQS maximum)", c.VisibilityTimeout)
	}
	if c.IdleTimeout <= 0 {
		bad("IdleTimeout (JOBFLEET_IDLE_TIMEOUT) %v: above zero", c.IdleTimeout)
	}
	if c.GracePeriod < 2*time.Second {
		bad("GracePeriod (JOBFLEET_GRACE_PERIOD) %v: at least 2s", c.GracePeriod)
	}
	if c.UploadGrace <= 0 || c.UploadGrace >= c.GracePeriod {
		bad("UploadGrace (JOBFLEET_UPLOAD_GRACE) %v: above zero and shorter than the grace period (%v), which must also leave the job time to stop", c.UploadGrace, c.GracePeriod)
	}
	if c.MaxRuntime <= 0 {
		bad("MaxRuntime (JOBFLEET_MAX_RUNTIME) %v: above zero", c.MaxRuntime)
	}
	if c.CheckpointInterval < time.Second {
		bad("CheckpointInterval (JOBFLEET_CHECKPOINT_INTERVAL) %v: at least 1s", c.CheckpointInterval)
	}
	if c.MemoryLimit < 0 {
		bad("MemoryLimit (JOBFLEET_MEMORY) %d: not negative", c.MemoryLimit)
	}
	switch c.Cgroup {
	case CgroupContainer, CgroupOff:
	case CgroupJob:
		if c.MemoryLimit == 0 {
			bad("Cgroup (JOBFLEET_CGROUP) job needs a memory limit (JOBFLEET_MEMORY)")
		}
	default:
		bad("Cgroup (JOBFLEET_CGROUP) %q: container, job or off", c.Cgroup)
	}
	return errors.Join(errs...)
}
