package dispatcher

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobfleet/jobfleet/dispatcher/interruption"
)

// TestDashboardQueriesMetricsThatExist: every metric and label the chart's
// Grafana dashboard queries is one the dispatcher registers, so a renamed
// metric cannot leave a panel silently empty.
func TestDashboardQueriesMetricsThatExist(t *testing.T) {
	t.Parallel()
	reg := &recordingRegisterer{Registerer: prometheus.NewRegistry()}
	newMetrics(reg)
	interruption.NewMetrics(reg)
	// Every metric registered, with its labels, from its description.
	labels := map[string][]string{}
	for _, c := range reg.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			name, vars := describe(d)
			labels[name] = vars
		}
	}
	if len(labels) < 10 {
		t.Fatalf("found %d metrics; the registry walk is broken", len(labels))
	}

	data, err := os.ReadFile("../deploy/chart/jobfleet/dashboards/jobfleet.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	metricRe := regexp.MustCompile(`jobfleet_[a-z_]+`)
	byRe := regexp.MustCompile(`by \(([^)]*)\)`)
	selRe := regexp.MustCompile(`\{([a-z_]+)=`)
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, m := range metricRe.FindAllString(target.Expr, -1) {
				name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				vars, ok := labels[name]
				if !ok {
					t.Errorf("panel %q queries %s, which the dispatcher does not register", p.Title, m)
					continue
				}
				var used []string
				for _, by := range byRe.FindAllStringSubmatch(target.Expr, -1) {
					for _, l := range strings.Split(by[1], ",") {
						if l = strings.TrimSpace(l); l != "le" {
							used = append(used, l)
						}
					}
				}
				for _, sel := range selRe.FindAllStringSubmatch(target.Expr, -1) {
					used = append(used, sel[1])
				}
				for _, l := range used {
					if !slices.Contains(vars, l) {
						t.Errorf("panel %q uses label %q, which %s does not have (it has %v)", p.Title, l, name, vars)
					}
				}
			}
		}
	}
}

// recordingRegisterer keeps what is registered through it.
type recordingRegisterer struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var descRe = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// describe reads a metric's name and variable labels from its description.
func describe(d *prometheus.Desc) (string, []string) {
	m := descRe.FindStringSubmatch(d.String())
	if m == nil {
		return d.String(), nil
	}
	var vars []string
	for _, v := range strings.Split(m[2], ",") {
		if v = strings.TrimSpace(v); v != "" {
			vars = append(vars, v)
		}
	}
	return m[1], vars
}
