package jobtype

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/units"
)

// Defaults applied where the registry file leaves a setting out.
const (
	DefaultCheckpointDir      = contract.DefaultCheckpointDir
	DefaultCheckpointInterval = contract.DefaultCheckpointInterval
	DefaultStopGrace          = 30 * time.Second
	DefaultUploadGrace        = contract.DefaultUploadGrace
	DefaultMaxRuntime         = contract.DefaultMaxRuntime
	DefaultMaxAttempts        = contract.DefaultMaxAttempts
	DefaultMaxReplicas        = 100
	DefaultArch               = "amd64"
	DefaultConsolidateAfter   = time.Minute
	DefaultExpireAfter        = 30 * 24 * time.Hour
	// DefaultAMI is the EC2NodeClass AMI alias of a pool that names none.
	DefaultAMI = "al2023@latest"
	DefaultCPU = "1"
	// GPUResource is the extended resource GPU pods request.
	GPUResource = "nvidia.com/gpu"
)

// DefaultSizes is the size ladder of a pool that names none: roughly
// doubling, with intermediate steps above 8Gi where doubling wastes most.
var DefaultSizes = []string{"256Mi", "512Mi", "1Gi", "2Gi", "4Gi", "8Gi", "12Gi", "16Gi", "24Gi", "32Gi", "48Gi", "64Gi", "96Gi", "128Gi"}

// Default root volumes: GPU nodes pull multi-GB images, so theirs is large
// and fast.
var (
	DefaultRootVolume    = Volume{Size: 50 << 30, IOPS: 3000, Throughput: 125}
	DefaultGPURootVolume = Volume{Size: 200 << 30, IOPS: 10000, Throughput: 1000}
)

var amiFamilies = []string{"al2023", "al2", "bottlerocket"}

// Registry is a loaded, valid set of pools and job types.
type Registry struct {
	pools map[string]*Pool
	types map[string]*Type
	names []string
}

// Type returns the job type with the name.
func (r *Registry) Type(name string) (*Type, bool) {
	t, ok := r.types[name]
	return t, ok
}

// Pool returns the pool with the name.
func (r *Registry) Pool(name string) (*Pool, bool) {
	p, ok := r.pools[name]
	return p, ok
}

// Types returns every job type in the order the file lists them.
func (r *Registry) Types() []*Type {
	out := make([]*Type, len(r.names))
	for i, name := range r.names {
		out[i] = r.types[name]
	}
	return out
}

// LongestAttempt is the longest one attempt of the pool's job types may
// take: its maxRuntime plus its grace period.
func (r *Registry) LongestAttempt(pool string) time.Duration {
	var longest time.Duration
	for _, t := range r.types {
		if t.Pool == pool {
			longest = max(longest, t.MaxRuntime+t.Checkpoint.GracePeriod())
		}
	}
	return longest
}

// Pools returns every pool, by name.
func (r *Registry) Pools() []*Pool {
	out := make([]*Pool, 0, len(r.pools))
	for _, name := range slices.Sorted(maps.Keys(r.pools)) {
		out = append(out, r.pools[name])
	}
	return out
}

// poolName is the name a pool's node sets, if any.
func poolName(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// Problem is one thing wrong in a registry file.
type Problem struct {
	File   string
	Line   int
	Field  string
	Detail string
}

func (p Problem) String() string {
	if p.Field == "" {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Detail)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Field, p.Detail)
}

// LoadError lists every problem found in a registry file.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	noun := "problems"
	if len(lines) == 1 {
		noun = "problem"
	}
	return fmt.Sprintf("invalid job type registry (%d %s):\n  %s", len(lines), noun, strings.Join(lines, "\n  "))
}

// Load reads and validates a registry file.
func Load(path string) (*Registry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading job type registry: %w", err)
	}
	return Parse(path, data)
}

// Parse validates a registry read from file (the name is used in problems).
// A returned error is a *LoadError unless the YAML cannot be read at all.
func Parse(file string, data []byte) (*Registry, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &LoadError{Problems: []Problem{{File: file, Line: yamlErrorLine(err), Detail: err.Error()}}}
	}
	d := &decoder{file: file}
	reg := &Registry{pools: map[string]*Pool{}, types: map[string]*Type{}}
	if len(root.Content) == 0 {
		d.add(&root, "", "the file is empty; it needs pools and types")
		return nil, d.err()
	}
	var poolNodes, typeNodes []*yaml.Node
	d.mapping(root.Content[0], "", map[string]func(*yaml.Node){
		"pools": func(n *yaml.Node) { poolNodes = d.sequence(n, "pools") },
		"types": func(n *yaml.Node) { typeNodes = d.sequence(n, "types") },
	}, "pools", "types")
	for i, n := range poolNodes {
		if p := d.pool(n, fmt.Sprintf("pools[%d]", i)); p != nil {
			if _, dup := reg.pools[p.Name]; dup {
				d.add(n, fmt.Sprintf("pools[%d].name", i), "pool %q is defined twice", p.Name)
				continue
			}
			reg.pools[p.Name] = p
		}
	}
	for i, n := range typeNodes {
		path := fmt.Sprintf("types[%d]", i)
		t, lines := d.jobType(n, path)
		if _, dup := reg.types[t.Name]; dup {
			d.add(n, path+".name", "job type %q is defined twice", t.Name)
			continue
		}
		if t.Name == "" {
			d.checkType(t, reg, lines, path) // reports the rest of its problems
			continue
		}
		d.checkType(t, reg, lines, path)
		reg.types[t.Name] = t
		reg.names = append(reg.names, t.Name)
	}
	for i, n := range poolNodes {
		p := reg.pools[poolName(n)]
		if p == nil {
			continue
		}
		longest := reg.LongestAttempt(p.Name)
		switch {
		case p.ExpireAfter == 0:
			p.ExpireAfter = max(DefaultExpireAfter, 2*longest)
		case p.ExpireAfter < longest:
			d.add(n, fmt.Sprintf("pools[%d].expireAfter", i), "%v is shorter than the longest attempt of the pool's job types (%v, maxRuntime plus grace): Karpenter would expire nodes under running jobs", p.ExpireAfter, longest)
		}
	}
	if len(typeNodes) == 0 && len(d.problems) == 0 {
		d.add(root.Content[0], "types", "no job types: a registry needs at least one type, or no job can run")
	}
	if len(poolNodes) == 0 && len(d.problems) == 0 {
		d.add(root.Content[0], "pools", "no pools: every job type runs on a pool")
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return reg, nil
}

// decoder walks YAML nodes and collects problems with their lines.
type decoder struct {
	file     string
	problems []Problem
}

func (d *decoder) add(n *yaml.Node, field, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: n.Line, Field: field, Detail: fmt.Sprintf(format, args...)})
}

func (d *decoder) err() error {
	if len(d.problems) == 0 {
		return nil
	}
	return &LoadError{Problems: d.problems}
}

// mapping calls fields[key] for each key of a mapping node. Unknown keys,
// duplicate keys and missing required keys are problems.
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]func(*yaml.Node), required ...string) map[string]int {
	lines := map[string]int{}
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "must be a mapping, got %s", kindName(n))
		return lines
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		field := joinPath(path, key.Value)
		fn, ok := fields[key.Value]
		switch {
		case !ok:
			d.add(key, field, "unknown setting (known: %s)", strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
		case lines[key.Value] != 0:
			d.add(key, field, "set twice (first on line %d)", lines[key.Value])
		default:
			lines[key.Value] = key.Line
			fn(value)
		}
	}
	for _, name := range required {
		if lines[name] == 0 {
			d.add(n, joinPath(path, name), "required")
		}
	}
	return lines
}

func (d *decoder) sequence(n *yaml.Node, path string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		d.add(n, path, "must be a list, got %s", kindName(n))
		return nil
	}
	return n.Content
}

func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		d.add(n, path, "must be a single value, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) str(dst *string, path string) func(*yaml.Node) {
	return func(n *yaml.Node) {
		if v, ok := d.scalar(n, path); ok {
			*dst = v
		}
	}
}

func (d *decoder) strs(dst *[]string, path string) func(*yaml.Node) {
	return func(n *yaml.Node) {
		for i, item := range d.sequence(n, path) {
			if v, ok := d.scalar(item, fmt.Sprintf("%s[%d]", path, i)); ok {
				*dst = append(*dst, v)
			}
		}
	}
}

func (d *decoder) integer(dst *int, path string) func(*yaml.Node) {
	return func(n *yaml.Node) {
		v, ok := d.scalar(n, path)
		if !ok {
			return
		}
		i, err := strconv.Atoi(v)
		if err != nil || n.ShortTag() != "!!int" {
			d.add(n, path, "must be a whole number, got %q", v)
			return
		}
		*dst = i
	}
}

func (d *decoder) boolean(dst *bool, path string) func(*yaml.Node) {
	return func(n *yaml.Node) {
		v, ok := d.scalar(n, path)
		if !ok {
			return
		}
		b, err := strconv.ParseBool(v)
		if err != nil || n.ShortTag() != "!!bool" {
			d.add(n, path, "must be true or false, got %q", v)
			return
		}
		*dst = b
	}
}

func (d *decoder) duration(dst *time.Duration, path string) func(*yaml.Node) {
	return func(n *yaml.Node) {
		v, ok := d.scalar(n, path)
		if !ok {
			return
		}
		dur, err := units.ParseDuration(v)
		if err != nil || dur <= 0 {
			d.add(n, path, "must be a positive duration such as 90s, 5m, 12h or 7d, got %q", v)
			return
		}
		*dst = dur
	}
}

func (d *decoder) quantity(dst *resource.Quantity, path string) func(*yaml.Node) {
	return func(n *yaml.Node) {
		v, ok := d.scalar(n, path)
		if !ok {
			return
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 {
			d.add(n, path, "must be a positive Kubernetes quantity such as 512Mi or 2Gi, got %q", v)
			return
		}
		*dst = q
	}
}

func (d *decoder) quantities(dst *map[string]resource.Quantity, path string) func(*yaml.Node) {
	return func(m *yaml.Node) {
		*dst = map[string]resource.Quantity{}
		fields := map[string]func(*yaml.Node){}
		for i := 0; i+1 < len(m.Content); i += 2 {
			name := m.Content[i].Value
			fields[name] = func(v *yaml.Node) {
				var q resource.Quantity
				d.quantity(&q, path+"."+name)(v)
				(*dst)[name] = q
			}
		}
		d.mapping(m, path, fields)
	}
}

func (d *decoder) bytes(dst *int64, path string) func(*yaml.Node) {
	return func(n *yaml.Node) {
		var q resource.Quantity
		d.quantity(&q, path)(n)
		if !q.IsZero() {
			*dst = q.Value()
		}
	}
}

func (d *decoder) pool(n *yaml.Node, path string) *Pool {
	p := &Pool{}
	var sizes []string
	var arch string
	var rootSize resource.Quantity
	sizesSet := false
	lines := d.mapping(n, path, map[string]func(*yaml.Node){
		"name":             d.str(&p.Name, path+".name"),
		"nodePool":         d.str(&p.NodePool, path+".nodePool"),
		"gpu":              d.boolean(&p.GPU, path+".gpu"),
		"arch":             d.str(&arch, path+".arch"),
		"archs":            d.strs(&p.Archs, path+".archs"),
		"capacityTypes":    d.strs(&p.CapacityTypes, path+".capacityTypes"),
		"spotPercent":      d.integer(&p.SpotPercent, path+".spotPercent"),
		"sizes":            func(m *yaml.Node) { sizesSet = true; d.strs(&sizes, path+".sizes")(m) },
		"tolerations":      d.strs(&p.Tolerations, path+".tolerations"),
		"instanceTypes":    d.strs(&p.InstanceTypes, path+".instanceTypes"),
		"instanceFamilies": d.strs(&p.InstanceFamilies, path+".instanceFamilies"),
		"limits":           d.quantities(&p.Limits, path+".limits"),
		"consolidateAfter": d.duration(&p.ConsolidateAfter, path+".consolidateAfter"),
		"expireAfter":      d.duration(&p.ExpireAfter, path+".expireAfter"),
		"ami":              d.str(&p.AMI, path+".ami"),
		"rootVolume": func(m *yaml.Node) {
			d.mapping(m, path+".rootVolume", map[string]func(*yaml.Node){
				"size":       d.quantity(&rootSize, path+".rootVolume.size"),
				"iops":       d.integer(&p.RootVolume.IOPS, path+".rootVolume.iops"),
				"throughput": d.integer(&p.RootVolume.Throughput, path+".rootVolume.throughput"),
			})
		},
	}, "name")
	line := func(field string) *yaml.Node {
		if l := lines[field]; l != 0 {
			return &yaml.Node{Line: l}
		}
		return n
	}
	if p.Name != "" && !poolNamePattern(p.Name) {
		d.add(line("name"), path+".name", "%q: a pool name is 1-12 lower-case letters or digits", p.Name)
	}
	switch {
	case arch != "" && len(p.Archs) > 0:
		d.add(line("arch"), path+".arch", "set arch or archs, not both")
	case arch != "":
		p.Archs = []string{arch}
	case lines["archs"] != 0 && len(p.Archs) == 0:
		d.add(line("archs"), path+".archs", "at least one architecture (amd64, arm64)")
	case len(p.Archs) == 0:
		p.Archs = []string{DefaultArch}
	}
	archField := "archs"
	if arch != "" {
		archField = "arch"
	}
	for i, a := range p.Archs {
		if a != "amd64" && a != "arm64" {
			d.add(line(archField), path+"."+archField, "%q: amd64 or arm64", a)
		}
		if slices.Contains(p.Archs[:i], a) {
			d.add(line(archField), path+"."+archField, "%q is listed twice", a)
		}
	}
	if p.NodePool != "" && len(validation.IsDNS1123Subdomain(p.NodePool)) > 0 {
		d.add(line("nodePool"), path+".nodePool", "%q is not a valid Kubernetes object name", p.NodePool)
	}
	for _, f := range []struct {
		field  string
		values []string
	}{{"instanceTypes", p.InstanceTypes}, {"instanceFamilies", p.InstanceFamilies}} {
		if lines[f.field] != 0 && len(f.values) == 0 {
			d.add(line(f.field), path+"."+f.field, "leave it out to allow every one; an empty list allows none")
		}
		for _, v := range f.values {
			if len(validation.IsValidLabelValue(v)) > 0 || v == "" {
				d.add(line(f.field), path+"."+f.field, "%q is not a valid node label value", v)
			}
		}
	}
	for name := range p.Limits {
		if len(validation.IsQualifiedName(name)) > 0 {
			d.add(line("limits"), path+".limits", "%q is not a resource name such as cpu, memory or nvidia.com/gpu", name)
		}
	}
	if p.ConsolidateAfter == 0 {
		p.ConsolidateAfter = DefaultConsolidateAfter
	}
	if p.AMI == "" {
		p.AMI = DefaultAMI
	}
	if family, version, ok := strings.Cut(p.AMI, "@"); !ok || !slices.Contains(amiFamilies, family) || (version != "latest" && !strings.HasPrefix(version, "v")) {
		d.add(line("ami"), path+".ami", "%q: an AMI alias, family@version, such as al2023@v20251117 or bottlerocket@latest (families: %s)", p.AMI, strings.Join(amiFamilies, ", "))
	}
	p.RootVolume.Size = rootSize.Value()
	def := DefaultRootVolume
	if p.GPU {
		def = DefaultGPURootVolume
	}
	if p.RootVolume.Size == 0 {
		p.RootVolume.Size = def.Size
	}
	if p.RootVolume.IOPS == 0 {
		p.RootVolume.IOPS = max(def.IOPS, 4*p.RootVolume.Throughput)
	}
	if p.RootVolume.Throughput == 0 {
		p.RootVolume.Throughput = min(def.Throughput, p.RootVolume.IOPS/4)
	}
	switch v := p.RootVolume; {
	case v.Size < 20<<30:
		d.add(line("rootVolume"), path+".rootVolume.size", "%s: at least 20Gi (images, logs and emptyDir volumes live there)", formatBytes(v.Size))
	case v.IOPS < 3000 || v.IOPS > 16000:
		d.add(line("rootVolume"), path+".rootVolume.iops", "%d: gp3 volumes take 3000 to 16000", v.IOPS)
	case v.Throughput < 125 || v.Throughput > 1000:
		d.add(line("rootVolume"), path+".rootVolume.throughput", "%d: gp3 volumes take 125 to 1000 MiB/s", v.Throughput)
	case v.Throughput*4 > v.IOPS:
		d.add(line("rootVolume"), path+".rootVolume.throughput", "%d MiB/s needs at least %d iops (gp3 gives 0.25 MiB/s per iops)", v.Throughput, v.Throughput*4)
	}
	if p.NodePool == "" {
		p.NodePool = "jobfleet-" + p.Name
	}
	if len(p.CapacityTypes) == 0 {
		p.CapacityTypes = []string{jobfleet.CapacitySpot, jobfleet.CapacityOnDemand}
	}
	for _, c := range p.CapacityTypes {
		if c != jobfleet.CapacitySpot && c != jobfleet.CapacityOnDemand {
			d.add(line("capacityTypes"), path+".capacityTypes", "%q: spot or on-demand", c)
		}
	}
	if lines["spotPercent"] != 0 {
		switch {
		case p.SpotPercent < 5 || p.SpotPercent > 95 || p.SpotPercent%5 != 0:
			d.add(line("spotPercent"), path+".spotPercent", "%d: a multiple of 5 from 5 to 95 (the percentage of the pool's pods on spot; leave it out for no split)", p.SpotPercent)
		case !p.AllowsCapacity(jobfleet.CapacitySpot) || !p.AllowsCapacity(jobfleet.CapacityOnDemand):
			d.add(line("spotPercent"), path+".spotPercent", "a split needs capacityTypes with both spot and on-demand")
		}
	}
	if sizesSet && len(sizes) == 0 {
		d.add(line("sizes"), path+".sizes", "a pool needs at least one size (leave sizes out for the default ladder)")
	}
	if !sizesSet {
		sizes = DefaultSizes
	}
	for _, s := range sizes {
		q, err := resource.ParseQuantity(s)
		if err != nil || q.Sign() <= 0 {
			d.add(line("sizes"), path+".sizes", "%q is not a memory size such as 512Mi or 2Gi", s)
			continue
		}
		if v := q.Value(); v%(1<<20) != 0 && v%1e6 != 0 {
			d.add(line("sizes"), path+".sizes", "%q: sizes are whole MiB (512Mi, 2Gi) or MB (500M, 3G)", s)
			continue
		}
		p.Sizes = append(p.Sizes, q.Value())
	}
	if !slices.IsSorted(p.Sizes) || len(slices.Compact(slices.Clone(p.Sizes))) != len(p.Sizes) {
		d.add(line("sizes"), path+".sizes", "sizes must be listed from smallest to largest, without repeats")
		slices.Sort(p.Sizes)
		p.Sizes = slices.Compact(p.Sizes)
	}
	if len(p.Sizes) == 0 {
		p.Sizes = []int64{1 << 30} // keeps checks of the pool's types going; the problem is reported
	}
	if p.GPU && len(p.Tolerations) == 0 {
		p.Tolerations = []string{GPUResource + ":NoSchedule"}
	}
	for _, tol := range p.Tolerations {
		if _, err := ParseToleration(tol); err != nil {
			d.add(line("tolerations"), path+".tolerations", "%v", err)
		}
	}
	if p.Name == "" {
		return nil
	}
	// A pool with problems is still returned, so that the types using it are
	// checked too; the problems fail the load.
	return p
}

func (d *decoder) jobType(n *yaml.Node, path string) (*Type, map[string]int) {
	t := &Type{}
	var cpu resource.Quantity
	var spot, mode string
	var memoryLines, checkpointLines, gpuLines, predictorLines map[string]int
	var predictorFeatures []string
	memoryNode, checkpointNode, gpuNode := n, n, n
	lines := d.mapping(n, path, map[string]func(*yaml.Node){
		"name":    d.str(&t.Name, path+".name"),
		"image":   d.str(&t.Image, path+".image"),
		"command": d.strs(&t.Command, path+".command"),
		"env": func(m *yaml.Node) {
			t.Env = map[string]string{}
			fields := map[string]func(*yaml.Node){}
			for i := 0; i+1 < len(m.Content); i += 2 {
				name := m.Content[i].Value
				fields[name] = func(v *yaml.Node) {
					var s string
					d.str(&s, path+".env."+name)(v)
					t.Env[name] = s
				}
			}
			d.mapping(m, path+".env", fields)
		},
		"pool":     d.str(&t.Pool, path+".pool"),
		"archs":    d.strs(&t.Archs, path+".archs"),
		"cpu":      d.quantity(&cpu, path+".cpu"),
		"spot":     d.str(&spot, path+".spot"),
		"features": d.strs(&t.Features, path+".features"),
		"predictor": func(m *yaml.Node) {
			predictorLines = d.mapping(m, path+".predictor", map[string]func(*yaml.Node){
				"groupBy":  d.strs(&t.GroupBy, path+".predictor.groupBy"),
				"features": d.strs(&predictorFeatures, path+".predictor.features"),
			})
		},
		"gpu": func(m *yaml.Node) {
			gpuNode = m
			gpuLines = d.mapping(m, path+".gpu", map[string]func(*yaml.Node){
				"count": d.integer(&t.GPU.Count, path+".gpu.count"),
				"kind":  d.str(&t.GPU.Kind, path+".gpu.kind"),
			}, "count")
		},
		"memory": func(m *yaml.Node) {
			memoryNode = m
			memoryLines = d.mapping(m, path+".memory", map[string]func(*yaml.Node){
				"min":     d.bytes(&t.Memory.Min, path+".memory.min"),
				"max":     d.bytes(&t.Memory.Max, path+".memory.max"),
				"default": d.bytes(&t.Memory.Default, path+".memory.default"),
			})
		},
		"checkpoint": func(m *yaml.Node) {
			checkpointNode = m
			checkpointLines = d.mapping(m, path+".checkpoint", map[string]func(*yaml.Node){
				"dir":         d.str(&t.Checkpoint.Dir, path+".checkpoint.dir"),
				"interval":    d.duration(&t.Checkpoint.Interval, path+".checkpoint.interval"),
				"stopGrace":   d.duration(&t.Checkpoint.StopGrace, path+".checkpoint.stopGrace"),
				"uploadGrace": d.duration(&t.Checkpoint.UploadGrace, path+".checkpoint.uploadGrace"),
			})
		},
		"mode":         d.str(&mode, path+".mode"),
		"maxRuntime":   d.duration(&t.MaxRuntime, path+".maxRuntime"),
		"maxAttempts":  d.integer(&t.MaxAttempts, path+".maxAttempts"),
		"maxReplicas":  d.integer(&t.MaxReplicas, path+".maxReplicas"),
		"doNotDisrupt": d.boolean(&t.DoNotDisrupt, path+".doNotDisrupt"),
	}, "name", "image", "command", "pool")
	if l := predictorLines["features"]; l != 0 {
		// The type's features, under the predictor's settings; the
		// type-level features is the same setting.
		if lines["features"] != 0 {
			d.add(&yaml.Node{Line: l}, path+".predictor.features", "the type's features are set at %s.features (line %d): set them in one place", path, lines["features"])
		}
		t.Features = predictorFeatures
	}
	t.CPU = cpu
	t.Spot = SpotPolicy(spot)
	t.Mode = Mode(mode)
	// Flatten the nested lines so checkType can point at any setting.
	for prefix, nested := range map[string]map[string]int{"memory.": memoryLines, "checkpoint.": checkpointLines, "gpu.": gpuLines, "predictor.": predictorLines} {
		for k, v := range nested {
			lines[prefix+k] = v
		}
	}
	lines["memory"] = memoryNode.Line
	lines["checkpoint"] = checkpointNode.Line
	lines["gpu"] = gpuNode.Line
	return t, lines
}

// checkType validates a decoded type against the registry's pools and fills
// in defaults.
func (d *decoder) checkType(t *Type, reg *Registry, lines map[string]int, path string) {
	at := func(field string) *yaml.Node {
		for f := field; f != ""; {
			if l := lines[f]; l != 0 {
				return &yaml.Node{Line: l}
			}
			i := strings.LastIndexByte(f, '.')
			if i < 0 {
				break
			}
			f = f[:i]
		}
		return &yaml.Node{Line: lines["name"]}
	}
	problem := func(field, format string, args ...any) {
		d.add(at(field), joinPath(path, field), format, args...)
	}
	if !jobfleet.TypeNamePattern.MatchString(t.Name) {
		problem("name", "%q: a job type name is 1-30 lower-case letters, digits or '-', starting and ending with a letter or digit", t.Name)
	}
	// Missing settings were reported by the mapping; these catch empty ones.
	if lines["image"] != 0 && t.Image == "" {
		problem("image", "must not be empty")
	}
	if lines["command"] != 0 && (len(t.Command) == 0 || t.Command[0] == "") {
		problem("command", "must name the program the job's container runs")
	}
	for name := range t.Env {
		if errs := validation.IsEnvVarName(name); len(errs) > 0 {
			problem("env", "%q: %s", name, strings.Join(errs, "; "))
		}
	}
	if t.CPU.IsZero() {
		t.CPU = resource.MustParse(DefaultCPU)
	}
	switch t.Mode {
	case "":
		t.Mode = ModeCommand
	case ModeCommand, ModeLibrary:
	default:
		problem("mode", "%q: command (the image's command runs under jobfleet's worker) or library (the image runs a Go program that calls worker.Run)", t.Mode)
	}
	switch t.Spot {
	case "":
		t.Spot = SpotPreferred
	case SpotPreferred, SpotOnly, OnDemandOnly:
	default:
		problem("spot", "%q: one of prefer-spot, spot, on-demand", t.Spot)
	}
	// A list of names: each well formed, none twice.
	names := func(field string, list []string, pattern *regexp.Regexp, what string) {
		seen := map[string]bool{}
		for _, name := range list {
			if !pattern.MatchString(name) {
				problem(field, "%q is not a valid %s", name, what)
			}
			if seen[name] {
				problem(field, "%q is listed twice", name)
			}
			seen[name] = true
		}
	}
	features := "features"
	if lines["predictor.features"] != 0 {
		features = "predictor.features"
	}
	names(features, t.Features, jobfleet.FeatureNamePattern, "feature name")
	names("predictor.groupBy", t.GroupBy, jobfleet.LabelKeyPattern, "label key")
	// An empty list would read as no list: every feature, no labels.
	if lines[features] != 0 && len(t.Features) == 0 {
		problem(features, "list at least one feature, or leave the setting out (the predictor then reads every feature)")
	}
	if lines["predictor.groupBy"] != 0 && len(t.GroupBy) == 0 {
		problem("predictor.groupBy", "list at least one label, or leave the setting out")
	}
	if t.GPU.Count < 0 {
		problem("gpu.count", "%d: not negative", t.GPU.Count)
	}
	if t.GPU.Kind != "" && t.GPU.Count == 0 {
		problem("gpu.kind", "a GPU kind needs gpu.count of at least 1")
	}
	if t.GPU.Kind != "" && len(validation.IsValidLabelValue(t.GPU.Kind)) > 0 {
		problem("gpu.kind", "%q is not a valid node label value", t.GPU.Kind)
	}
	if t.Checkpoint.Dir == "" {
		t.Checkpoint.Dir = DefaultCheckpointDir
	}
	if !strings.HasPrefix(t.Checkpoint.Dir, "/") {
		problem("checkpoint.dir", "%q: an absolute path", t.Checkpoint.Dir)
	}
	if t.Checkpoint.Interval == 0 {
		t.Checkpoint.Interval = DefaultCheckpointInterval
	}
	if t.Checkpoint.Interval < 10*time.Second {
		problem("checkpoint.interval", "%v is shorter than the 10s minimum", t.Checkpoint.Interval)
	}
	if t.Checkpoint.UploadGrace == 0 {
		t.Checkpoint.UploadGrace = DefaultUploadGrace
	}
	if t.Checkpoint.StopGrace == 0 {
		t.Checkpoint.StopGrace = DefaultStopGrace
	}
	if t.MaxRuntime == 0 {
		t.MaxRuntime = DefaultMaxRuntime
	}
	if t.MaxAttempts == 0 {
		t.MaxAttempts = DefaultMaxAttempts
	}
	if t.MaxAttempts < 1 {
		problem("maxAttempts", "%d: at least 1", t.MaxAttempts)
	}
	if t.MaxReplicas == 0 {
		t.MaxReplicas = DefaultMaxReplicas
	}
	if t.MaxReplicas < 1 {
		problem("maxReplicas", "%d: at least 1", t.MaxReplicas)
	}

	if t.Memory.Min != 0 && t.Memory.Max != 0 && t.Memory.Min > t.Memory.Max {
		problem("memory.min", "min (%s) is above max (%s)", formatBytes(t.Memory.Min), formatBytes(t.Memory.Max))
		return
	}
	pool, ok := reg.pools[t.Pool]
	if !ok {
		problem("pool", "%q is not a pool defined in this file (pools: %s)", t.Pool, strings.Join(slices.Sorted(maps.Keys(reg.pools)), ", "))
		return
	}
	for i, a := range t.Archs {
		if a != "amd64" && a != "arm64" {
			problem("archs", "%q: amd64 or arm64", a)
		}
		if slices.Contains(t.Archs[:i], a) {
			problem("archs", "%q is listed twice", a)
		}
	}
	switch {
	case lines["archs"] != 0 && len(t.Archs) == 0:
		problem("archs", "at least one architecture (amd64, arm64)")
	case len(t.Archs) == 0 && len(pool.Archs) == 1:
		t.Archs = slices.Clone(pool.Archs)
	case len(t.Archs) == 0:
		// An image is amd64 unless the type says otherwise.
		t.Archs = []string{DefaultArch}
	default:
		declared := t.Archs
		t.Archs = slices.DeleteFunc(slices.Clone(pool.Archs), func(a string) bool { return !slices.Contains(declared, a) })
		if len(t.Archs) == 0 {
			problem("archs", "the image's %s: pool %q has only %s nodes", strings.Join(declared, ", "), pool.Name, strings.Join(pool.Archs, ", "))
		}
	}
	if pool.GPU && t.GPU.Count == 0 {
		problem("pool", "pool %q is a GPU pool; a type there needs gpu.count", pool.Name)
	}
	if !pool.GPU && t.GPU.Count > 0 {
		problem("gpu", "pool %q has no GPUs", pool.Name)
	}
	switch t.Spot {
	case SpotOnly:
		if !pool.AllowsCapacity(jobfleet.CapacitySpot) {
			problem("spot", "pool %q does not launch spot capacity", pool.Name)
		}
	case OnDemandOnly:
		if !pool.AllowsCapacity(jobfleet.CapacityOnDemand) {
			problem("spot", "pool %q does not launch on-demand capacity", pool.Name)
		}
	}
	if t.Memory.Min == 0 {
		t.Memory.Min = pool.Sizes[0]
	}
	if t.Memory.Max == 0 {
		t.Memory.Max = pool.Largest()
	}
	if t.Memory.Default == 0 {
		t.Memory.Default = t.Clamp(2 << 30)
	}
	switch {
	case t.Memory.Min > t.Memory.Max:
		problem("memory", "min (%s) is above max (%s) once the pool's sizes fill in the missing bound", formatBytes(t.Memory.Min), formatBytes(t.Memory.Max))
	case t.Memory.Default < t.Memory.Min || t.Memory.Default > t.Memory.Max:
		problem("memory.default", "default (%s) is outside [min, max] = [%s, %s]", formatBytes(t.Memory.Default), formatBytes(t.Memory.Min), formatBytes(t.Memory.Max))
	}
	if t.Memory.Max > pool.Largest() {
		problem("memory.max", "%s is above pool %q's largest size %s", formatBytes(t.Memory.Max), pool.Name, formatBytes(pool.Largest()))
	}
}

// ParseToleration reads a key[=value]:effect toleration.
func ParseToleration(s string) (Toleration, error) {
	keyValue, effect, ok := strings.Cut(s, ":")
	if !ok {
		return Toleration{}, fmt.Errorf("toleration %q: want key[=value]:effect", s)
	}
	key, value, _ := strings.Cut(keyValue, "=")
	switch effect {
	case "NoSchedule", "PreferNoSchedule", "NoExecute":
	default:
		return Toleration{}, fmt.Errorf("toleration %q: effect must be NoSchedule, PreferNoSchedule or NoExecute", s)
	}
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return Toleration{}, fmt.Errorf("toleration %q: key: %s", s, strings.Join(errs, "; "))
	}
	return Toleration{Key: key, Value: value, Effect: effect}, nil
}

// Toleration is a parsed pool toleration.
type Toleration struct {
	Key, Value, Effect string
}

func poolNamePattern(name string) bool {
	if len(name) == 0 || len(name) > 12 {
		return false
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	if field == "" {
		return path
	}
	return path + "." + field
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.ShortTag() == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

// yamlErrorLine pulls the line number out of a YAML syntax error.
func yamlErrorLine(err error) int {
	var typeErr *yaml.TypeError
	if errors.As(err, &typeErr) {
		return 0
	}
	// Syntax errors read "yaml: line N: ...".
	var line int
	if _, scanErr := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); scanErr == nil {
		return line
	}
	return 0
}
