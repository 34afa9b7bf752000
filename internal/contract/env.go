package contract

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet/internal/units"
)

// WorkerEnv is the configuration a worker receives from its pod template (or
// from `jobfleet local`'s executor) as JOBFLEET_* environment variables.
// Environ writes it and ParseWorkerEnv reads it; nothing else spells the
// variables' names. Zero values are left out and take the worker's defaults.
type WorkerEnv struct {
	// Queues, as URLs.
	Queue, Intake, DeadLetter, Records string
	// EventsTopic is the SNS topic of completion events.
	EventsTopic string
	// Bucket and Prefix locate claims and checkpoints.
	Bucket, Prefix string
	// JobType is the only type the worker runs.
	JobType string
	// MaxAttempts is the type's retry budget.
	MaxAttempts int

	CheckpointDir      string
	CheckpointInterval time.Duration
	// GracePeriod is the pod's termination grace period; UploadGrace the
	// part of it kept for the final upload and requeue.
	GracePeriod, UploadGrace time.Duration
	MaxRuntime               time.Duration
	VisibilityTimeout        time.Duration
	IdleTimeout              time.Duration
	MaxJobs                  int

	// Memory is the job's memory limit in bytes.
	Memory       int64
	Cgroup       string
	CgroupParent string
	// ReasonFile is the downward-API file of the pod's annotations.
	ReasonFile string

	// Where the worker runs. With DownwardAPI, Environ takes Pod,
	// PodNamespace and Node from the pod's own fields instead of values.
	Pod, PodNamespace, Node    string
	InstanceType, CapacityType string
	Zone, Pool, Size           string
	// GPUs is how many GPUs the job was given.
	GPUs        int
	DownwardAPI bool
}

// Defaults that the registry gives a job type and the worker takes when
// its environment leaves a setting out: one source, so the two agree.
const (
	DefaultCheckpointDir      = "/var/run/jobfleet/checkpoint"
	DefaultCheckpointInterval = 5 * time.Minute
	DefaultUploadGrace        = time.Minute
	DefaultMaxRuntime         = 24 * time.Hour
	DefaultMaxAttempts        = 3
)

// EnvVar is one environment variable: a value, or the pod field it comes
// from (a downward-API field path).
type EnvVar struct {
	Name      string
	Value     string
	FieldPath string
}

// Names of the worker's environment variables that other code refers to.
const (
	EnvQueue  = "JOBFLEET_QUEUE"
	EnvBucket = "JOBFLEET_BUCKET"
	// EnvWrapped is set in the environment of a command that `jobfleet
	// worker` runs, so that a Go program calling worker.Run under it can
	// tell it is wrapped (and should not look for a job of its own).
	EnvWrapped = "JOBFLEET_WRAPPED"
)

// envVar describes one variable: its name, help, how to write and read it.
type envVar struct {
	name   string
	help   string
	format func(e *WorkerEnv) string
	parse  func(e *WorkerEnv, v string) error
	field  string // downward-API field path, with DownwardAPI
}

func str(name, help string, f func(*WorkerEnv) *string) envVar {
	return envVar{name: name, help: help,
		format: func(e *WorkerEnv) string { return *f(e) },
		parse:  func(e *WorkerEnv, v string) error { *f(e) = v; return nil },
	}
}

func queueURL(name, help string, f func(*WorkerEnv) *string) envVar {
	v := str(name, help, f)
	v.parse = func(e *WorkerEnv, s string) error {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)", s)
		}
		*f(e) = s
		return nil
	}
	return v
}

func integer(name, help string, f func(*WorkerEnv) *int) envVar {
	return envVar{name: name, help: help,
		format: func(e *WorkerEnv) string {
			if *f(e) == 0 {
				return ""
			}
			return strconv.Itoa(*f(e))
		},
		parse: func(e *WorkerEnv, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("%q is not a whole number of at least 1", v)
			}
			*f(e) = n
			return nil
		},
	}
}

func duration(name, help string, f func(*WorkerEnv) *time.Duration) envVar {
	return envVar{name: name, help: help,
		format: func(e *WorkerEnv) string {
			if *f(e) == 0 {
				return ""
			}
			return f(e).String()
		},
		parse: func(e *WorkerEnv, v string) error {
			d, err := units.ParseDuration(v)
			if err != nil {
				return err
			}
			if d <= 0 {
				return fmt.Errorf("%q: a duration above zero", v)
			}
			*f(e) = d
			return nil
		},
	}
}

func downward(v envVar, fieldPath string) envVar {
	v.field = fieldPath
	return v
}

// workerVars is the worker's environment, in the order Environ writes it.
var workerVars = []envVar{
	queueURL(EnvQueue, "Class queue the worker receives its job from (URL). Required.", func(e *WorkerEnv) *string { return &e.Queue }),
	queueURL("JOBFLEET_INTAKE", "Intake queue that reruns go to (URL). Required.", func(e *WorkerEnv) *string { return &e.Intake }),
	queueURL("JOBFLEET_DEAD_LETTER", "Dead-letter queue for jobs that cannot run (URL). Required.", func(e *WorkerEnv) *string { return &e.DeadLetter }),
	queueURL("JOBFLEET_RECORDS", "Queue that receives one run record per attempt (URL). Required.", func(e *WorkerEnv) *string { return &e.Records }),
	str("JOBFLEET_EVENTS_TOPIC", "SNS topic (ARN) that gets a completion event when a job ends; empty publishes none.", func(e *WorkerEnv) *string { return &e.EventsTopic }),
	str(EnvBucket, "S3 bucket of claims and checkpoints. Required.", func(e *WorkerEnv) *string { return &e.Bucket }),
	str("JOBFLEET_PREFIX", "Key prefix in the bucket (default jobfleet).", func(e *WorkerEnv) *string { return &e.Prefix }),
	str("JOBFLEET_JOB_TYPE", "The only job type this worker runs; other types are dead-lettered.", func(e *WorkerEnv) *string { return &e.JobType }),
	integer("JOBFLEET_MAX_ATTEMPTS", "Retry budget: failed and OOM attempts a job may spend (default 3).", func(e *WorkerEnv) *int { return &e.MaxAttempts }),
	str("JOBFLEET_CHECKPOINT_DIR", "Checkpoint directory of the job (default /var/run/jobfleet/checkpoint).", func(e *WorkerEnv) *string { return &e.CheckpointDir }),
	duration("JOBFLEET_CHECKPOINT_INTERVAL", "How often the checkpoint directory is uploaded (default 5m).", func(e *WorkerEnv) *time.Duration { return &e.CheckpointInterval }),
	duration("JOBFLEET_GRACE_PERIOD", "Time from SIGTERM to SIGKILL, the pod's terminationGracePeriodSeconds (default 2m).", func(e *WorkerEnv) *time.Duration { return &e.GracePeriod }),
	duration("JOBFLEET_UPLOAD_GRACE", "Part of the grace period kept for the final upload and the requeue (default 1m); the job gets the rest to stop.", func(e *WorkerEnv) *time.Duration { return &e.UploadGrace }),
	duration("JOBFLEET_MAX_RUNTIME", "Longest one attempt may run (default 24h).", func(e *WorkerEnv) *time.Duration { return &e.MaxRuntime }),
	duration("JOBFLEET_VISIBILITY_TIMEOUT", "Visibility timeout of the held message and lease of the claim, renewed every third of it (default 2m).", func(e *WorkerEnv) *time.Duration { return &e.VisibilityTimeout }),
	duration("JOBFLEET_IDLE_TIMEOUT", "Exit when no message arrives for this long (default 20s).", func(e *WorkerEnv) *time.Duration { return &e.IdleTimeout }),
	integer("JOBFLEET_MAX_JOBS", "Jobs to run before exiting, for warm reuse of a pod (default 1).", func(e *WorkerEnv) *int { return &e.MaxJobs }),
	{
		name: "JOBFLEET_MEMORY", help: "Memory allocated to the job, in bytes or with a unit (4Gi): the pod's limit.",
		format: func(e *WorkerEnv) string {
			if e.Memory == 0 {
				return ""
			}
			return strconv.FormatInt(e.Memory, 10)
		},
		parse: func(e *WorkerEnv, v string) error {
			n, err := units.ParseBytes(v)
			if err != nil {
				return err
			}
			e.Memory = n
			return nil
		},
	},
	{
		name: "JOBFLEET_CGROUP", help: "How memory is measured: container (the pod's cgroup, the default), job (a cgroup per job with the memory limit; needs root) or off (rusage).",
		format: func(e *WorkerEnv) string { return e.Cgroup },
		parse: func(e *WorkerEnv, v string) error {
			switch v {
			case "container", "job", "off":
				e.Cgroup = v
				return nil
			}
			return fmt.Errorf("%q: container, job or off", v)
		},
	},
	str("JOBFLEET_CGROUP_PARENT", "Where JOBFLEET_CGROUP=job creates cgroups (default: a jobfleet directory of the memory hierarchy).", func(e *WorkerEnv) *string { return &e.CgroupParent }),
	str("JOBFLEET_REASON_FILE", "Downward-API file of the pod's annotations (default /etc/jobfleet/podinfo/annotations).", func(e *WorkerEnv) *string { return &e.ReasonFile }),
	downward(str("JOBFLEET_POD_NAME", "Name of this pod.", func(e *WorkerEnv) *string { return &e.Pod }), "metadata.name"),
	downward(str("JOBFLEET_POD_NAMESPACE", "Namespace of this pod.", func(e *WorkerEnv) *string { return &e.PodNamespace }), "metadata.namespace"),
	downward(str("JOBFLEET_NODE_NAME", "Name of this node.", func(e *WorkerEnv) *string { return &e.Node }), "spec.nodeName"),
	str("JOBFLEET_INSTANCE_TYPE", "Instance type of this node.", func(e *WorkerEnv) *string { return &e.InstanceType }),
	str("JOBFLEET_CAPACITY_TYPE", "Capacity type of this node: spot or on-demand.", func(e *WorkerEnv) *string { return &e.CapacityType }),
	str("JOBFLEET_ZONE", "Availability zone of this node.", func(e *WorkerEnv) *string { return &e.Zone }),
	str("JOBFLEET_POOL", "Pool of the job's class.", func(e *WorkerEnv) *string { return &e.Pool }),
	str("JOBFLEET_SIZE", "Size of the job's class.", func(e *WorkerEnv) *string { return &e.Size }),
	integer("JOBFLEET_GPUS", "GPUs the job was given, for its usage (default 0).", func(e *WorkerEnv) *int { return &e.GPUs }),
}

// Environ writes the configuration as environment variables, leaving out
// zero values.
func (e WorkerEnv) Environ() []EnvVar {
	var out []EnvVar
	for _, v := range workerVars {
		if e.DownwardAPI && v.field != "" {
			out = append(out, EnvVar{Name: v.name, FieldPath: v.field})
			continue
		}
		if s := v.format(&e); s != "" {
			out = append(out, EnvVar{Name: v.name, Value: s})
		}
	}
	return out
}

// Strings returns the variables as NAME=value strings, for exec.Cmd.Env.
// Downward-API variables are left out.
func (e WorkerEnv) Strings() []string {
	var out []string
	for _, v := range e.Environ() {
		if v.FieldPath == "" {
			out = append(out, v.Name+"="+v.Value)
		}
	}
	return out
}

// ParseWorkerEnv reads the configuration from environment variables, such
// as os.LookupEnv. Unset and empty variables keep their zero values; every
// variable that cannot be read is reported, by name.
func ParseWorkerEnv(lookup func(string) (string, bool)) (WorkerEnv, error) {
	var e WorkerEnv
	var errs []error
	for _, v := range workerVars {
		s, ok := lookup(v.name)
		if !ok || s == "" {
			continue
		}
		if err := v.parse(&e, s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.name, err))
		}
	}
	return e, errors.Join(errs...)
}

// WorkerEnvHelp describes every variable, one per line, for `jobfleet worker
// --help`.
func WorkerEnvHelp() string {
	var b strings.Builder
	for _, v := range workerVars {
		fmt.Fprintf(&b, "  %-30s %s\n", v.name, v.help)
	}
	return b.String()
}
