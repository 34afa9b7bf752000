package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/worker"
)

// WorkerCmd is the entrypoint of every job pod.
type WorkerCmd struct {
	Queue       string `name:"queue" env:"JOBFLEET_QUEUE" required:"" placeholder:"URL" help:"Class queue to receive the job from."`
	Intake      string `name:"intake" env:"JOBFLEET_INTAKE" required:"" placeholder:"URL" help:"Intake queue that reruns go to."`
	DeadLetter  string `name:"dead-letter" env:"JOBFLEET_DEAD_LETTER" required:"" placeholder:"URL" help:"Dead-letter queue for jobs that cannot run."`
	Records     string `name:"records" env:"JOBFLEET_RECORDS" required:"" placeholder:"URL" help:"Queue that receives one run record per attempt."`
	Bucket      string `name:"bucket" env:"JOBFLEET_BUCKET" required:"" help:"S3 bucket of checkpoints and claims."`
	Prefix      string `name:"prefix" env:"JOBFLEET_PREFIX" default:"jobfleet" help:"Key prefix of checkpoints and claims in the bucket."`
	JobType     string `name:"job-type" env:"JOBFLEET_JOB_TYPE" help:"The only job type this worker runs; other types are dead-lettered."`
	MaxAttempts int    `name:"max-attempts" env:"JOBFLEET_MAX_ATTEMPTS" default:"3" help:"Retry budget: failed and OOM attempts that count against it."`

	CheckpointDir      string        `name:"checkpoint-dir" env:"JOBFLEET_CHECKPOINT_DIR" default:"/var/run/jobfleet/checkpoint" help:"Checkpoint directory of the job."`
	CheckpointInterval time.Duration `name:"checkpoint-interval" env:"JOBFLEET_CHECKPOINT_INTERVAL" default:"5m" help:"How often the checkpoint directory is uploaded."`
	GracePeriod        time.Duration `name:"grace-period" env:"JOBFLEET_GRACE_PERIOD" default:"2m" help:"Time from SIGTERM to SIGKILL (the pod's terminationGracePeriodSeconds)."`
	UploadGrace        time.Duration `name:"upload-grace" env:"JOBFLEET_UPLOAD_GRACE" default:"1m" help:"Part of the grace period kept for the final upload and the requeue."`
	MaxRuntime         time.Duration `name:"max-runtime" env:"JOBFLEET_MAX_RUNTIME" default:"24h" help:"Longest one attempt may run."`
	Visibility         time.Duration `name:"visibility-timeout" env:"JOBFLEET_VISIBILITY_TIMEOUT" default:"2m" help:"Visibility timeout of the held message, extended every third of it."`
	IdleTimeout        time.Duration `name:"idle-timeout" env:"JOBFLEET_IDLE_TIMEOUT" default:"20s" help:"Exit when no message arrives for this long."`
	MaxJobs            int           `name:"max-jobs" env:"JOBFLEET_MAX_JOBS" default:"1" help:"Jobs to run before exiting (warm reuse of a pod)."`

	Memory       string `name:"memory" env:"JOBFLEET_MEMORY" help:"Memory allocated to the job, e.g. 4Gi (the pod's limit)."`
	Cgroup       string `name:"cgroup" env:"JOBFLEET_CGROUP" enum:"container,job,off" default:"container" help:"How memory is measured: container (the pod's cgroup), job (a cgroup per job with the memory limit, needs root), off (rusage)."`
	CgroupParent string `name:"cgroup-parent" env:"JOBFLEET_CGROUP_PARENT" help:"Where --cgroup=job creates cgroups (default: a jobfleet directory in the memory hierarchy)."`
	ReasonFile   string `name:"reason-file" env:"JOBFLEET_REASON_FILE" default:"/etc/jobfleet/podinfo/annotations" help:"Downward-API file of the pod's annotations, telling an interruption from an eviction."`

	Pod          string `name:"pod" env:"JOBFLEET_POD_NAME" help:"Name of this pod."`
	PodNamespace string `name:"pod-namespace" env:"JOBFLEET_POD_NAMESPACE" help:"Namespace of this pod."`
	Node         string `name:"node" env:"JOBFLEET_NODE_NAME" help:"Name of this node."`
	InstanceType string `name:"instance-type" env:"JOBFLEET_INSTANCE_TYPE" help:"Instance type of this node."`
	CapacityType string `name:"capacity-type" env:"JOBFLEET_CAPACITY_TYPE" help:"Capacity type of this node: spot or on-demand."`
	Zone         string `name:"zone" env:"JOBFLEET_ZONE" help:"Availability zone of this node."`
	Pool         string `name:"pool" env:"JOBFLEET_POOL" help:"Pool of the job's class."`
	Size         string `name:"size" env:"JOBFLEET_SIZE" help:"Size of the job's class."`

	Command []string `arg:"" passthrough:"" name:"command" help:"The job's command and its arguments, after --."`
}

// Run runs jobs until the queue is idle, MaxJobs ran, or SIGTERM.
func (c *WorkerCmd) Run(ctx context.Context, g *Globals) error {
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return errors.New("no command: jobfleet worker [flags] -- <command> [args...]")
	}
	var memory int64
	if c.Memory != "" {
		q, err := resource.ParseQuantity(c.Memory)
		if err != nil {
			return fmt.Errorf("--memory %q: %w", c.Memory, err)
		}
		memory = q.Value()
	}
	clients, err := awsclient.Load(ctx, 10)
	if err != nil {
		return err
	}
	cfg := worker.Config{
		QueueURL: c.Queue, IntakeURL: c.Intake, DeadLetterURL: c.DeadLetter, RecordsURL: c.Records,
		Bucket: c.Bucket, Prefix: c.Prefix, JobType: c.JobType, MaxAttempts: c.MaxAttempts,
		CheckpointDir: c.CheckpointDir, CheckpointInterval: c.CheckpointInterval,
		GracePeriod: c.GracePeriod, UploadGrace: c.UploadGrace, MaxRuntime: c.MaxRuntime,
		VisibilityTimeout: c.Visibility, IdleTimeout: c.IdleTimeout, MaxJobs: c.MaxJobs,
		MemoryLimit: memory, Cgroup: worker.CgroupMode(c.Cgroup), CgroupParent: c.CgroupParent,
		ReasonFile: c.ReasonFile, Pod: c.Pod, PodNamespace: c.PodNamespace,
		Placement: worker.Placement{
			Node: c.Node, InstanceType: c.InstanceType, CapacityType: c.CapacityType, Zone: c.Zone,
			Pool: c.Pool, Size: c.Size,
		},
		Stdout: g.stdout, Stderr: g.stderr,
	}
	w, err := worker.New(cfg, clients.SQS, clients.S3, worker.Command(c.Command[0], c.Command[1:]...), worker.WithLogger(g.log))
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
