package jobtype_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/jobfleet/jobfleet/jobtype"
)

const gi = 1 << 30

func TestLoad(t *testing.T) {
	t.Parallel()
	reg, err := jobtype.Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(reg.Types()); got != 3 {
		t.Fatalf("%d types, want 3", got)
	}
	export, ok := reg.Type("feature-export")
	if !ok {
		t.Fatal("feature-export missing")
	}
	if export.Memory.Min != 256<<20 || export.Memory.Default != gi || export.Memory.Max != 16*gi {
		t.Errorf("export memory = %+v", export.Memory)
	}
	if export.Checkpoint.Interval != 2*time.Minute || export.Checkpoint.Dir != jobtype.DefaultCheckpointDir || export.Checkpoint.UploadGrace != jobtype.DefaultUploadGrace {
		t.Errorf("export checkpoint = %+v, want a 2m interval and defaults", export.Checkpoint)
	}
	if export.Spot != jobtype.SpotPreferred || export.MaxAttempts != 4 || export.MaxReplicas != jobtype.DefaultMaxReplicas || export.CPU.String() != "1" {
		t.Errorf("export = %+v", export)
	}

	if !slices.Equal(export.Features, []string{"rows"}) || !slices.Equal(export.GroupBy, []string{"user"}) {
		t.Errorf("export reads features %v, groups by %v; want [rows] (predictor.features), [user]", export.Features, export.GroupBy)
	}

	train, _ := reg.Type("train-ranker")
	if !slices.Equal(train.Features, []string{"rows", "model_params"}) {
		t.Errorf("train reads features %v, want [rows model_params] (the type's features)", train.Features)
	}
	if train.GPU != (jobtype.GPU{Count: 1, Kind: "a10g"}) || !train.DoNotDisrupt || train.MaxRuntime != 12*time.Hour || train.Env["TORCH_HOME"] != "/cache" {
		t.Errorf("train = %+v", train)
	}
	if train.Memory.Default != 8*gi {
		t.Errorf("train default memory = %d, want the 2Gi default clamped up to min 8Gi", train.Memory.Default)
	}
	gpu, _ := reg.Pool("gpu")
	if !gpu.GPU || gpu.NodePool != "jobfleet-gpu-a10g" || len(gpu.Tolerations) != 1 || gpu.Tolerations[0] != "nvidia.com/gpu:NoSchedule" {
		t.Errorf("gpu pool = %+v", gpu)
	}
	arm, _ := reg.Pool("arm")
	if !slices.Equal(arm.Archs, []string{"arm64"}) || arm.NodePool != "jobfleet-arm" || len(arm.Sizes) != len(jobtype.DefaultSizes) {
		t.Errorf("arm pool = %+v", arm)
	}
	report, _ := reg.Type("report")
	if report.Memory.Max != arm.Largest() {
		t.Errorf("report max memory = %d, want the pool's largest size %d", report.Memory.Max, arm.Largest())
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := jobtype.Load("testdata/invalid.yaml")
	var loadErr *jobtype.LoadError
	if !errors.As(err, &loadErr) {
		t.Fatalf("Load() error = %v, want a *LoadError", err)
	}
	want := []string{
		"testdata/invalid.yaml:3: pools[0].sizes: sizes must be listed from smallest to largest",
		`testdata/invalid.yaml:5: pools[1].gpu: must be true or false, got "yes please"`,
		"testdata/invalid.yaml:11: types[0].colour: unknown setting",
		`testdata/invalid.yaml:7: types[0].name: "Export_Job": a job type name is`,
		`testdata/invalid.yaml:15: types[1].pool: "tpu" is not a pool defined in this file (pools: cpu, gpu)`,
		`testdata/invalid.yaml:16: types[1].maxAttempts: must be a whole number, got "many"`,
		"testdata/invalid.yaml:17: types[2].image: required",
		`testdata/invalid.yaml:24: types[3].spot: "always": one of prefer-spot, spot, on-demand`,
		"testdata/invalid.yaml:25: types[3].memory.min: min (4Gi) is above max (2Gi)",
		"testdata/invalid.yaml:26: types[3].checkpoint.interval: 1s is shorter than the 10s minimum",
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("error does not report %q\ngot:\n%s", w, got)
		}
	}
	if len(loadErr.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(loadErr.Problems), len(want), got)
	}
}

func TestParseProblems(t *testing.T) {
	t.Parallel()
	base := "pools:\n  - name: cpu\ntypes:\n  - name: t\n    image: i\n    command: [c]\n    pool: cpu\n"
	tests := []struct {
		name, yaml, want string
	}{
		{name: "syntax error", yaml: "pools: [\n", want: "f.yaml:1: yaml: line 1: did not find expected node content"},
		{name: "empty", yaml: "", want: "the file is empty"},
		{name: "types not a list", yaml: "pools: []\ntypes: {a: 1}\n", want: "f.yaml:2: types: must be a list"},
		{name: "unknown pool", yaml: strings.Replace(base, "pool: cpu", "pool: gpu", 1), want: `f.yaml:7: types[0].pool: "gpu" is not a pool defined in this file (pools: cpu)`},
		{name: "gpu type on cpu pool", yaml: base + "    gpu: {count: 1}\n", want: `types[0].gpu: pool "cpu" has no GPUs`},
		{name: "duplicate type", yaml: base + "  - name: t\n    image: i\n    command: [c]\n    pool: cpu\n", want: `f.yaml:8: types[1].name: job type "t" is defined twice`},
		{name: "setting twice", yaml: base + "    pool: cpu\n", want: "f.yaml:8: types[0].pool: set twice (first on line 7)"},
		{name: "max above pool", yaml: base + "    memory: {max: 1Ti}\n", want: `types[0].memory.max: 1Ti is above pool "cpu"'s largest size 128Gi`},
		{name: "spot on on-demand pool", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    capacityTypes: [on-demand]", 1) + "    spot: spot\n", want: `types[0].spot: pool "cpu" does not launch spot capacity`},
		{name: "bad toleration", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    tolerations: [dedicated=ml]", 1), want: "want key[=value]:effect"},
		{name: "bad feature", yaml: base + "    features: [rows, rows]\n", want: `"rows" is listed twice`},
		{name: "bad label to group by", yaml: base + "    predictor: {groupBy: [\"-user\"]}\n", want: `f.yaml:8: types[0].predictor.groupBy: "-user" is not a valid label key`},
		{name: "bad feature under predictor", yaml: base + "    predictor: {features: [rows, \"2x\"]}\n", want: `f.yaml:8: types[0].predictor.features: "2x" is not a valid feature name`},
		{name: "features in two places", yaml: base + "    features: [rows]\n    predictor: {features: [rows]}\n", want: `f.yaml:9: types[0].predictor.features: the type's features are set at types[0].features (line 8): set them in one place`},
		{name: "no features", yaml: base + "    predictor: {features: []}\n", want: `f.yaml:8: types[0].predictor.features: list at least one feature, or leave the setting out`},
		{name: "no features at the type", yaml: base + "    features: []\n", want: `f.yaml:8: types[0].features: list at least one feature`},
		{name: "no labels to group by", yaml: base + "    predictor: {groupBy: []}\n", want: `f.yaml:8: types[0].predictor.groupBy: list at least one label`},
		{name: "unknown predictor setting", yaml: base + "    predictor: {groupby: [user]}\n", want: `types[0].predictor`},
		{name: "pools but no types", yaml: "pools:\n  - name: cpu\ntypes: []\n", want: "f.yaml:1: types: no job types"},
		{name: "pools and no types key", yaml: "pools:\n  - name: cpu\n", want: "types: required"},
		{name: "no pools", yaml: "pools: []\ntypes: []\n", want: "no job types"},
		{name: "a pool with no sizes", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    sizes: []", 1), want: "pools[0].sizes: a pool needs at least one size"},
		{name: "a size of odd bytes", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    sizes: [1000001k]", 1), want: `"1000001k": sizes are whole MiB`},
		{name: "unknown mode", yaml: base + "    mode: daemon\n", want: `types[0].mode: "daemon": command`},
		{name: "arch and archs", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    arch: amd64\n    archs: [arm64]", 1), want: "pools[0].arch: set arch or archs, not both"},
		{name: "unknown arch", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    archs: [amd64, riscv64]", 1), want: `pools[0].archs: "riscv64": amd64 or arm64`},
		{name: "an image of no arch the pool has", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    arch: arm64", 1) + "    archs: [amd64]\n", want: `types[0].archs: the image's amd64: pool "cpu" has only arm64 nodes`},
		{name: "split not a multiple of 5", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    spotPercent: 62", 1), want: "pools[0].spotPercent: 62: a multiple of 5 from 5 to 95"},
		{name: "split of a spot-only pool", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    capacityTypes: [spot]\n    spotPercent: 60", 1), want: "pools[0].spotPercent: a split needs capacityTypes with both spot and on-demand"},
		{name: "an AMI not an alias", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    ami: ami-0123456789", 1), want: `pools[0].ami: "ami-0123456789": an AMI alias`},
		{name: "a small root volume", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    rootVolume: {size: 8Gi}", 1), want: "pools[0].rootVolume.size: 8Gi: at least 20Gi"},
		{name: "throughput beyond the iops", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    rootVolume: {iops: 3000, throughput: 1000}", 1), want: "pools[0].rootVolume.throughput: 1000 MiB/s needs at least 4000 iops"},
		{name: "a bad limit", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    limits: {cpu: lots}", 1), want: `pools[0].limits.cpu: must be a positive Kubernetes quantity`},
		{name: "nodes expire under jobs", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    expireAfter: 12h", 1) + "    maxRuntime: 1d\n", want: "pools[0].expireAfter: 12h0m0s is shorter than the longest attempt of the pool's job types (24h1m30s"},
		{name: "empty instance types", yaml: strings.Replace(base, "name: cpu", "name: cpu\n    instanceTypes: []", 1), want: "pools[0].instanceTypes: leave it out"},
		{name: "duration in days", yaml: base + "    maxRuntime: 2w\n    checkpoint: {interval: 1.5d}\n", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := jobtype.Parse("f.yaml", []byte(tt.yaml))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse() = %v, want the registry accepted", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestPoolPlacement: the settings NodePools are rendered from, with their
// defaults.
func TestPoolPlacement(t *testing.T) {
	t.Parallel()
	reg, err := jobtype.Parse("f.yaml", []byte(`
pools:
  - name: cpu
    archs: [amd64, arm64]
    spotPercent: 60
    instanceFamilies: [m7i, m7g]
    limits: {cpu: "1000", memory: 4000Gi}
  - name: gpu
    gpu: true
    ami: al2023@v20251117
types:
  - name: multi
    image: i
    command: [c]
    pool: cpu
    archs: [arm64, amd64]
  - name: plain
    image: i
    command: [c]
    pool: cpu
  - name: train
    image: i
    command: [c]
    pool: gpu
    gpu: {count: 1}
    maxRuntime: 30d
`))
	if err != nil {
		t.Fatal(err)
	}
	cpu, _ := reg.Pool("cpu")
	if spot, od := cpu.Split(); spot != 3 || od != 2 {
		t.Errorf("a 60%% split = %d:%d, want 3:2", spot, od)
	}
	if !slices.Equal(cpu.Archs, []string{"amd64", "arm64"}) || !cpu.Limits["memory"].Equal(resource.MustParse("4000Gi")) || cpu.RootVolume != jobtype.DefaultRootVolume {
		t.Errorf("cpu pool = %+v", cpu)
	}
	if cpu.ExpireAfter != jobtype.DefaultExpireAfter || cpu.ConsolidateAfter != jobtype.DefaultConsolidateAfter || cpu.AMI != jobtype.DefaultAMI {
		t.Errorf("cpu pool defaults: expire %v, consolidate %v, ami %q", cpu.ExpireAfter, cpu.ConsolidateAfter, cpu.AMI)
	}
	multi, _ := reg.Type("multi")
	plain, _ := reg.Type("plain")
	if !slices.Equal(multi.Archs, []string{"amd64", "arm64"}) || !slices.Equal(plain.Archs, []string{"amd64"}) {
		t.Errorf("archs: multi %v, plain %v; want both of the pool's, and amd64 for a type that lists none", multi.Archs, plain.Archs)
	}
	gpu, _ := reg.Pool("gpu")
	if gpu.RootVolume != jobtype.DefaultGPURootVolume || gpu.AMI != "al2023@v20251117" {
		t.Errorf("gpu pool = %+v", gpu)
	}
	train, _ := reg.Type("train")
	if want := 2 * (train.MaxRuntime + train.Checkpoint.GracePeriod()); gpu.ExpireAfter != want {
		t.Errorf("gpu expireAfter = %v, want twice the longest attempt, %v", gpu.ExpireAfter, want)
	}
	if spot, od := gpu.Split(); spot != 0 || od != 0 {
		t.Errorf("an unsplit pool's split = %d:%d", spot, od)
	}
}

func TestPoolSizeFor(t *testing.T) {
	t.Parallel()
	p := &jobtype.Pool{Sizes: []int64{gi, 2 * gi, 4 * gi}}
	tests := []struct {
		name   string
		memory int64
		want   int64
		ok     bool
	}{
		{name: "below the smallest", memory: 1, want: gi, ok: true},
		{name: "exact", memory: 2 * gi, want: 2 * gi, ok: true},
		{name: "between", memory: 2*gi + 1, want: 4 * gi, ok: true},
		{name: "above the largest", memory: 4*gi + 1, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := p.SizeFor(tt.memory)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("SizeFor(%d) = %d, %v; want %d, %v", tt.memory, got, ok, tt.want, tt.ok)
			}
		})
	}
	if got := jobtype.SizeName(512 << 20); got != "512mi" {
		t.Errorf("SizeName(512Mi) = %q", got)
	}
}

// FuzzParse feeds the registry loader anything: it never panics, reports
// problems as a *LoadError (or a YAML error), and a registry it accepts is
// consistent: every type's pool exists, sizes ascend, bounds hold.
func FuzzParse(f *testing.F) {
	for _, file := range []string{"testdata/valid.yaml", "testdata/invalid.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("pools:\n  - name: cpu\ntypes:\n  - name: t\n    image: i\n    command: [c]\n    pool: cpu\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		reg, err := jobtype.Parse("f.yaml", data)
		if err != nil {
			return
		}
		if len(reg.Types()) == 0 {
			t.Fatal("accepted a registry without types")
		}
		for _, typ := range reg.Types() {
			pool, ok := reg.Pool(typ.Pool)
			if !ok {
				t.Fatalf("type %s on a missing pool %q", typ.Name, typ.Pool)
			}
			if len(pool.Sizes) == 0 || !slices.IsSorted(pool.Sizes) {
				t.Fatalf("pool %s sizes %v", pool.Name, pool.Sizes)
			}
			if typ.Memory.Min > typ.Memory.Default || typ.Memory.Default > typ.Memory.Max || typ.Memory.Max > pool.Largest() {
				t.Fatalf("type %s memory %+v on pool sizes %v", typ.Name, typ.Memory, pool.Sizes)
			}
			if typ.Checkpoint.UploadGrace <= 0 || typ.Checkpoint.StopGrace <= 0 || typ.MaxAttempts < 1 {
				t.Fatalf("type %s settings %+v", typ.Name, typ)
			}
		}
	})
}
