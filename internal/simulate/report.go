package simulate

import (
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/jobfleet/jobfleet/internal/plotsvg"
)

// Columns defines the report's columns, for the help and the footer.
const Columns = `Columns:
  cost           total USD over the replayed jobs (EC2 nodes from launch to removal, or Fargate pods), mean over seeds
  95% CI         Student's t interval of that mean over seeds
  vs baseline    paired difference with the baseline policy (same seeds), USD and percent, with its 95% interval
  idle           node cost no pod's share accounts for (empty or partly filled nodes); a pod bears its dominant share
                 of the node (the largest of its CPU, memory and GPU shares) for the time it held it
  node-h         node hours (Fargate: pod hours)
  cpu, mem       share of the nodes' allocatable CPU and memory that pods were given, over the nodes' lifetime
  used           share of the nodes' allocatable memory that jobs used (their peak, while they ran)
  slack GB-h     memory given to successful attempts but not used (given minus peak), GiB hours
  1st OOM        share of jobs whose first attempt was OOM-killed
  OOM cost       what the OOM-killed attempts cost
  failed         jobs OOM-killed more often than the reruns allow
  unplaced       jobs no instance type or Fargate size can hold (not run, not costed)
  interrupts     spot interruptions of running attempts; redone h: work they lost since the last checkpoint
  wait p50/p95   submit to the job's command starting (node launch, image pull, restore included)
  makespan       first submit to the last job's end`

// WriteText writes the report as tables.
func WriteText(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "trace: %d jobs of %d types over %.1f days (%d earlier jobs are history only), %d with a censored peak\n",
		rep.Jobs, rep.Types, rep.SpanDays, rep.HistoryJobs, rep.Censored)
	if len(rep.Skipped) > 0 {
		var parts []string
		for why, n := range rep.Skipped {
			parts = append(parts, fmt.Sprintf("%d %s", n, why))
		}
		slices.Sort(parts)
		fmt.Fprintf(w, "skipped: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "seeds: %d   baseline: %s   cost data: %s\n\n", rep.Seeds, rep.Baseline, rep.CostData)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tcost\t95% CI\tper job\tvs baseline\t95% CI\tidle\tnode-h\tcpu\tmem\tused\t")
	for _, r := range rep.Policies {
		vs, vsCI := "-", "-"
		if r.VsBaseline != nil {
			vs = fmt.Sprintf("%+.2f (%+.1f%%)", r.VsBaseline.Mean, r.VsBaselinePct)
			vsCI = ci(*r.VsBaseline)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%.5f\t%s\t%s\t%.2f\t%.1f\t%.2f\t%.2f\t%.2f\t\n", r.Name, r.Cost.Mean, ci(r.Cost), r.CostPerJob, vs, vsCI,
			r.IdleCost, r.NodeHours, r.CPUUtil, r.MemUtil, r.MemUsedUtil)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tslack GB-h\t1st OOM\tOOM cost\tfailed\tunplaced\tinterrupts\tredone h\twait p50\twait p95\tmakespan\t")
	for _, r := range rep.Policies {
		fmt.Fprintf(tw, "%s\t%.1f\t%.4f\t%.2f\t%.1f\t%d\t%.1f\t%.1f\t%s\t%s\t%s\t\n", r.Name, r.SlackGBh, r.FirstOOMRate, r.OOMCost, r.Failed, r.Unplaceable,
			r.Interruptions, r.RedoneHours, seconds(r.WaitP50), seconds(r.WaitP95), seconds(r.Makespan))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := groupTable(w, rep, "type", func(r *Result) []Group { return r.ByType }); err != nil {
		return err
	}
	if rep.LabelKey != "" {
		if err := groupTable(w, rep, "label "+rep.LabelKey, func(r *Result) []Group { return r.ByLabel }); err != nil {
			return err
		}
	}
	if len(rep.Recommendations) > 0 {
		fmt.Fprintln(w, "\ncheckpoint intervals that minimise expected cost (Daly), the costliest types of each spot policy:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "policy\ttype\tjobs\tmean runtime\tinterrupts/h\tcheckpoint cost\tYoung\tDaly\t\t")
		shown, more := map[string]int{}, map[string]int{}
		for _, r := range rep.Recommendations {
			if shown[r.Policy] == 10 {
				more[r.Policy]++
				continue
			}
			shown[r.Policy]++
			interval := max(time.Duration(r.Daly*float64(time.Second)).Round(time.Second), 10*time.Second) // the registry's least
			advice := fmt.Sprintf("registry: checkpoint: {interval: %s}", interval)
			switch {
			case r.Cost == 0:
				advice = "no checkpoint cost given"
			case !r.Periodic:
				advice = "longer than its jobs: few periodic checkpoints would complete"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.5f\t%s\t%s\t%s\t%s\t\n", r.Policy, r.Type, r.Jobs, seconds(r.MeanRuntime), r.Rate, seconds(r.Cost), seconds(r.Young), seconds(r.Daly), advice)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, r := range rep.Policies {
			if more[r.Name] > 0 {
				fmt.Fprintf(w, "(%s: %d more job types; --json lists them all)\n", r.Name, more[r.Name])
			}
		}
	}
	fmt.Fprintln(w, "\nassumptions:")
	for _, r := range rep.Policies {
		fmt.Fprintf(w, "  %s\n", r.Name)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, a := range r.Assumptions {
			fmt.Fprintf(tw, "    %s\t%s\t%s\n", a.Name, a.Value, a.Source)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\n%s\n", Columns)
	return err
}

// groupTable prints the cost per job of the baseline's costliest groups
// under each policy.
func groupTable(w io.Writer, rep *Report, what string, groups func(*Result) []Group) error {
	var base *Result
	for _, r := range rep.Policies {
		if r.Name == rep.Baseline {
			base = r
		}
	}
	top := groups(base)
	if len(top) == 0 {
		return nil
	}
	top = top[:min(len(top), 10)]
	fmt.Fprintf(w, "\ncost per job by %s (the baseline's %d costliest; slack GB-h and 1st OOM rate after each):\n", what, len(top))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tjobs\t", what)
	for _, r := range rep.Policies {
		fmt.Fprintf(tw, "%s\t", r.Name)
	}
	fmt.Fprintln(tw)
	for _, g := range top {
		fmt.Fprintf(tw, "%s\t%d\t", g.Key, g.Jobs)
		for _, r := range rep.Policies {
			i := slices.IndexFunc(groups(r), func(x Group) bool { return x.Key == g.Key })
			if i < 0 {
				fmt.Fprint(tw, "-\t")
				continue
			}
			x := groups(r)[i]
			fmt.Fprintf(tw, "%.4f  %.1f  %.3f\t", x.CostPerJob, x.SlackGBh, x.FirstOOMRate)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func ci(s Stat) string {
	if s.Lo == nil {
		return "-"
	}
	return fmt.Sprintf("[%.2f, %.2f]", *s.Lo, *s.Hi)
}

func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.1fd", d.Hours()/24)
	case d >= time.Hour:
		return fmt.Sprintf("%.1fh", d.Hours())
	case d >= time.Minute:
		return fmt.Sprintf("%.1fm", d.Minutes())
	case d >= 10*time.Second:
		return fmt.Sprintf("%.0fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// WriteHTML writes a self-contained page with the tables and plots: cost
// per policy split into useful work, OOM reruns and idle nodes; slack and
// first-attempt OOM rate per type; the distribution of waits.
func WriteHTML(w io.Writer, rep *Report) error {
	names := make([]string, len(rep.Policies))
	for i, r := range rep.Policies {
		names[i] = r.Name
	}
	var plots []template.HTML
	add := func(h template.HTML, err error) error {
		if err == nil {
			plots = append(plots, h)
		}
		return err
	}
	err := add(plotsvg.Render("Cost per policy", "", "USD", func(p *plot.Plot) error {
		var work, oom, idle plotter.Values
		for _, r := range rep.Policies {
			work = append(work, r.Cost.Mean-r.OOMCost-r.IdleCost)
			oom = append(oom, r.OOMCost)
			idle = append(idle, r.IdleCost)
		}
		var below *plotter.BarChart
		for i, part := range []struct {
			name string
			v    plotter.Values
		}{{"jobs", work}, {"OOM reruns", oom}, {"idle nodes", idle}} {
			b, err := plotter.NewBarChart(part.v, vg.Points(30))
			if err != nil {
				return err
			}
			b.Color = plotutil.Color(i)
			if below != nil {
				b.StackOn(below)
			}
			below = b
			p.Add(b)
			p.Legend.Add(part.name, b)
		}
		p.NominalX(names...)
		p.Legend.Top = true
		return nil
	}))
	if err != nil {
		return err
	}
	var top []string
	for _, r := range rep.Policies {
		if r.Name == rep.Baseline {
			for _, g := range r.ByType[:min(len(r.ByType), 12)] {
				top = append(top, g.Key)
			}
		}
	}
	perType := func(title, unit string, v func(Group) float64) (template.HTML, error) {
		return plotsvg.Render(title, "job type", unit, func(p *plot.Plot) error {
			width := vg.Points(40 / float64(len(rep.Policies)))
			for i, r := range rep.Policies {
				var vals plotter.Values
				for _, key := range top {
					x := 0.0
					if k := slices.IndexFunc(r.ByType, func(g Group) bool { return g.Key == key }); k >= 0 {
						x = v(r.ByType[k])
					}
					vals = append(vals, x)
				}
				b, err := plotter.NewBarChart(vals, width)
				if err != nil {
					return err
				}
				b.Color = plotutil.Color(i)
				b.Offset = width * vg.Length(float64(i)-float64(len(rep.Policies)-1)/2)
				p.Add(b)
				p.Legend.Add(r.Name, b)
			}
			p.NominalX(top...)
			p.Legend.Top = true
			return nil
		})
	}
	if len(top) > 0 {
		if err := add(perType("Allocated but unused memory by type", "GiB hours", func(g Group) float64 { return g.SlackGBh })); err != nil {
			return err
		}
		if err := add(perType("First-attempt OOM rate by type", "share of jobs", func(g Group) float64 { return g.FirstOOMRate })); err != nil {
			return err
		}
	}
	var args []any
	for _, r := range rep.Policies {
		if len(r.WaitQuantiles) == 0 {
			continue // nothing ran
		}
		xys := make(plotter.XYs, len(r.WaitQuantiles))
		for q, v := range r.WaitQuantiles {
			xys[q].X, xys[q].Y = v, float64(q)/100
		}
		args = append(args, r.Name, xys)
	}
	if len(args) > 0 {
		if err := add(plotsvg.Render("Wait from submit to start", "seconds", "share of jobs", func(p *plot.Plot) error {
			return plotutil.AddLines(p, args...)
		})); err != nil {
			return err
		}
	}
	var text strings.Builder
	if err := WriteText(&text, rep); err != nil {
		return err
	}
	return page.Execute(w, map[string]any{"Text": text.String(), "Plots": plots})
}

var page = template.Must(template.New("simulate").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>jobfleet simulate</title>
<style>body{font-family:sans-serif;margin:2em;max-width:80em} pre{font-size:12px;overflow-x:auto}</style></head>
<body><h1>jobfleet simulate</h1>
{{range .Plots}}{{.}}
{{end}}
<h2>Tables</h2>
<pre>{{.Text}}</pre>
</body></html>
`))
