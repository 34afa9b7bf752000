package dispatcher

import (
	"fmt"
	"maps"
	"slices"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/jobfleet/jobfleet/dispatcher/interruption"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/jobtype"
)

// Labels and annotations on jobfleet's Kubernetes objects.
const (
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedBy         = "jobfleet"
	LabelType         = "jobfleet.io/type"
	LabelPool         = "jobfleet.io/pool"
	LabelSize         = "jobfleet.io/size"
	LabelCapacity     = "jobfleet.io/capacity"
	LabelClass        = "jobfleet.io/class"
	AnnotationQueue   = "jobfleet.io/queue"
	DoNotDisrupt      = "karpenter.sh/do-not-disrupt"
	LabelNodePool     = "karpenter.sh/nodepool"
	LabelCapacityType = "karpenter.sh/capacity-type"
	LabelGPUName      = "karpenter.k8s.aws/instance-gpu-name"
	LabelArch         = "kubernetes.io/arch"
)

// Paths inside job pods.
const (
	binDir     = "/opt/jobfleet"
	podinfoDir = "/etc/jobfleet/podinfo"
)

// Template holds the settings every class's ScaledJob shares.
type Template struct {
	Namespace string
	// Prefix starts every class name. Default "jobfleet".
	Prefix string
	// WorkerImage holds the jobfleet binary at /jobfleet; an init
	// container copies it into the pods of job types in command mode.
	WorkerImage    string
	ServiceAccount string
	// Queues, bucket and prefix the workers use.
	IntakeURL, DeadLetterURL, RecordsURL string
	// EventsTopic is the SNS topic of completion events, the workers' and
	// the dispatcher's; empty publishes none.
	EventsTopic              string
	Bucket, CheckpointPrefix string
	Region                   string
	// SQSEndpoint, S3Endpoint, SNSEndpoint and SFNEndpoint are custom
	// endpoints (a local stack); empty for AWS. KEDA's trigger polls
	// SQSEndpoint too.
	SQSEndpoint, S3Endpoint, SNSEndpoint, SFNEndpoint string
	// TriggerAuthentication names a KEDA TriggerAuthentication for the
	// trigger; without one KEDA uses its own identity (IRSA).
	TriggerAuthentication string
	// PollingInterval is how often KEDA checks each class queue. Default 10s.
	PollingInterval time.Duration
	// VisibilityTimeout of the workers' held messages. Default 2m.
	VisibilityTimeout time.Duration
	// Env is added to every worker's environment.
	Env []corev1.EnvVar
	// Avoid returns the (instance type, zone) pairs whose spot capacity was
	// recently reclaimed, for the classes of interrupted jobs' reruns.
	Avoid func() []interruption.Pair
}

// ScaledJob builds the ScaledJob of a class: one Kubernetes Job per message
// waiting in the class queue, a pod sized to the class on the type's pool,
// running the type's command under `jobfleet worker`.
func (t Template) ScaledJob(c Class, typ *jobtype.Type, pool *jobtype.Pool, queueURL string) *kedav1alpha1.ScaledJob {
	name := c.Name(t.prefix())
	labels := map[string]string{
		LabelManagedBy: ManagedBy,
		LabelType:      c.Type,
		LabelPool:      c.Pool,
		LabelSize:      jobtype.SizeName(c.Size),
		LabelCapacity:  string(c.Capacity),
	}
	podLabels := maps.Clone(labels)
	podLabels[LabelClass] = name
	podAnnotations := map[string]string{}
	if typ.DoNotDisrupt {
		podAnnotations[DoNotDisrupt] = "true"
	}
	grace := typ.Checkpoint.GracePeriod()
	memory := *resource.NewQuantity(c.Size, resource.BinarySI)
	requests := corev1.ResourceList{corev1.ResourceMemory: memory, corev1.ResourceCPU: typ.CPU}
	limits := corev1.ResourceList{corev1.ResourceMemory: memory}
	if typ.GPU.Count > 0 {
		gpus := *resource.NewQuantity(int64(typ.GPU.Count), resource.DecimalSI)
		requests[jobtype.GPUResource] = gpus
		limits[jobtype.GPUResource] = gpus
	}

	command := append([]string{binDir + "/jobfleet", "worker", "--"}, typ.Command...)
	var initContainers []corev1.Container
	mounts := []corev1.VolumeMount{
		{Name: "checkpoint", MountPath: typ.Checkpoint.Dir},
		{Name: "podinfo", MountPath: podinfoDir, ReadOnly: true},
	}
	volumes := []corev1.Volume{
		{Name: "checkpoint", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}}},
		}}},
	}
	if typ.Mode == jobtype.ModeLibrary {
		// The image's own program is the worker (worker.Run).
		command = typ.Command
	} else {
		initContainers = []corev1.Container{{
			Name:         "jobfleet",
			Image:        t.WorkerImage,
			Command:      []string{"/jobfleet-worker", "install", binDir},
			VolumeMounts: []corev1.VolumeMount{{Name: "jobfleet-bin", MountPath: binDir}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi"), corev1.ResourceCPU: resource.MustParse("10m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
		}}
		mounts = append([]corev1.VolumeMount{{Name: "jobfleet-bin", MountPath: binDir, ReadOnly: true}}, mounts...)
		volumes = append([]corev1.Volume{{Name: "jobfleet-bin", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}, volumes...)
	}

	pod := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		ServiceAccountName:            t.ServiceAccount,
		TerminationGracePeriodSeconds: ptr.To(int64(grace / time.Second)),
		NodeSelector:                  nodeSelector(c, typ, pool),
		Affinity:                      t.affinity(c, typ),
		TopologySpreadConstraints:     spread(c, pool),
		Tolerations:                   tolerations(pool),
		InitContainers:                initContainers,
		Containers: []corev1.Container{{
			Name:         "job",
			Image:        typ.Image,
			Command:      command,
			Env:          t.env(c, typ, pool, queueURL),
			Resources:    corev1.ResourceRequirements{Requests: requests, Limits: limits},
			VolumeMounts: mounts,
		}},
		Volumes: volumes,
	}

	trigger := kedav1alpha1.ScaleTriggers{
		Type: "aws-sqs-queue",
		Name: "queue",
		Metadata: map[string]string{
			"queueURL":    queueURL,
			"queueLength": "1",
			"awsRegion":   t.Region,
			// A held message is a running Job: count in-flight messages so
			// KEDA neither starts a second Job for it nor loses track.
			"scaleOnInFlight": "true",
		},
	}
	if t.TriggerAuthentication != "" {
		trigger.AuthenticationRef = &kedav1alpha1.AuthenticationRef{Name: t.TriggerAuthentication}
	} else {
		trigger.Metadata["identityOwner"] = "operator"
	}
	if t.SQSEndpoint != "" {
		trigger.Metadata["awsEndpoint"] = t.SQSEndpoint
	}

	return &kedav1alpha1.ScaledJob{
		TypeMeta: metav1.TypeMeta{APIVersion: "keda.sh/v1alpha1", Kind: "ScaledJob"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   t.Namespace,
			Labels:      labels,
			Annotations: map[string]string{AnnotationQueue: queueURL},
		},
		Spec: kedav1alpha1.ScaledJobSpec{
			JobTargetRef: &batchv1.JobSpec{
				Parallelism: ptr.To[int32](1),
				Completions: ptr.To[int32](1),
				// The worker retries through SQS, with the job's history;
				// Kubernetes must not run a second pod for the same message.
				BackoffLimit:          ptr.To[int32](0),
				ActiveDeadlineSeconds: ptr.To(int64((typ.MaxRuntime + grace + 5*time.Minute) / time.Second)),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
					Spec:       pod,
				},
			},
			PollingInterval:            ptr.To(int32(t.pollingInterval() / time.Second)),
			SuccessfulJobsHistoryLimit: ptr.To[int32](3),
			FailedJobsHistoryLimit:     ptr.To[int32](10),
			MinReplicaCount:            ptr.To[int32](0),
			MaxReplicaCount:            ptr.To(int32(typ.MaxReplicas)),
			ScalingStrategy:            kedav1alpha1.ScalingStrategy{Strategy: "default"},
			// KEDA's default rollout deletes every running Job of a
			// ScaledJob when its spec changes; jobfleet updates specs
			// while jobs run (a new avoided placement, a new registry),
			// so running Jobs must finish under the spec they started with.
			Rollout:  kedav1alpha1.Rollout{Strategy: "gradual"},
			Triggers: []kedav1alpha1.ScaleTriggers{trigger},
		},
	}
}

func (t Template) prefix() string {
	if t.Prefix == "" {
		return "jobfleet"
	}
	return t.Prefix
}

func (t Template) pollingInterval() time.Duration {
	if t.PollingInterval <= 0 {
		return 10 * time.Second
	}
	return t.PollingInterval
}

// nodeSelector pins a class's pods to its pool's NodePools: by name, or,
// for a split pool's two NodePools, by their pool label; to its
// architecture when there is one; to a capacity type when the class has
// one; and to a GPU model.
func nodeSelector(c Class, typ *jobtype.Type, pool *jobtype.Pool) map[string]string {
	sel := map[string]string{LabelNodePool: pool.NodePool}
	if pool.SpotPercent > 0 {
		sel = map[string]string{LabelPool: pool.Name}
	}
	if len(typ.Archs) == 1 {
		sel[LabelArch] = typ.Archs[0]
	}
	switch c.Capacity {
	case CapacitySpot, CapacityOnDemand:
		sel[LabelCapacityType] = string(c.Capacity)
	}
	if typ.GPU.Kind != "" {
		sel[LabelGPUName] = typ.GPU.Kind
	}
	return sel
}

// spread has a split pool's pods, when their class lets Karpenter choose
// the capacity type, spread evenly over CapacitySpreadLabel, whose values
// the pool's spot and on-demand NodePools share out in its ratio:
// Karpenter's documented pattern for a spot/on-demand split. minDomains
// counts the values no node has yet as empty, so that the first pods do
// not all land on the first node's value.
func spread(c Class, pool *jobtype.Pool) []corev1.TopologySpreadConstraint {
	spot, onDemand := pool.Split()
	if spot == 0 || c.Capacity != CapacityAny {
		return nil
	}
	return []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		MinDomains:        ptr.To(int32(spot + onDemand)),
		TopologyKey:       jobtype.CapacitySpreadLabel,
		WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{LabelPool: pool.Name}},
	}}
}

func tolerations(pool *jobtype.Pool) []corev1.Toleration {
	var out []corev1.Toleration
	for _, s := range pool.Tolerations {
		tol, err := jobtype.ParseToleration(s)
		if err != nil {
			continue // the registry validated them
		}
		t := corev1.Toleration{Key: tol.Key, Effect: corev1.TaintEffect(tol.Effect), Operator: corev1.TolerationOpExists}
		if tol.Value != "" {
			t.Operator, t.Value = corev1.TolerationOpEqual, tol.Value
		}
		out = append(out, t)
	}
	return out
}

// env is the job container's environment: the worker's configuration
// (contract.WorkerEnv, which the worker reads back), the AWS settings, the
// type's own variables and the template's.
func (t Template) env(c Class, typ *jobtype.Type, pool *jobtype.Pool, queueURL string) []corev1.EnvVar {
	we := contract.WorkerEnv{
		Queue: queueURL, Intake: t.IntakeURL, DeadLetter: t.DeadLetterURL, Records: t.RecordsURL, EventsTopic: t.EventsTopic,
		Bucket: t.Bucket, Prefix: t.CheckpointPrefix, JobType: typ.Name, MaxAttempts: typ.MaxAttempts,
		CheckpointDir: typ.Checkpoint.Dir, CheckpointInterval: typ.Checkpoint.Interval,
		GracePeriod: typ.Checkpoint.GracePeriod(), UploadGrace: typ.Checkpoint.UploadGrace,
		MaxRuntime: typ.MaxRuntime, VisibilityTimeout: t.visibility(), Memory: c.Size,
		ReasonFile: podinfoDir + "/annotations", Pool: pool.Name, Size: jobtype.SizeName(c.Size),
		GPUs: typ.GPU.Count, DownwardAPI: true,
	}
	// The capacity type the pod will have, when the class or its pool
	// decides it; a pool that may launch both leaves it to Karpenter.
	switch {
	case c.Capacity == CapacitySpot || c.Capacity == CapacityOnDemand:
		we.CapacityType = string(c.Capacity)
	case len(pool.CapacityTypes) == 1:
		we.CapacityType = pool.CapacityTypes[0]
	}
	var env []corev1.EnvVar
	for _, v := range we.Environ() {
		ev := corev1.EnvVar{Name: v.Name, Value: v.Value}
		if v.FieldPath != "" {
			ev = corev1.EnvVar{Name: v.Name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: v.FieldPath}}}
		}
		env = append(env, ev)
	}
	env = append(env, corev1.EnvVar{Name: "JOBFLEET_LOG_FORMAT", Value: "json"}, corev1.EnvVar{Name: "AWS_REGION", Value: t.Region})
	if t.SQSEndpoint != "" {
		env = append(env, corev1.EnvVar{Name: "AWS_ENDPOINT_URL_SQS", Value: t.SQSEndpoint})
	}
	for _, e := range []struct{ name, url string }{
		{"AWS_ENDPOINT_URL_S3", t.S3Endpoint}, {"AWS_ENDPOINT_URL_SNS", t.SNSEndpoint}, {"AWS_ENDPOINT_URL_SFN", t.SFNEndpoint},
	} {
		if e.url != "" {
			env = append(env, corev1.EnvVar{Name: e.name, Value: e.url})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(typ.Env)) {
		env = append(env, corev1.EnvVar{Name: name, Value: typ.Env[name]})
	}
	return append(env, t.Env...)
}

func (t Template) visibility() time.Duration {
	if t.VisibilityTimeout <= 0 {
		return 2 * time.Minute
	}
	return t.VisibilityTimeout
}

// describe is a short description of a class for logs.
func (c Class) String() string {
	return fmt.Sprintf("%s/%s/%s/%s", c.Type, c.Pool, jobtype.SizeName(c.Size), c.Capacity)
}

// Node labels of the instance type and zone.
const (
	LabelInstanceType = "node.kubernetes.io/instance-type"
	LabelZone         = "topology.kubernetes.io/zone"
)

// maxAvoidTypes bounds the instance types an affinity avoids: the terms
// grow as 2^types.
const maxAvoidTypes = 4

// affinity keeps the pods of an AvoidInterrupted class off the recently
// interrupted (instance type, zone) pairs. Avoiding a pair means "not that
// type, or not that zone": for several pairs, grouped by instance type, the
// conjunction of those disjunctions becomes node selector terms (which are
// ORed) by choosing, for each avoided type, either to exclude the type or
// to exclude its zones.
//
// A type whose image has several architectures its pool offers gets them as
// one more requirement of every term.
func (t Template) affinity(c Class, typ *jobtype.Type) *corev1.Affinity {
	var archs []corev1.NodeSelectorRequirement
	if len(typ.Archs) > 1 {
		archs = []corev1.NodeSelectorRequirement{{Key: LabelArch, Operator: corev1.NodeSelectorOpIn, Values: typ.Archs}}
	}
	terms := t.avoidTerms(c)
	if len(terms) == 0 && len(archs) == 0 {
		return nil
	}
	if len(terms) == 0 {
		terms = []corev1.NodeSelectorTerm{{}}
	}
	for i := range terms {
		terms[i].MatchExpressions = slices.Concat(archs, terms[i].MatchExpressions)
	}
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}
}

// avoidTerms are the node selector terms of an AvoidInterrupted class.
func (t Template) avoidTerms(c Class) []corev1.NodeSelectorTerm {
	if !c.AvoidInterrupted || t.Avoid == nil {
		return nil
	}
	zones := map[string][]string{}
	var types []string
	for _, p := range t.Avoid() {
		if _, ok := zones[p.InstanceType]; !ok {
			if len(types) == maxAvoidTypes {
				continue
			}
			types = append(types, p.InstanceType)
		}
		if p.Zone != "" && !slices.Contains(zones[p.InstanceType], p.Zone) {
			zones[p.InstanceType] = append(zones[p.InstanceType], p.Zone)
		}
	}
	if len(types) == 0 {
		return nil
	}
	slices.Sort(types)
	var terms []corev1.NodeSelectorTerm
	for choice := 0; choice < 1<<len(types); choice++ {
		var notTypes, notZones []string
		for i, typ := range types {
			if choice&(1<<i) == 0 || len(zones[typ]) == 0 {
				notTypes = append(notTypes, typ)
			} else {
				notZones = append(notZones, zones[typ]...)
			}
		}
		if choice != 0 && len(notZones) == 0 {
			continue // the same as the all-types term
		}
		var exprs []corev1.NodeSelectorRequirement
		if len(notTypes) > 0 {
			exprs = append(exprs, corev1.NodeSelectorRequirement{Key: LabelInstanceType, Operator: corev1.NodeSelectorOpNotIn, Values: notTypes})
		}
		if len(notZones) > 0 {
			slices.Sort(notZones)
			exprs = append(exprs, corev1.NodeSelectorRequirement{Key: LabelZone, Operator: corev1.NodeSelectorOpNotIn, Values: slices.Compact(notZones)})
		}
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: exprs})
	}
	return terms
}
