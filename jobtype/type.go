package jobtype

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// SpotPolicy says which capacity a job type's pods may run on.
type SpotPolicy string

const (
	// SpotPreferred lets Karpenter choose; it launches spot capacity when the
	// pool allows it and falls back to on-demand. The default.
	SpotPreferred SpotPolicy = "prefer-spot"
	// SpotOnly runs on spot capacity only.
	SpotOnly SpotPolicy = "spot"
	// OnDemandOnly never runs on spot capacity: for jobs that cannot
	// checkpoint.
	OnDemandOnly SpotPolicy = "on-demand"
)

// Type is one registered job type.
type Type struct {
	// Name identifies the type in job messages.
	Name string
	// Image and Command are what the job's pod runs, wrapped by
	// `jobfleet worker`.
	Image   string
	Command []string
	// Env is extra environment for the job's container.
	Env map[string]string
	// Pool names the Pool the type runs on.
	Pool string
	// CPU is the pod's CPU request.
	CPU resource.Quantity
	// GPU is how many GPUs of which kind each job needs; zero for CPU jobs.
	GPU GPU
	// Spot is the type's spot policy.
	Spot SpotPolicy
	// Features, when set, are the only job message features the memory
	// predictor reads for this type (predictor.features in the file, or
	// features): the model's other features are unset for the type's
	// jobs. The dispatcher's retraining writes them into the model, so
	// they take effect at the next retraining. Their order is the
	// model's (the dispatcher's --retrain-features, or the one the model
	// finds best).
	Features []string
	// GroupBy names job message labels (user, dataset) the predictor keys
	// this type's groups on, as strings (predictor.groupBy in the file).
	GroupBy []string
	// Memory bounds what the predictor may allocate.
	Memory Memory
	// Checkpoint says where the job keeps its checkpoint and how often the
	// worker uploads it.
	Checkpoint Checkpoint
	// MaxRuntime bounds one attempt; a job running longer is stopped and
	// counted as failed.
	MaxRuntime time.Duration
	// MaxAttempts is the retry budget: attempts that failed or ran out of
	// memory count against it; interrupted ones do not.
	MaxAttempts int
	// MaxReplicas caps the pods of one size class of this type.
	MaxReplicas int
	// DoNotDisrupt asks Karpenter not to consolidate nodes running this type
	// (karpenter.sh/do-not-disrupt), for long training jobs.
	DoNotDisrupt bool
	// Archs are the CPU architectures the type's pods may run on: those its
	// image is built for that its pool offers.
	Archs []string
	// Mode says how the image runs the job: its command under `jobfleet
	// worker --` (ModeCommand, the default), or a Go program that calls
	// worker.Run itself (ModeLibrary).
	Mode Mode
}

// Mode is how a job type's image runs its jobs.
type Mode string

// Modes of a job type.
const (
	// ModeCommand: the pod runs `jobfleet worker -- <command>`, with the
	// worker copied in by an init container.
	ModeCommand Mode = "command"
	// ModeLibrary: the pod runs the image's command directly; it is a Go
	// program that calls worker.Run with worker.FromEnv.
	ModeLibrary Mode = "library"
)

// GPU is a job type's GPU need.
type GPU struct {
	// Count is the number of GPUs per job.
	Count int
	// Kind selects a GPU model, as Karpenter's instance-gpu-name label names
	// it (e.g. "a10g"); empty accepts any.
	Kind string
}

// Memory bounds, in bytes.
type Memory struct {
	// Min and Max clamp every prediction.
	Min, Max int64
	// Default is allocated while the predictor knows nothing of the type.
	Default int64
}

// Checkpoint settings of a job type.
type Checkpoint struct {
	// Dir is the checkpoint directory inside the job's container, restored
	// from S3 before the job starts and uploaded while it runs.
	Dir string
	// Interval is how often the worker uploads the directory.
	Interval time.Duration
	// StopGrace is how long the job gets after SIGTERM to save its
	// progress and exit.
	StopGrace time.Duration
	// UploadGrace is how long the final upload and the requeue may take
	// after the job exits.
	UploadGrace time.Duration
}

// GracePeriod is the pod's termination grace period: the job's stop grace
// plus the upload grace. Keep it under the two minutes of a spot
// interruption notice.
func (c Checkpoint) GracePeriod() time.Duration {
	return c.StopGrace + c.UploadGrace
}

// Pool is a family of Karpenter NodePools a job type runs on. `jobfleet
// nodepools` renders its NodePools (and EC2NodeClass) from the same
// definition the dispatcher's pod templates come from.
type Pool struct {
	// Name identifies the pool in job types and class names.
	Name string
	// NodePool is the Karpenter NodePool's name (karpenter.sh/nodepool); a
	// split pool has two, NodePool-spot and NodePool-on-demand.
	NodePool string
	// GPU pools carry the GPU taint; only GPU job types run there.
	GPU bool
	// Archs are the CPU architectures (kubernetes.io/arch) the pool's nodes
	// may have. A pool of several doubles the capacity a job whose image
	// has them all can use.
	Archs []string
	// CapacityTypes are the capacity types the NodePool may launch.
	CapacityTypes []string
	// SpotPercent, when above zero, splits the pool's pods between spot and
	// on-demand nodes: SpotPercent of them on spot, the rest on-demand
	// (two NodePools and a topology spread over CapacitySpreadLabel).
	SpotPercent int
	// Sizes is the ascending ladder of memory sizes, in bytes, that
	// predictions are rounded up to.
	Sizes []int64
	// Tolerations are taints of the pool's nodes that its pods tolerate,
	// as key[=value]:effect strings; the NodePools put them on the nodes.
	Tolerations []string
	// InstanceTypes and InstanceFamilies, when set, limit the instance
	// types the NodePools may launch.
	InstanceTypes, InstanceFamilies []string
	// Limits cap the resources the pool's NodePools may launch in total
	// (e.g. cpu, memory, nvidia.com/gpu).
	Limits map[string]resource.Quantity
	// ConsolidateAfter is how long a node stays empty before Karpenter
	// removes it.
	ConsolidateAfter time.Duration
	// ExpireAfter is the longest a node lives; at least the longest
	// attempt of the pool's job types.
	ExpireAfter time.Duration
	// AMI is the EC2NodeClass's AMI alias (family@version): pin the version
	// on GPU pools, whose nodes a new AMI would otherwise drift.
	AMI string
	// RootVolume is the nodes' root EBS volume (gp3, encrypted).
	RootVolume Volume
}

// Volume is an EBS gp3 volume.
type Volume struct {
	// Size in bytes.
	Size int64
	// IOPS and Throughput (MiB/s) provisioned.
	IOPS, Throughput int
}

// CapacitySpreadLabel is the node label a split pool's pods spread over:
// each of its NodePools gives its nodes some of the values.
const CapacitySpreadLabel = "jobfleet.io/capacity-spread"

// Split returns how many values of CapacitySpreadLabel the spot and the
// on-demand NodePool of a split pool take: 3 and 2 for a 60% split. Pods
// spread evenly over the values, so the ratio of values is the ratio of
// pods. Both are zero for a pool that is not split.
func (p *Pool) Split() (spot, onDemand int) {
	if p.SpotPercent <= 0 || p.SpotPercent >= 100 {
		return 0, 0
	}
	g := gcd(p.SpotPercent, 100-p.SpotPercent)
	return p.SpotPercent / g, (100 - p.SpotPercent) / g
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// SizeFor rounds memory up to the pool's ladder. It returns false when memory
// is larger than the largest size.
func (p *Pool) SizeFor(memory int64) (int64, bool) {
	i, _ := slices.BinarySearch(p.Sizes, memory)
	if i == len(p.Sizes) {
		return 0, false
	}
	return p.Sizes[i], true
}

// Largest returns the pool's largest size.
func (p *Pool) Largest() int64 {
	return p.Sizes[len(p.Sizes)-1]
}

// AllowsCapacity reports whether the pool's NodePool may launch the capacity
// type.
func (p *Pool) AllowsCapacity(capacityType string) bool {
	return slices.Contains(p.CapacityTypes, capacityType)
}

// SizeName is the short name of a memory size used in class and queue
// names: "512mi", "2gi", or "3g" for a decimal size. The registry accepts
// only sizes of whole MiB or MB, which always have such a name.
func SizeName(bytes int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"ti", 1 << 40}, {"gi", 1 << 30}, {"t", 1e12}, {"g", 1e9}, {"mi", 1 << 20}, {"m", 1e6}, {"ki", 1 << 10}, {"k", 1e3}} {
		if bytes >= u.size && bytes%u.size == 0 {
			return strconv.FormatInt(bytes/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(bytes, 10) + "b"
}

// formatBytes writes a memory size the way Kubernetes does: "512Mi", "2Gi".
func formatBytes(bytes int64) string {
	return resource.NewQuantity(bytes, resource.BinarySI).String()
}

// Clamp bounds memory to the type's range.
func (t *Type) Clamp(memory int64) int64 {
	return min(max(memory, t.Memory.Min), t.Memory.Max)
}

func (t *Type) String() string {
	return fmt.Sprintf("job type %s", t.Name)
}
