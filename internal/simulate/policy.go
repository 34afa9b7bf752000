package simulate

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/internal/units"
	"github.com/jobfleet/jobfleet/jobtype"
)

// Duration is a duration in a policy file: 90s, 10m, 7d.
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as 90s, 10m or 7d")
	}
	v, err := units.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as Go does.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Seconds is the duration in seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// Bytes is a memory size in a policy file: 4Gi, 512Mi.
type Bytes float64

// UnmarshalJSON reads a memory size string or a number of bytes.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		var n float64
		if err := json.Unmarshal(data, &n); err != nil || n < 0 {
			return fmt.Errorf("a memory size is a string such as 4Gi or a number of bytes")
		}
		*b = Bytes(n)
		return nil
	}
	v, err := units.ParseBytes(s)
	if err != nil {
		return err
	}
	*b = Bytes(v)
	return nil
}

// Policy is one way of running the trace's jobs.
type Policy struct {
	Name string `json:"name"`
	// Platform is fargate or ec2 (Karpenter nodes).
	Platform      string        `json:"platform"`
	Sizing        Sizing        `json:"sizing"`
	OOM           OOM           `json:"oom"`
	Capacity      Capacity      `json:"capacity"`
	Interruptions Interruptions `json:"interruptions"`
	Checkpoint    Checkpoint    `json:"checkpoint"`
	EC2           EC2           `json:"ec2"`
	Fargate       FargatePolicy `json:"fargate"`
	// CPU is the cores a job without a CPU column asks for.
	CPU float64 `json:"cpu"`
}

// Sizing methods.
const (
	SizingRequested    = "requested"
	SizingFixed        = "fixed"
	SizingTypeQuantile = "type-quantile"
	SizingTypeMax      = "type-max"
	SizingPredictor    = "predictor"
)

// Sizing is how much memory each job is given.
type Sizing struct {
	// Method is requested (what the job asked for; Memory for jobs that
	// asked for nothing), fixed (Memory), type-quantile (the Quantile of
	// the job type's peaks in the last Window), type-max (the type's
	// largest peak in the last Window: what a user who sizes for the worst
	// run they saw asks for) or predictor (jobfleet's predictor trained on
	// the last Window). The learning methods see only jobs that ended
	// before each retraining, every RetrainEvery.
	Method       string   `json:"method"`
	Memory       Bytes    `json:"memory"`
	Quantile     float64  `json:"quantile"`
	Buffer       float64  `json:"buffer"`
	RetrainEvery Duration `json:"retrainEvery"`
	Window       Duration `json:"window"`
	// OnlineRate is the dispatcher's raise after misses, for the
	// predictor: between retrainings, a group's sizes rise by OnlineRate*q
	// in log space for every job of it that the simulation sees
	// OOM-killed, and fall back by OnlineRate*(1-q) for every one that
	// fit (online.Raiser), each as the dispatcher would hear of it: a job
	// that fit when it ends, one killed when it is killed; half of it
	// carries into each retrained model. 0 (or absent) is
	// online.DefaultRate; negative sizes by the model alone.
	OnlineRate float64 `json:"onlineRate"`
	// Ladder rounds sizes up to jobfleet's default size ladder.
	Ladder bool `json:"ladder"`
	// Minimum is the least a job is given.
	Minimum *Bytes `json:"minimum"`
}

// learns reports whether the method learns from past jobs (walking
// forward, with a warm-up).
func (s Sizing) learns() bool {
	return s.Method == SizingTypeQuantile || s.Method == SizingTypeMax || s.Method == SizingPredictor
}

// OOM is what happens when a job needs more memory than it was given.
type OOM struct {
	// RerunFactor multiplies the allocation of an OOM-killed attempt.
	RerunFactor float64 `json:"rerunFactor"`
	// MaxReruns after which the job fails.
	MaxReruns *int `json:"maxReruns"`
	// KilledAt is the share of its runtime an attempt runs before it is
	// killed.
	KilledAt float64 `json:"killedAt"`
	// CensoredGrowth is what a censored job (only ever OOM-killed in the
	// trace) is assumed to need, times its largest allocation.
	CensoredGrowth float64 `json:"censoredGrowth"`
}

// Capacity is the spot and on-demand mix.
type Capacity struct {
	// SpotShare of jobs run on spot capacity.
	SpotShare float64 `json:"spotShare"`
	// OnDemandAfter moves a job to on-demand after this many
	// interruptions; 0 never does.
	OnDemandAfter *int `json:"onDemandAfter"`
}

// Interruptions of spot instances.
type Interruptions struct {
	// Model is advisor (each type's Advisor band, its upper edge), band
	// (Band for every type), rate (PerHour for every type) or none.
	Model   string  `json:"model"`
	Band    string  `json:"band"`
	PerHour float64 `json:"perHour"`
}

// Checkpoint is how jobs save their progress.
type Checkpoint struct {
	// Interval between checkpoints; 0: jobs do not checkpoint.
	Interval Duration `json:"interval"`
	// Cost is the time a job spends on each checkpoint, Restore the time to
	// restore one on a new node.
	Cost    Duration `json:"cost"`
	Restore Duration `json:"restore"`
	// CostByType overrides Cost for some job types.
	CostByType map[string]Duration `json:"costByType"`
	// OnNotice is the probability that a checkpoint taken on the two-minute
	// interruption notice completes (only when Cost fits in the notice).
	// Default 1 for jobs that checkpoint (Interval above 0), else 0; set it
	// with Interval 0 for jobs that checkpoint only when told to stop.
	OnNotice *float64 `json:"onNotice"`
}

// EC2 is how Karpenter places pods on EC2 nodes.
type EC2 struct {
	// Categories and Families limit the instance types (Categories for
	// CPU jobs; GPU jobs use GPUCategories); MinGeneration their generation.
	Categories    []string `json:"categories"`
	GPUCategories []string `json:"gpuCategories"`
	Families      []string `json:"families"`
	MinGeneration int      `json:"minGeneration"`
	Arch          string   `json:"arch"`
	// Packing is binpack (pods share nodes, Karpenter picks the cheapest
	// type for the pending batch) or one-per-node (the worst case).
	Packing string `json:"packing"`
	// NodeLaunch is from launch to a ready node; ImagePull the first pod's
	// image pull on a node; IdleTimeout how long an empty node lives
	// (Karpenter's consolidateAfter); BatchWindow how long Karpenter
	// gathers pending pods before launching.
	NodeLaunch  *Duration `json:"nodeLaunch"`
	ImagePull   *Duration `json:"imagePull"`
	IdleTimeout *Duration `json:"idleTimeout"`
	BatchWindow *Duration `json:"batchWindow"`
}

// FargatePolicy is how EKS Fargate runs pods.
type FargatePolicy struct {
	// Startup is from the pod's creation to its container starting (billed
	// from the image pull).
	Startup *Duration `json:"startup"`
}

// Platforms and packings.
const (
	PlatformFargate = "fargate"
	PlatformEC2     = "ec2"
	PackBin         = "binpack"
	PackOnePerNode  = "one-per-node"
)

// bandEdges are the Spot Instance Advisor's band upper edges, in percent
// of instances interrupted in a month, as its feed gives them.
var bandEdges = map[string]float64{"<5%": 5, "5-10%": 11, "10-15%": 16, "15-20%": 22, ">20%": 100}

// MaxSeeds bounds the replays per policy.
const MaxSeeds = 200

// File is a policy file: the policies compared and how.
type File struct {
	// Baseline names the policy the others are compared with (default the
	// first).
	Baseline string `json:"baseline"`
	// Seeds is how many times each policy is replayed with different
	// random draws (spot assignment, interruptions).
	Seeds    int      `json:"seeds"`
	Policies []Policy `json:"policies"`
}

// LoadPolicies reads and checks a policy file.
func LoadPolicies(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := ParsePolicies(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// ParsePolicies reads a policy file's YAML, fills defaults and checks it.
// Unknown fields are errors.
func ParsePolicies(data []byte) (*File, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		if located := locateValueError(data); located != nil {
			return nil, located
		}
		return nil, err
	}
	if len(f.Policies) == 0 {
		return nil, errors.New("policies: none")
	}
	if f.Seeds == 0 {
		f.Seeds = 10
	}
	if f.Seeds < 1 || f.Seeds > MaxSeeds {
		return nil, fmt.Errorf("seeds: %d is not between 1 and %d", f.Seeds, MaxSeeds)
	}
	names := map[string]bool{}
	var errs []error
	for i := range f.Policies {
		p := &f.Policies[i]
		if err := p.complete(); err != nil {
			errs = append(errs, fmt.Errorf("policies[%d] (%s): %w", i, p.Name, err))
		}
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("policies[%d]: name %q is used twice", i, p.Name))
		}
		names[p.Name] = true
	}
	if f.Baseline == "" {
		f.Baseline = f.Policies[0].Name
	} else if !names[f.Baseline] {
		errs = append(errs, fmt.Errorf("baseline: no policy is named %q", f.Baseline))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &f, nil
}

// valueFields are the policy fields holding durations and memory sizes,
// whose decoding errors do not say where they are.
var valueFields = []struct {
	path  []string
	bytes bool
}{
	{[]string{"sizing", "memory"}, true}, {[]string{"sizing", "minimum"}, true},
	{[]string{"sizing", "retrainEvery"}, false}, {[]string{"sizing", "window"}, false},
	{[]string{"checkpoint", "interval"}, false}, {[]string{"checkpoint", "cost"}, false}, {[]string{"checkpoint", "restore"}, false},
	{[]string{"ec2", "nodeLaunch"}, false}, {[]string{"ec2", "imagePull"}, false}, {[]string{"ec2", "idleTimeout"}, false}, {[]string{"ec2", "batchWindow"}, false},
	{[]string{"fargate", "startup"}, false},
}

// locateValueError finds the duration or memory size that failed to
// decode and names its policy and field.
func locateValueError(data []byte) error {
	var doc struct {
		Policies []map[string]any `json:"policies"`
	}
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	for i, p := range doc.Policies {
		name, _ := p["name"].(string)
		check := func(field string, v any, isBytes bool) error {
			raw, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if isBytes {
				var b Bytes
				err = b.UnmarshalJSON(raw)
			} else {
				var d Duration
				err = d.UnmarshalJSON(raw)
			}
			if err != nil {
				return fmt.Errorf("policies[%d] (%s): %s: %w", i, name, field, err)
			}
			return nil
		}
		for _, f := range valueFields {
			section, _ := p[f.path[0]].(map[string]any)
			if v, ok := section[f.path[1]]; ok {
				if err := check(strings.Join(f.path, "."), v, f.bytes); err != nil {
					return err
				}
			}
		}
		ck, _ := p["checkpoint"].(map[string]any)
		if byType, ok := ck["costByType"].(map[string]any); ok {
			for typ, v := range byType {
				if err := check("checkpoint.costByType."+typ, v, false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// complete fills defaults and checks the policy; errors name the field.
func (p *Policy) complete() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if p.Name == "" {
		bad("name", "required")
	}
	if p.CPU == 0 {
		p.CPU = 1
	}
	if !(p.CPU > 0) || p.CPU > 192 {
		bad("cpu", "%v is not between 0 and 192 cores", p.CPU)
	}
	switch p.Platform {
	case PlatformFargate, PlatformEC2:
	case "":
		bad("platform", "required: fargate or ec2")
	default:
		bad("platform", "%q is not fargate or ec2", p.Platform)
	}

	s := &p.Sizing
	if s.Buffer == 0 {
		s.Buffer = 1
	}
	if s.Quantile == 0 {
		s.Quantile = 0.9
	}
	if s.RetrainEvery == 0 {
		s.RetrainEvery = Duration(7 * 24 * time.Hour)
	}
	if s.Window == 0 {
		s.Window = Duration(30 * 24 * time.Hour)
	}
	if s.Minimum == nil {
		b := Bytes(256 << 20)
		s.Minimum = &b
	}
	switch s.Method {
	case SizingRequested, SizingFixed:
		if s.Memory <= 0 {
			bad("sizing.memory", "required with method %s (the size of jobs that asked for none, or of every job)", s.Method)
		}
	case SizingTypeQuantile, SizingTypeMax, SizingPredictor:
	case "":
		bad("sizing.method", "required: requested, fixed, type-quantile, type-max or predictor")
	default:
		bad("sizing.method", "%q is not requested, fixed, type-quantile, type-max or predictor", s.Method)
	}
	if !(s.Quantile > 0 && s.Quantile < 1) {
		bad("sizing.quantile", "%v is not between 0 and 1", s.Quantile)
	}
	if s.OnlineRate == 0 {
		s.OnlineRate = online.DefaultRate
	}
	if !(s.OnlineRate <= 1) {
		bad("sizing.onlineRate", "%v is not a rate of at most 1 (negative sizes by the model alone)", s.OnlineRate)
	}
	if !(s.Buffer >= 1 && s.Buffer <= 10) {
		bad("sizing.buffer", "%v is not between 1 and 10", s.Buffer)
	}
	if s.Window < s.RetrainEvery {
		bad("sizing.window", "%v is shorter than retrainEvery %v", time.Duration(s.Window), time.Duration(s.RetrainEvery))
	}
	if time.Duration(s.RetrainEvery) < time.Hour {
		bad("sizing.retrainEvery", "%v is under an hour", time.Duration(s.RetrainEvery))
	}

	o := &p.OOM
	if o.RerunFactor == 0 {
		o.RerunFactor = 1.5
	}
	if o.MaxReruns == nil {
		n := contract.DefaultMaxAttempts - 1
		o.MaxReruns = &n
	}
	if o.KilledAt == 0 {
		o.KilledAt = 0.5
	}
	if o.CensoredGrowth == 0 {
		o.CensoredGrowth = o.RerunFactor
	}
	if !(o.RerunFactor > 1 && o.RerunFactor <= 10) {
		bad("oom.rerunFactor", "%v is not above 1 (and at most 10)", o.RerunFactor)
	}
	if *o.MaxReruns < 0 || *o.MaxReruns > 20 {
		bad("oom.maxReruns", "%d is not between 0 and 20", *o.MaxReruns)
	}
	if !(o.KilledAt > 0 && o.KilledAt <= 1) {
		bad("oom.killedAt", "%v is not in (0, 1]", o.KilledAt)
	}
	if !(o.CensoredGrowth > 1) {
		bad("oom.censoredGrowth", "%v is not above 1: a censored peak is a lower bound", o.CensoredGrowth)
	}

	c := &p.Capacity
	if c.OnDemandAfter == nil {
		n := 2 // the dispatcher's default
		c.OnDemandAfter = &n
	}
	if !(c.SpotShare >= 0 && c.SpotShare <= 1) {
		bad("capacity.spotShare", "%v is not between 0 and 1", c.SpotShare)
	}
	if *c.OnDemandAfter < 0 {
		bad("capacity.onDemandAfter", "%d is negative", *c.OnDemandAfter)
	}
	if p.Platform == PlatformFargate && c.SpotShare > 0 {
		bad("capacity.spotShare", "EKS Fargate has no spot capacity: 0 with platform fargate")
	}

	in := &p.Interruptions
	if in.Model == "" {
		in.Model = "advisor"
	}
	switch in.Model {
	case "advisor", "none":
	case "band":
		if _, ok := bandEdges[in.Band]; !ok {
			bad("interruptions.band", "%q is not one of <5%%, 5-10%%, 10-15%%, 15-20%%, >20%%", in.Band)
		}
	case "rate":
		if !(in.PerHour > 0 && in.PerHour < 10) {
			bad("interruptions.perHour", "%v is not a rate per instance-hour in (0, 10)", in.PerHour)
		}
	default:
		bad("interruptions.model", "%q is not advisor, band, rate or none", in.Model)
	}

	ck := &p.Checkpoint
	if ck.OnNotice == nil {
		v := 0.0
		if ck.Interval > 0 {
			v = 1
		}
		ck.OnNotice = &v
	}
	if !(*ck.OnNotice >= 0 && *ck.OnNotice <= 1) {
		bad("checkpoint.onNotice", "%v is not a probability", *ck.OnNotice)
	}
	if ck.Interval > 0 && ck.Interval < Duration(time.Second) {
		bad("checkpoint.interval", "%v is under a second", time.Duration(ck.Interval))
	}

	e := &p.EC2
	if len(e.Categories) == 0 && len(e.Families) == 0 {
		e.Categories = []string{"c", "m", "r"}
	}
	if len(e.GPUCategories) == 0 {
		e.GPUCategories = []string{"g"}
	}
	if e.MinGeneration == 0 {
		e.MinGeneration = 5
	}
	if e.Arch == "" {
		e.Arch = jobtype.DefaultArch
	}
	if e.Packing == "" {
		e.Packing = PackBin
	}
	if e.NodeLaunch == nil {
		d := Duration(60 * time.Second)
		e.NodeLaunch = &d
	}
	if e.ImagePull == nil {
		d := Duration(20 * time.Second)
		e.ImagePull = &d
	}
	if e.IdleTimeout == nil {
		d := Duration(jobtype.DefaultConsolidateAfter)
		e.IdleTimeout = &d
	}
	if e.BatchWindow == nil {
		d := Duration(10 * time.Second)
		e.BatchWindow = &d
	}
	if e.Packing != PackBin && e.Packing != PackOnePerNode {
		bad("ec2.packing", "%q is not binpack or one-per-node", e.Packing)
	}
	if e.Arch != "amd64" && e.Arch != "arm64" {
		bad("ec2.arch", "%q is not amd64 or arm64", e.Arch)
	}
	if p.Fargate.Startup == nil {
		d := Duration(60 * time.Second)
		p.Fargate.Startup = &d
	}
	return errors.Join(errs...)
}

// Assumption is one named parameter of a policy, with where its value
// comes from.
type Assumption struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// Assumptions lists the policy's parameters and their sources.
func (p *Policy) Assumptions() []Assumption {
	d := func(v Duration) string { return time.Duration(v).String() }
	gib := func(b Bytes) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }
	a := []Assumption{
		{"platform", p.Platform, "policy"},
		{"sizing.method", p.Sizing.Method, "policy"},
	}
	switch p.Sizing.Method {
	case SizingRequested:
		a = append(a, Assumption{"sizing.memory", gib(p.Sizing.Memory), "policy: for jobs the trace records no request for"})
	case SizingFixed:
		a = append(a, Assumption{"sizing.memory", gib(p.Sizing.Memory), "policy"})
	case SizingTypeMax:
		a = append(a,
			Assumption{"sizing.window", d(p.Sizing.Window), "policy (walk forward: jobs that ended before each retraining)"},
			Assumption{"sizing.retrainEvery", d(p.Sizing.RetrainEvery), "policy"})
	default:
		a = append(a,
			Assumption{"sizing.quantile", fmt.Sprint(p.Sizing.Quantile), "policy"},
			Assumption{"sizing.window", d(p.Sizing.Window), "policy (walk forward: jobs that ended before each retraining)"},
			Assumption{"sizing.retrainEvery", d(p.Sizing.RetrainEvery), "policy"})
		if p.Sizing.Method == SizingPredictor {
			rate := fmt.Sprint(p.Sizing.OnlineRate)
			if p.Sizing.OnlineRate < 0 {
				rate = "none: the model alone"
			}
			a = append(a, Assumption{"sizing.onlineRate", rate, "the dispatcher's raise after misses, from the jobs that ended or were killed before each is sized"})
		}
	}
	a = append(a,
		Assumption{"sizing.buffer", fmt.Sprint(p.Sizing.Buffer), "policy"},
		Assumption{"sizing.minimum", gib(*p.Sizing.Minimum), "jobfleet's smallest size (256Mi)"},
		Assumption{"sizing.coldStart", coldStartText(p), "what a learning method gives jobs submitted before any job ended"},
		Assumption{"sizing.ladder", fmt.Sprint(p.Sizing.Ladder), "jobfleet's default size ladder (jobtype.DefaultSizes) when true"},
		Assumption{"cpu", fmt.Sprint(p.CPU), "cores of jobs the trace gives none; jobfleet's default request is 1"},
		Assumption{"oom.rerunFactor", fmt.Sprint(p.OOM.RerunFactor), "jobfleet's dispatcher reruns OOM-killed attempts with 1.5x"},
		Assumption{"oom.maxReruns", fmt.Sprint(*p.OOM.MaxReruns), "jobfleet's default of 3 attempts"},
		Assumption{"oom.killedAt", fmt.Sprint(p.OOM.KilledAt), "assumed: an OOM-killed attempt ran this share of its runtime"},
		Assumption{"oom.censoredGrowth", fmt.Sprint(p.OOM.CensoredGrowth), "assumed: a job only ever OOM-killed needs this times its largest allocation"},
		Assumption{"capacity.spotShare", fmt.Sprint(p.Capacity.SpotShare), "policy"},
		Assumption{"capacity.onDemandAfter", fmt.Sprint(*p.Capacity.OnDemandAfter), "jobfleet's dispatcher moves a job to on-demand after 2 interruptions"},
	)
	switch p.Interruptions.Model {
	case "advisor":
		a = append(a, Assumption{"interruptions", "each type's Advisor band, upper edge", "Spot Instance Advisor (costdata): monthly share of instances interrupted, / 730 h, Poisson per instance"})
	case "band":
		a = append(a, Assumption{"interruptions", fmt.Sprintf("band %s = %.0f%%/month", p.Interruptions.Band, bandEdges[p.Interruptions.Band]), "Spot Instance Advisor band upper edge, / 730 h, Poisson per instance"})
	case "rate":
		a = append(a, Assumption{"interruptions", fmt.Sprintf("%v per instance-hour", p.Interruptions.PerHour), "policy, Poisson per instance"})
	default:
		a = append(a, Assumption{"interruptions", "none", "policy"})
	}
	ckSource := "policy"
	if p.Checkpoint.Interval == 0 {
		ckSource = "policy: jobs do not checkpoint (an interruption loses the attempt's work)"
	}
	a = append(a,
		Assumption{"checkpoint.interval", d(p.Checkpoint.Interval), ckSource},
		Assumption{"checkpoint.cost", d(p.Checkpoint.Cost), "policy: time a job spends per checkpoint"},
		Assumption{"checkpoint.restore", d(p.Checkpoint.Restore), "policy: time to restore on a new node"},
		Assumption{"checkpoint.onNotice", fmt.Sprint(*p.Checkpoint.OnNotice), "probability the checkpoint on the notice completes (when its cost fits in the notice)"},
		Assumption{"interruption notice", "2m0s", "EC2's spot interruption notice; no pod is placed on a node within it"},
	)
	if len(p.Checkpoint.CostByType) > 0 {
		types := make([]string, 0, len(p.Checkpoint.CostByType))
		for t, c := range p.Checkpoint.CostByType {
			types = append(types, t+"="+d(c))
		}
		slices.Sort(types)
		a = append(a, Assumption{"checkpoint.costByType", strings.Join(types, ","), "policy"})
	}
	if p.Platform == PlatformEC2 {
		sel := "categories " + strings.Join(p.EC2.Categories, ",")
		if len(p.EC2.Families) > 0 {
			sel = "families " + strings.Join(p.EC2.Families, ",")
		}
		a = append(a,
			Assumption{"ec2.instances", fmt.Sprintf("%s (GPU: %s), generation >= %d, %s", sel, strings.Join(p.EC2.GPUCategories, ","), p.EC2.MinGeneration, p.EC2.Arch), "jobfleet's CPU pools allow c, m, r; prices and shapes from costdata"},
			Assumption{"ec2.packing", p.EC2.Packing, "policy"},
			Assumption{"ec2.nodeLaunch", d(*p.EC2.NodeLaunch), "assumed: EC2 launch to a Ready node"},
			Assumption{"ec2.imagePull", d(*p.EC2.ImagePull), "assumed: first pull of the job's image on a node"},
			Assumption{"ec2.idleTimeout", d(*p.EC2.IdleTimeout), "jobfleet pools' consolidateAfter (1m)"},
			Assumption{"ec2.batchWindow", d(*p.EC2.BatchWindow), "Karpenter's batchMaxDuration (10s)"},
			Assumption{"ec2.billing", "per second, 60 s minimum, from launch to removal", "EC2 Linux on-demand and spot billing"},
		)
	} else {
		a = append(a,
			Assumption{"fargate.startup", d(*p.Fargate.Startup), "assumed: pod creation to container start, billed from the image pull"},
			Assumption{"fargate.billing", "per second, 60 s minimum, provisioned size", "costdata/fargate.json"},
			Assumption{"fargate.overhead", "256 MiB added to each pod's memory before rounding up", "costdata/fargate.json (EKS pod sizing)"},
		)
	}
	return a
}

// cost is the checkpoint cost of a job type.
func (c Checkpoint) cost(jobType string) Duration {
	if d, ok := c.CostByType[jobType]; ok {
		return d
	}
	return c.Cost
}

func coldStartText(p *Policy) string {
	if p.Sizing.Memory > 0 {
		return fmt.Sprintf("%.2f GiB", float64(p.Sizing.Memory)/(1<<30))
	}
	return "the job's request, else 4 GiB"
}

// rate is the interruption rate per instance-hour of a spot type under the
// policy.
func (in Interruptions) rate(t *Instance) float64 {
	switch in.Model {
	case "advisor":
		return t.InterruptionRate()
	case "band":
		return bandEdges[in.Band] / 100 / hoursInMonth
	case "rate":
		return in.PerHour
	}
	return 0
}

// instanceTypes are the types the policy's nodes may be for CPU or GPU
// jobs, cheapest first.
func (e *EC2) instanceTypes(c *Catalog, gpu bool) []*Instance {
	var out []*Instance
	cats := e.Categories
	if gpu {
		cats = e.GPUCategories
	}
	for _, t := range c.Instances {
		if t.Arch != e.Arch || t.Generation < e.MinGeneration || (t.GPUs > 0) != gpu {
			continue
		}
		if len(e.Families) > 0 && !gpu {
			if !slices.Contains(e.Families, t.Family) {
				continue
			}
		} else if !slices.Contains(cats, t.Category) {
			continue
		}
		out = append(out, t)
	}
	return out
}

// fargateSize is the pod size Fargate provisions for a request, ok false
// when none is large enough.
func fargateSize(f *Fargate, cpu, mem float64) (FargateSize, bool) {
	mem += f.Overhead
	for _, s := range f.Sizes {
		if s.VCPU >= cpu-1e-9 && s.Memory >= mem {
			return s, true
		}
	}
	return FargateSize{}, false
}

// ladder rounds a size up to jobfleet's default ladder; sizes above its top
// are kept.
func ladder(b float64) float64 {
	for _, s := range defaultLadder {
		if float64(s) >= b {
			return float64(s)
		}
	}
	return math.Ceil(b)
}

var defaultLadder = func() []int64 {
	out := make([]int64, len(jobtype.DefaultSizes))
	for i, s := range jobtype.DefaultSizes {
		v, err := units.ParseBytes(s)
		if err != nil {
			panic(err)
		}
		out[i] = v
	}
	return out
}()
