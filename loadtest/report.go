package loadtest

import (
	"html/template"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"

	"github.com/jobfleet/jobfleet/internal/plotsvg"
)

// WriteReport writes a self-contained HTML page with the result and plots
// of throughput and latency over time, the plain loop beside the
// dispatcher.
func WriteReport(w io.Writer, res *Result) error {
	throughput, err := plotsvg.Render("Jobs forwarded per second", "seconds", "jobs/s", func(p *plot.Plot) error {
		return plotutil.AddLinePoints(p, "dispatcher", points(res.Timeline, func(pt Point) float64 { return float64(pt.Jobs) }),
			"plain loop", points(res.CeilingTimeline, func(pt Point) float64 { return float64(pt.Jobs) }))
	})
	if err != nil {
		return err
	}
	latency, err := plotsvg.Render("Publish-to-class-queue latency", "seconds", "ms", func(p *plot.Plot) error {
		return plotutil.AddLinePoints(p,
			"dispatcher p50", points(res.Timeline, func(pt Point) float64 { return pt.P50Millis }),
			"dispatcher p99", points(res.Timeline, func(pt Point) float64 { return pt.P99Millis }))
	})
	if err != nil {
		return err
	}
	return page.Execute(w, map[string]any{"R": res, "Throughput": throughput, "Latency": latency})
}

func points(tl []Point, y func(Point) float64) plotter.XYs {
	xys := make(plotter.XYs, len(tl))
	for i, pt := range tl {
		xys[i].X, xys[i].Y = float64(pt.Second), y(pt)
	}
	return xys
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>jobfleet load test</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}
table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}</style></head><body>
<h1>jobfleet load test</h1>
<p>{{.R.Jobs}} jobs{{if .R.Chaos}}, with the dispatcher killed and restarted {{.R.Restarts}} time(s){{end}}.</p>
<table>
<tr><th></th><th>dispatcher</th><th>plain loop (ceiling)</th></tr>
<tr><td>jobs per second</td><td>{{printf "%.0f" .R.DispatchedPerSec}}</td><td>{{printf "%.0f" .R.CeilingPerSec}}</td></tr>
<tr><td>SQS calls per job</td><td>{{printf "%.3f" .R.SQSCallsPerJob}}</td><td>{{printf "%.3f" .R.CeilingCalls}}</td></tr>
<tr><td>p50 latency, ms</td><td>{{printf "%.0f" .R.P50LatencyMs}}</td><td>{{printf "%.0f" .R.CeilingP50Ms}}</td></tr>
<tr><td>p99 latency, ms</td><td>{{printf "%.0f" .R.P99LatencyMs}}</td><td>{{printf "%.0f" .R.CeilingP99Ms}}</td></tr>
<tr><td>lost</td><td>{{.R.Lost}}</td><td></td></tr>
<tr><td>duplicated</td><td>{{.R.Duplicated}}</td><td></td></tr>
</table>
{{.Throughput}}
{{.Latency}}
</body></html>
`))
