package dispatcher

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	karpv1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	provisioning "sigs.k8s.io/karpenter/pkg/controllers/provisioning/scheduling"
	"sigs.k8s.io/karpenter/pkg/scheduling"
	"sigs.k8s.io/yaml"

	"github.com/jobfleet/jobfleet/dispatcher/interruption"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/jobtype"
)

func init() {
	// Karpenter's AWS provider registers its node labels as well known when
	// it starts (karpenter-provider-aws pkg/apis/v1/labels.go); the core
	// module alone does not know them. These are the ones jobfleet's pods
	// and NodePools use.
	karpv1.WellKnownLabels.Insert(LabelGPUName, labelInstanceFamily)
}

// placementRegistry has a pool of each shape: split and multi-arch, GPU,
// and on-demand arm64 only.
const placementRegistry = `
pools:
  - name: cpu
    archs: [amd64, arm64]
    spotPercent: 60
    instanceFamilies: [m7i, m7g]
    limits: {cpu: "1000", memory: 4000Gi}
    sizes: [1Gi, 4Gi, 16Gi]
  - name: gpu
    gpu: true
    ami: al2023@v20251117
    sizes: [16Gi, 64Gi]
    limits: {nvidia.com/gpu: "16"}
  - name: arm
    arch: arm64
    capacityTypes: [on-demand]
    sizes: [2Gi, 8Gi]
types:
  - name: multi
    image: i
    command: [c]
    pool: cpu
    archs: [amd64, arm64]
  - name: plain
    image: i
    command: [c]
    pool: cpu
  - name: spotty
    image: i
    command: [c]
    pool: cpu
    spot: spot
    archs: [arm64]
  - name: steady
    image: i
    command: [c]
    pool: cpu
    spot: on-demand
  - name: lib
    image: i
    command: [c]
    pool: cpu
    mode: library
  - name: train
    image: i
    command: [c]
    pool: gpu
    gpu: {count: 1, kind: a10g}
    doNotDisrupt: true
    maxRuntime: 3d
  - name: report
    image: i
    command: [c]
    pool: arm
    spot: on-demand
`

// emittable are every class the dispatcher can emit for a type: each size of
// its pool within its bounds, each capacity its spot policy and pool allow
// (on-demand too after interruptions), first attempts and reruns that
// avoid interrupted capacity.
func emittable(typ *jobtype.Type, pool *jobtype.Pool) []Class {
	var capacities []Capacity
	if typ.Spot == jobtype.SpotPreferred {
		capacities = append(capacities, CapacityAny)
	}
	if typ.Spot != jobtype.OnDemandOnly && pool.AllowsCapacity(string(CapacitySpot)) {
		capacities = append(capacities, CapacitySpot)
	}
	if pool.AllowsCapacity(string(CapacityOnDemand)) {
		capacities = append(capacities, CapacityOnDemand)
	}
	var out []Class
	for _, size := range pool.Sizes {
		for _, c := range capacities {
			for _, avoid := range []bool{false, true} {
				out = append(out, Class{Type: typ.Name, Pool: pool.Name, Size: size, Capacity: c, AvoidInterrupted: avoid && c != CapacityOnDemand})
			}
		}
	}
	return out
}

// TestEveryClassSchedulesOnItsNodePools renders the NodePools of a registry
// and, for every class the dispatcher can emit from it, asks Karpenter's own
// scheduling code (the NodeClaim template its provisioner builds from a
// NodePool, its requirements' compatibility and its taints) which
// NodePools could launch a node for the class's pod: at least one, only
// its own pool's, and, for a split pool's pods that let Karpenter choose,
// both the spot and the on-demand NodePool, or the split cannot happen.
func TestEveryClassSchedulesOnItsNodePools(t *testing.T) {
	t.Parallel()
	reg, err := jobtype.Parse("placement.yaml", []byte(placementRegistry))
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := RenderNodePools(reg, NodeClass{Cluster: "prod", Role: "KarpenterNodeRole-prod"})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := Template{Namespace: "jobs", WorkerImage: "jobfleet:test", Region: "us-east-2",
		Avoid: func() []interruption.Pair {
			return []interruption.Pair{{InstanceType: "m7i.large", Zone: "us-east-2a"}, {InstanceType: "g5.xlarge", Zone: "us-east-2b"}}
		}}
	checked := 0
	for _, typ := range reg.Types() {
		pool, _ := reg.Pool(typ.Pool)
		for _, c := range emittable(typ, pool) {
			sj := tmpl.ScaledJob(c, typ, pool, "https://sqs/q")
			pod := &corev1.Pod{Spec: sj.Spec.JobTargetRef.Template.Spec}
			pod.Labels = sj.Spec.JobTargetRef.Template.Labels
			var fits []string
			for _, np := range rendered.NodePools {
				if err := karpenterFits(np, pod); err == nil {
					fits = append(fits, np.Name)
				}
			}
			var want []string
			switch {
			case pool.SpotPercent == 0:
				want = []string{pool.NodePool}
			case c.Capacity == CapacityAny:
				want = []string{pool.NodePool + "-on-demand", pool.NodePool + "-spot"}
			default:
				want = []string{pool.NodePool + "-" + string(c.Capacity)}
			}
			slices.Sort(fits)
			if !slices.Equal(fits, want) {
				t.Errorf("class %s: its pod fits NodePools %v, want %v", c, fits, want)
			}
			// Karpenter may launch every architecture the type's image has.
			if got := scheduling.NewPodRequirements(pod).Get(corev1.LabelArchStable).Values(); !slices.Equal(sorted(got), typ.Archs) {
				t.Errorf("class %s: Karpenter may launch %v, want the type's %v", c, got, typ.Archs)
			}
			if pool.SpotPercent > 0 && c.Capacity == CapacityAny && len(pod.Spec.TopologySpreadConstraints) != 1 {
				t.Errorf("class %s: a split pool's pod without its capacity spread: %+v", c, pod.Spec.TopologySpreadConstraints)
			}
			checked++
		}
	}
	if checked < 50 {
		t.Fatalf("checked %d classes; the registry should give more", checked)
	}
}

// karpenterFits is Karpenter's provisioner's check of a pod against a
// NodePool: the NodeClaim template's requirements (the NodePool's, its
// template labels and its name) compatible with the pod's, and its taints
// tolerated.
func karpenterFits(np *karpv1.NodePool, pod *corev1.Pod) error {
	nct := provisioning.NewNodeClaimTemplate(np)
	if err := nct.Requirements.Compatible(scheduling.NewPodRequirements(pod), scheduling.AllowUndefinedWellKnownLabels); err != nil {
		return err
	}
	return scheduling.Taints(nct.Spec.Taints).Tolerates(pod)
}

// TestKarpenterFitsCanFail: the check above rejects a pod whose placement
// no NodePool provides, so its passing means something.
func TestKarpenterFitsCanFail(t *testing.T) {
	t.Parallel()
	reg, err := jobtype.Parse("placement.yaml", []byte(placementRegistry))
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := RenderNodePools(reg, NodeClass{KWOK: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]corev1.PodSpec{
		"an arch no pool has":       {NodeSelector: map[string]string{LabelNodePool: "jobfleet-arm", LabelArch: "amd64"}},
		"a GPU pod not tolerated":   {NodeSelector: map[string]string{LabelNodePool: "jobfleet-gpu"}},
		"spot on an on-demand pool": {NodeSelector: map[string]string{LabelNodePool: "jobfleet-arm", LabelCapacityType: "spot"}},
		"a pool label not set":      {NodeSelector: map[string]string{LabelPool: "gpu"}},
	}
	for name, spec := range cases {
		for _, np := range rendered.NodePools {
			if err := karpenterFits(np, &corev1.Pod{Spec: spec}); err == nil {
				t.Errorf("%s: fits NodePool %s", name, np.Name)
			}
		}
	}
}

// TestRenderedNodePools checks what a platform engineer reads in the
// rendered YAML: the split's two NodePools and their share of the spread
// values and limits, the GPU pool's taint, pinned AMI, root volume, drift
// budget and expiry, and WhenEmpty consolidation everywhere.
func TestRenderedNodePools(t *testing.T) {
	t.Parallel()
	reg, err := jobtype.Parse("placement.yaml", []byte(placementRegistry))
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := RenderNodePools(reg, NodeClass{Cluster: "prod", Role: "KarpenterNodeRole-prod"})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*karpv1.NodePool{}
	for _, np := range rendered.NodePools {
		byName[np.Name] = np
		if np.Spec.Disruption.ConsolidationPolicy != karpv1.ConsolidationPolicyWhenEmpty {
			t.Errorf("%s: consolidation %s, want WhenEmpty", np.Name, np.Spec.Disruption.ConsolidationPolicy)
		}
	}
	if len(byName) != 4 {
		t.Fatalf("NodePools %v, want jobfleet-cpu-spot, jobfleet-cpu-on-demand, jobfleet-gpu, jobfleet-arm", slices.Collect(maps.Keys(byName)))
	}
	values := func(np *karpv1.NodePool, key string) []string {
		for _, r := range np.Spec.Template.Spec.Requirements {
			if r.Key == key {
				return r.Values
			}
		}
		return nil
	}
	spot, od := byName["jobfleet-cpu-spot"], byName["jobfleet-cpu-on-demand"]
	if got := values(spot, jobtype.CapacitySpreadLabel); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("spot spread values %v, want 1 2 3", got)
	}
	if got := values(od, jobtype.CapacitySpreadLabel); !slices.Equal(got, []string{"4", "5"}) {
		t.Errorf("on-demand spread values %v, want 4 5", got)
	}
	if got := values(spot, karpv1.CapacityTypeLabelKey); !slices.Equal(got, []string{"spot"}) {
		t.Errorf("spot NodePool capacity types %v", got)
	}
	if got := values(od, corev1.LabelArchStable); !slices.Equal(got, []string{"amd64", "arm64"}) {
		t.Errorf("cpu archs %v, want both", got)
	}
	if cpu := spot.Spec.Limits[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("600")) != 0 {
		t.Errorf("the spot NodePool's cpu limit = %s, want 60%% of 1000", cpu.String())
	}
	if mem := od.Spec.Limits[corev1.ResourceMemory]; mem.Cmp(resource.MustParse("1600Gi")) != 0 {
		t.Errorf("the on-demand NodePool's memory limit = %s, want 40%% of 4000Gi", mem.String())
	}
	gpu := byName["jobfleet-gpu"]
	if len(gpu.Spec.Template.Spec.Taints) != 1 || gpu.Spec.Template.Spec.Taints[0].Key != "nvidia.com/gpu" {
		t.Errorf("gpu taints %+v", gpu.Spec.Template.Spec.Taints)
	}
	// Karpenter evicts the pods of a drifted node that may be disrupted:
	// no pool lets drift replace a node under a running job.
	for name, np := range byName {
		drift := false
		for _, b := range np.Spec.Disruption.Budgets {
			drift = drift || (b.Nodes == "0" && slices.Equal(b.Reasons, []karpv1.DisruptionReason{karpv1.DisruptionReasonDrifted}))
		}
		if !drift {
			t.Errorf("%s budgets %+v: none stops drift", name, np.Spec.Disruption.Budgets)
		}
	}
	train, _ := reg.Type("train")
	longest := train.MaxRuntime + train.Checkpoint.GracePeriod()
	if d := gpu.Spec.Template.Spec.ExpireAfter.Duration; d == nil || *d < longest {
		t.Errorf("gpu expireAfter %v, shorter than the longest job's attempt %v", d, longest)
	}
	if tgp := gpu.Spec.Template.Spec.TerminationGracePeriod; tgp == nil || tgp.Duration < longest {
		t.Errorf("gpu terminationGracePeriod %v, shorter than the longest attempt %v", tgp, longest)
	}

	var out bytes.Buffer
	if err := rendered.WriteYAML(&out); err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(out.String(), "\n---\n")
	var gpuClass map[string]any
	for _, doc := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if m["kind"] == "EC2NodeClass" && fmt.Sprint(m["metadata"].(map[string]any)["name"]) == "jobfleet-gpu" {
			gpuClass = m["spec"].(map[string]any)
		}
		if strings.Contains(doc, "status:") || strings.Contains(doc, "creationTimestamp") {
			t.Errorf("rendered object carries status or a creation time:\n%s", doc)
		}
	}
	if gpuClass == nil {
		t.Fatalf("no EC2NodeClass jobfleet-gpu in:\n%s", out.String())
	}
	if got := fmt.Sprint(gpuClass["amiSelectorTerms"]); got != "[map[alias:al2023@v20251117]]" {
		t.Errorf("gpu AMI terms %s", got)
	}
	ebs := gpuClass["blockDeviceMappings"].([]any)[0].(map[string]any)["ebs"].(map[string]any)
	if ebs["volumeSize"] != "200Gi" || ebs["throughput"] != float64(1000) || ebs["encrypted"] != true {
		t.Errorf("gpu root volume %v", ebs)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestRenderedNodePoolsAreValid: the API server, with Karpenter's and the
// AWS provider's CRDs and their validation rules, accepts every rendered
// object (a server-side dry run), for EC2 and for KWOK node classes.
func TestRenderedNodePoolsAreValid(t *testing.T) {
	t.Parallel()
	kube := testenv.StartKube(t)
	reg, err := jobtype.Parse("placement.yaml", []byte(placementRegistry))
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range []NodeClass{{Cluster: "prod", Role: "KarpenterNodeRole-prod"}, {KWOK: true}} {
		rendered, err := RenderNodePools(reg, nc)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := rendered.Objects()
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			gvr := schema.GroupVersionResource{Group: obj.GroupVersionKind().Group, Version: obj.GroupVersionKind().Version, Resource: strings.ToLower(obj.GetKind()) + "es"}
			if obj.GetKind() == "NodePool" {
				gvr.Resource = "nodepools"
			}
			if _, err := kube.Dynamic.Resource(gvr).Create(t.Context(), obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}); err != nil {
				t.Errorf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
		}
	}
}
