package simulate

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strings"

	"github.com/jobfleet/jobfleet/internal/csvtable"
)

//go:embed costdata/*.csv costdata/*.json
var embedded embed.FS

// DefaultCostData is the cost data shipped with jobfleet (see
// costdata/README.md for sources and dates).
func DefaultCostData() fs.FS {
	sub, err := fs.Sub(embedded, "costdata")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	return sub
}

// The files a cost data directory holds.
const (
	fileTypes    = "ec2-instance-types.csv"
	filePrices   = "ec2-on-demand-prices.csv"
	fileAdvisor  = "ec2-spot-advisor.csv"
	fileFargate  = "fargate.json"
	costRegion   = "us-east-1"
	hoursInMonth = 730 // AWS bills and the Advisor's monthly share use 730 h
)

// Instance is an EC2 instance type as the simulator uses it.
type Instance struct {
	Name       string
	Family     string
	Category   string
	Generation int
	Arch       string
	GPUs       int
	// CPU (millicores) and Memory (bytes) are what a node of the type can
	// allocate to pods.
	CPU    float64
	Memory float64
	Pods   int
	// OnDemand is the price per hour in USD.
	OnDemand float64
	// Spot is nil when the Spot Instance Advisor has no entry for the type.
	Spot *SpotInfo
}

// SpotInfo is the Spot Instance Advisor's entry for a type.
type SpotInfo struct {
	Band string
	// MaxPct is the band's upper edge: the share of instances interrupted
	// in a month, in percent.
	MaxPct float64
	// SavingsPct is the average saving against on-demand, in percent.
	SavingsPct float64
}

// Price is the type's hourly price on a capacity type.
func (in *Instance) Price(spot bool) float64 {
	if spot {
		return in.OnDemand * (1 - in.Spot.SavingsPct/100)
	}
	return in.OnDemand
}

// InterruptionRate is the type's spot interruptions per instance-hour:
// the band's upper edge as a monthly share, spread over 730 hours.
func (in *Instance) InterruptionRate() float64 {
	if in.Spot == nil {
		return 0
	}
	return in.Spot.MaxPct / 100 / hoursInMonth
}

// Fargate is EKS Fargate's pricing and pod sizes.
type Fargate struct {
	PerVCPUHour float64
	PerGBHour   float64
	// MinimumSeconds is the shortest billed duration.
	MinimumSeconds float64
	// Sizes are the allowed pod sizes, smallest first.
	Sizes []FargateSize
	// Overhead is the memory Fargate adds to a pod's request, in bytes.
	Overhead float64
}

// FargateSize is an allowed Fargate pod size.
type FargateSize struct {
	VCPU float64
	// Memory in bytes.
	Memory float64
}

// Catalog is the cost data a simulation prices with.
type Catalog struct {
	Instances []*Instance
	Fargate   Fargate
}

// LoadCatalog reads cost data in the format of costdata/: the three EC2
// CSV files and fargate.json. Errors name the file, line and column.
func LoadCatalog(fsys fs.FS) (*Catalog, error) {
	prices := map[string]float64{}
	err := readCSV(fsys, filePrices, []string{"region", "instance_type", "usd_per_hour"}, func(row csvRow) error {
		if row.str("region") != costRegion {
			return nil
		}
		p, err := row.num("usd_per_hour")
		if err != nil {
			return err
		}
		if p <= 0 {
			return row.errorf("usd_per_hour", "%v is not a price", p)
		}
		prices[row.str("instance_type")] = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	spot := map[string]*SpotInfo{}
	err = readCSV(fsys, fileAdvisor, []string{"region", "instance_type", "interruption_band", "interruption_max_pct", "savings_pct"}, func(row csvRow) error {
		if row.str("region") != costRegion {
			return nil
		}
		maxPct, err := row.num("interruption_max_pct")
		if err != nil {
			return err
		}
		savings, err := row.num("savings_pct")
		if err != nil {
			return err
		}
		if maxPct < 0 || maxPct > 100 {
			return row.errorf("interruption_max_pct", "%v is not a percentage", maxPct)
		}
		if savings < 0 || savings >= 100 {
			return row.errorf("savings_pct", "%v is not a saving below 100%%", savings)
		}
		spot[row.str("instance_type")] = &SpotInfo{Band: row.str("interruption_band"), MaxPct: maxPct, SavingsPct: savings}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c := &Catalog{}
	cols := []string{"instance_type", "family", "category", "generation", "arch", "gpu_count", "allocatable_cpu_millicores", "allocatable_memory_mib", "max_pods"}
	err = readCSV(fsys, fileTypes, cols, func(row csvRow) error {
		name := row.str("instance_type")
		price, ok := prices[name]
		if !ok {
			return nil // not sold on demand in the region
		}
		in := &Instance{Name: name, Family: row.str("family"), Category: row.str("category"), Arch: row.str("arch"), OnDemand: price, Spot: spot[name]}
		var gen, gpus, cpu, mem, pods float64
		for _, f := range []struct {
			col string
			dst *float64
		}{{"generation", &gen}, {"gpu_count", &gpus}, {"allocatable_cpu_millicores", &cpu}, {"allocatable_memory_mib", &mem}, {"max_pods", &pods}} {
			v, err := row.num(f.col)
			if err != nil {
				return err
			}
			if v < 0 {
				return row.errorf(f.col, "%v is negative", v)
			}
			*f.dst = v
		}
		if cpu <= 0 || mem <= 0 || pods < 1 {
			return nil // nothing schedulable
		}
		in.Generation, in.GPUs, in.CPU, in.Memory, in.Pods = int(gen), int(gpus), cpu, mem*(1<<20), int(pods)
		c.Instances = append(c.Instances, in)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(c.Instances) == 0 {
		return nil, fmt.Errorf("%s: no instance type has a %s price in %s", fileTypes, costRegion, filePrices)
	}
	slices.SortFunc(c.Instances, func(a, b *Instance) int {
		if a.OnDemand != b.OnDemand {
			if a.OnDemand < b.OnDemand {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	if c.Fargate, err = loadFargate(fsys); err != nil {
		return nil, err
	}
	return c, nil
}

// Instance returns the named type, or nil.
func (c *Catalog) Instance(name string) *Instance {
	for _, in := range c.Instances {
		if in.Name == name {
			return in
		}
	}
	return nil
}

func loadFargate(fsys fs.FS) (Fargate, error) {
	data, err := fs.ReadFile(fsys, fileFargate)
	if err != nil {
		return Fargate{}, fmt.Errorf("reading cost data: %w", err)
	}
	var doc struct {
		OnDemand struct {
			X86 struct {
				VCPU float64 `json:"usd_per_vcpu_hour"`
				GB   float64 `json:"usd_per_gb_hour"`
			} `json:"linux_x86"`
		} `json:"on_demand"`
		Billing struct {
			Minimum float64 `json:"minimum_seconds"`
		} `json:"billing"`
		Sizing struct {
			Overhead float64 `json:"memory_added_mb_per_pod"`
			Configs  []struct {
				VCPU float64 `json:"vcpu"`
				MiB  float64 `json:"memory_mib"`
			} `json:"configurations"`
		} `json:"eks_pod_sizing"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return Fargate{}, fmt.Errorf("%s: %w", fileFargate, err)
	}
	f := Fargate{PerVCPUHour: doc.OnDemand.X86.VCPU, PerGBHour: doc.OnDemand.X86.GB, MinimumSeconds: doc.Billing.Minimum, Overhead: doc.Sizing.Overhead * (1 << 20)}
	switch {
	case f.PerVCPUHour <= 0:
		return f, fmt.Errorf("%s: on_demand.linux_x86.usd_per_vcpu_hour: missing or not positive", fileFargate)
	case f.PerGBHour <= 0:
		return f, fmt.Errorf("%s: on_demand.linux_x86.usd_per_gb_hour: missing or not positive", fileFargate)
	case len(doc.Sizing.Configs) == 0:
		return f, fmt.Errorf("%s: eks_pod_sizing.configurations: missing", fileFargate)
	case f.Overhead <= 0:
		return f, fmt.Errorf("%s: eks_pod_sizing.memory_added_mb_per_pod: missing or not positive", fileFargate)
	case f.MinimumSeconds <= 0:
		return f, fmt.Errorf("%s: billing.minimum_seconds: missing or not positive", fileFargate)
	}
	for i, s := range doc.Sizing.Configs {
		if s.VCPU <= 0 || s.MiB <= 0 {
			return f, fmt.Errorf("%s: eks_pod_sizing.configurations[%d]: vcpu and memory_mib must be positive", fileFargate, i)
		}
		f.Sizes = append(f.Sizes, FargateSize{VCPU: s.VCPU, Memory: s.MiB * (1 << 20)})
	}
	slices.SortFunc(f.Sizes, func(a, b FargateSize) int {
		// Cheapest first: the smallest vCPU, then the smallest memory.
		if a.VCPU != b.VCPU {
			if a.VCPU < b.VCPU {
				return -1
			}
			return 1
		}
		if a.Memory < b.Memory {
			return -1
		}
		if a.Memory > b.Memory {
			return 1
		}
		return 0
	})
	return f, nil
}

// csvRow is one row of a cost-data file, read by column name.
type csvRow struct {
	t    *csvtable.Table
	cols map[string]int
}

func (r csvRow) str(col string) string { return r.t.String(r.cols[col]) }

func (r csvRow) num(col string) (float64, error) {
	v, err := r.t.Float(r.cols[col])
	if err == nil && math.IsNaN(v) {
		err = r.errorf(col, "no value")
	}
	return v, err
}

func (r csvRow) errorf(col, format string, args ...any) error {
	return r.t.Errorf(r.cols[col], format, args...)
}

// readCSV calls each for every row of a cost-data file with the required
// columns. Errors name the file, line and column.
func readCSV(fsys fs.FS, name string, required []string, each func(csvRow) error) error {
	f, err := fsys.Open(name)
	if err != nil {
		return fmt.Errorf("reading cost data: %w", err)
	}
	defer f.Close()
	t, err := csvtable.Open(f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	row := csvRow{t: t, cols: map[string]int{}}
	for _, col := range required {
		row.cols[col] = t.Column("", col)
	}
	if err := t.Missing(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for {
		ok, err := t.Next()
		if err != nil || !ok {
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			return err
		}
		if err := each(row); err != nil {
			return fmt.Errorf("%s %w", name, err)
		}
	}
}
