package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/jobfleet/jobfleet/internal/simulate"
	"github.com/jobfleet/jobfleet/internal/units"
)

// SimulateCmd replays a trace under policies.
type SimulateCmd struct {
	Trace      string   `name:"trace" env:"JOBFLEET_SIMULATE_TRACE" required:"" placeholder:"FILE.csv|DIR|s3://BUCKET/PREFIX" help:"The jobs to replay: a CSV trace (with the column flags), or run records in a directory or under an S3 prefix."`
	Policies   string   `name:"policies" env:"JOBFLEET_SIMULATE_POLICIES" required:"" type:"existingfile" placeholder:"FILE" help:"Policy file (YAML): the policies compared, the baseline and the seeds."`
	CostData   string   `name:"cost-data" env:"JOBFLEET_SIMULATE_COST_DATA" type:"existingdir" placeholder:"DIR" help:"Directory with newer cost data (ec2-instance-types.csv, ec2-on-demand-prices.csv, ec2-spot-advisor.csv, fargate.json); default: the data shipped with jobfleet."`
	Seeds      int      `name:"seeds" env:"JOBFLEET_SIMULATE_SEEDS" help:"Replays per policy with different random draws (overrides the policy file's seeds)."`
	Warmup     string   `name:"warmup" env:"JOBFLEET_SIMULATE_WARMUP" default:"auto" placeholder:"DURATION|auto" help:"Start of the trace that is history only (learning policies train on it, nobody is charged for it): auto is the longest sizing window of a learning policy; 0 replays everything."`
	ByLabel    string   `name:"by-label" env:"JOBFLEET_SIMULATE_BY_LABEL" placeholder:"KEY" help:"Also break costs down by this label."`
	Recommend  bool     `name:"recommend" env:"JOBFLEET_SIMULATE_RECOMMEND" help:"Print, per job type and spot policy, the checkpoint interval that minimises expected cost (Daly's formula)."`
	JSON       bool     `name:"json" env:"JOBFLEET_SIMULATE_JSON" help:"Print one JSON object."`
	HTML       string   `name:"html" env:"JOBFLEET_SIMULATE_HTML" type:"path" placeholder:"FILE" help:"Also write an HTML report with plots."`
	NoProgress bool     `name:"no-progress" env:"JOBFLEET_SIMULATE_NO_PROGRESS" help:"No progress bar (there is none when standard error is not a terminal)."`
	IDCol      string   `name:"id-col" env:"JOBFLEET_SIMULATE_ID_COL" placeholder:"COL" help:"CSV: column with the job id."`
	TimeCol    string   `name:"time-col" env:"JOBFLEET_SIMULATE_TIME_COL" placeholder:"COL" help:"CSV: column with the submit time, in seconds."`
	TypeCol    string   `name:"type-col" env:"JOBFLEET_SIMULATE_TYPE_COL" placeholder:"COL" help:"CSV: column naming the job type."`
	RuntimeCol string   `name:"runtime-col" env:"JOBFLEET_SIMULATE_RUNTIME_COL" placeholder:"COL" help:"CSV: column with the runtime, in seconds."`
	PeakCol    string   `name:"peak-col" env:"JOBFLEET_SIMULATE_PEAK_COL" placeholder:"COL" help:"CSV: column with the peak memory used."`
	RequestCol string   `name:"request-col" env:"JOBFLEET_SIMULATE_REQUEST_COL" placeholder:"COL" help:"CSV: column with the memory requested."`
	CPUCol     string   `name:"cpu-col" env:"JOBFLEET_SIMULATE_CPU_COL" placeholder:"COL" help:"CSV: column with the cores a job asks for (default: the policy's cpu)."`
	GPUCol     string   `name:"gpu-col" env:"JOBFLEET_SIMULATE_GPU_COL" placeholder:"COL" help:"CSV: column with the GPUs a job asks for."`
	LabelCols  []string `name:"label-cols" env:"JOBFLEET_SIMULATE_LABEL_COLS" sep:"," placeholder:"COL,..." help:"CSV: columns read as labels (the column name is the label key)."`
	Features   []string `name:"features" env:"JOBFLEET_SIMULATE_FEATURES" sep:"," placeholder:"COL,..." help:"CSV: numeric columns the predictor policy reads as features."`
	MemoryUnit string   `name:"memory-unit" env:"JOBFLEET_SIMULATE_MEMORY_UNIT" default:"1" placeholder:"SIZE" help:"CSV: the size of one unit of the memory columns, e.g. 1Ki for the KB of SWF traces."`
}

// Help is shown under the flags.
func (c *SimulateCmd) Help() string {
	return simulate.Columns + `

A policy file:

  seeds: 10
  baseline: fargate
  policies:
  - name: fargate
    platform: fargate
    sizing: {method: requested, memory: 4Gi}
  - name: karpenter-60-40
    platform: ec2
    sizing: {method: type-quantile, quantile: 0.9, buffer: 1.2}
    capacity: {spotShare: 0.6}
    checkpoint: {interval: 10m, cost: 20s, restore: 30s}

See docs/simulate.md for every field, its default and its source.`
}

// Run replays the trace and prints the report.
func (c *SimulateCmd) Run(ctx context.Context, g *Globals) error {
	file, err := simulate.LoadPolicies(c.Policies)
	if err != nil {
		return fmt.Errorf("--policies: %w", err)
	}
	if c.Seeds < 0 || c.Seeds > 1000 {
		return fmt.Errorf("--seeds: %d is not between 1 and 1000", c.Seeds)
	}
	if c.Seeds > 0 {
		file.Seeds = c.Seeds
	}
	opts := simulate.Options{LabelKey: c.ByLabel}
	if c.Warmup != "auto" {
		d, err := units.ParseDuration(c.Warmup)
		if err != nil || d < 0 {
			return fmt.Errorf("--warmup: %q is not auto or a duration such as 30d", c.Warmup)
		}
		opts.Warmup = simulate.Duration(d)
		if d == 0 {
			opts.Warmup = -1
		}
	}
	var costData fs.FS = simulate.DefaultCostData()
	if c.CostData != "" {
		costData = os.DirFS(c.CostData)
	}
	catalog, err := simulate.LoadCatalog(costData)
	if err != nil {
		return fmt.Errorf("--cost-data: %w", err)
	}
	trace, err := c.trace(ctx)
	if err != nil {
		return fmt.Errorf("--trace: %w", err)
	}
	if c.ByLabel != "" && !strings.HasPrefix(c.Trace, "s3://") && strings.HasSuffix(c.Trace, ".csv") && !slices.Contains(c.LabelCols, c.ByLabel) {
		return fmt.Errorf("--by-label %s: not a column of --label-cols (%s)", c.ByLabel, strings.Join(c.LabelCols, ","))
	}
	if f, ok := g.stderr.(*os.File); ok && !c.NoProgress && term.IsTerminal(int(f.Fd())) {
		p := mpb.New(mpb.WithOutput(g.stderr), mpb.WithWidth(40), mpb.WithRefreshRate(100*time.Millisecond))
		bar := p.AddBar(0,
			mpb.PrependDecorators(decor.Name("replaying "), decor.CountersNoUnit("%d/%d jobs")),
			mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO)))
		opts.Progress = func(done, total int64) {
			bar.SetTotal(total, false)
			bar.SetCurrent(done)
		}
		defer func() {
			bar.Abort(false)
			p.Wait()
		}()
	}
	start := time.Now()
	rep, err := simulate.Run(ctx, trace, file, catalog, opts)
	if err != nil {
		return err
	}
	g.log.Debug().Dur("took", time.Since(start)).Int("jobs", rep.Jobs).Msg("replayed")
	rep.CostData = "shipped with jobfleet (us-east-1: on-demand prices of 2026-07-20, Spot Advisor of about 2025-06, Fargate rates of 2026; see internal/simulate/costdata/README.md)"
	if c.CostData != "" {
		rep.CostData = c.CostData
	}
	if c.Recommend {
		rep.Recommendations = simulate.Recommend(file, rep)
	}
	if c.HTML != "" {
		if err := writeFile(c.HTML, func(w io.Writer) error { return simulate.WriteHTML(w, rep) }); err != nil {
			return fmt.Errorf("--html: %w", err)
		}
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return simulate.WriteText(g.stdout, rep)
}

func (c *SimulateCmd) trace(ctx context.Context) (*simulate.Trace, error) {
	if strings.HasPrefix(c.Trace, "s3://") {
		api, err := s3For(ctx, c.Trace)
		if err != nil {
			return nil, err
		}
		return simulate.LoadRecords(ctx, api, c.Trace)
	}
	info, err := os.Stat(c.Trace)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return simulate.LoadRecords(ctx, nil, c.Trace)
	}
	unit, err := units.ParseBytes(c.MemoryUnit)
	if err != nil || unit == 0 {
		return nil, fmt.Errorf("--memory-unit: %q is not a size such as 1, 1Ki or 1Mi", c.MemoryUnit)
	}
	f, err := os.Open(c.Trace)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := simulate.ReadCSV(f, simulate.CSVColumns{ID: c.IDCol, Time: c.TimeCol, Type: c.TypeCol, Runtime: c.RuntimeCol, Peak: c.PeakCol,
		Request: c.RequestCol, CPU: c.CPUCol, GPU: c.GPUCol, Labels: c.LabelCols, Features: c.Features, MemoryUnit: float64(unit)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Trace, err)
	}
	return t, nil
}

// writeFile creates a file (a report) and writes it.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
