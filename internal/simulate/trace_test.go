package simulate

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"math"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jobfleet/jobfleet"
)

func TestReadCSV(t *testing.T) {
	csv := `id,submit,app,run,mem,req,procs,team
1,100,a,60,2048,4096,2,ml
2,50,b,30,1024,-1,1,data
3,70,a,-1,1024,-1,1,ml
4,80,a,10,-1,-1,1,ml
`
	tr, err := ReadCSV(strings.NewReader(csv), CSVColumns{ID: "id", Time: "submit", Type: "app", Runtime: "run", Peak: "mem", Request: "req", CPU: "procs", Labels: []string{"team"}, MemoryUnit: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Jobs) != 2 || tr.Skipped["no positive runtime"] != 1 || tr.Skipped["no positive peak memory"] != 1 {
		t.Fatalf("jobs %+v skipped %v", tr.Jobs, tr.Skipped)
	}
	// Sorted by submit time; -1 is a missing request.
	b, a := tr.Jobs[0], tr.Jobs[1]
	if b.ID != "2" || !math.IsNaN(b.Requested) || b.Labels["team"] != "data" {
		t.Errorf("first job %+v", b)
	}
	if a.ID != "1" || a.Peak != 2048*1024 || a.Requested != 4096*1024 || a.CPU != 2 || a.Runtime != 60 {
		t.Errorf("second job %+v", a)
	}

	for _, tc := range []struct {
		csv  string
		cols CSVColumns
		want string
	}{
		{csv, CSVColumns{Time: "submit", Type: "app", Runtime: "run"}, "--peak-col is required"},
		{csv, CSVColumns{Time: "submit", Type: "app", Runtime: "run", Peak: "memory"}, `--peak-col: no column "memory"`},
		{"t,y,r,m\n1,a,x,5\n", CSVColumns{Time: "t", Type: "y", Runtime: "r", Peak: "m"}, `line 2 column r: "x" is not a number`},
		{"t,y,r,m\n1,,3,5\n", CSVColumns{Time: "t", Type: "y", Runtime: "r", Peak: "m"}, "line 2 column y: empty job type"},
		{"t,y,r,m\n", CSVColumns{Time: "t", Type: "y", Runtime: "r", Peak: "m"}, "no usable rows"},
		{"", CSVColumns{Time: "t", Type: "y", Runtime: "r", Peak: "m"}, "empty"},
		{"t,y,r,m\n1,a,3,5\n", CSVColumns{Time: "t", Type: "y", Runtime: "r", Peak: "m", Features: []string{""}, Labels: []string{""}}, "--label-cols: an empty column name; --features: an empty column name"},
		{"t,y,r,m\n1,a,3,5\n\n2,a,x,5\n", CSVColumns{Time: "t", Type: "y", Runtime: "r", Peak: "m"}, `line 4 column r: "x" is not a number`},
	} {
		_, err := ReadCSV(strings.NewReader(tc.csv), tc.cols)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

func TestFromRecords(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rec := func(job string, attempt int, outcome jobfleet.Outcome, start, dur time.Duration, alloc, peak int64) *jobfleet.RunRecord {
		return &jobfleet.RunRecord{JobID: job, Type: "train", Attempt: attempt, Outcome: outcome, StartedAt: t0.Add(start), EndedAt: t0.Add(start + dur),
			DurationSecs: dur.Seconds(), AllocatedBytes: alloc, PeakBytes: peak, Labels: map[string]string{"team": "ml"}, Features: map[string]float64{"rows": 10}}
	}
	interrupted := rec("resumed", 1, jobfleet.OutcomeInterrupted, 0, 10*time.Minute, 4*gib, 2*gib)
	interrupted.LastCheckpointAt = t0.Add(8 * time.Minute)
	tr := FromRecords([]*jobfleet.RunRecord{
		// OOM-killed at 2 GiB, then succeeded with a 3 GiB peak.
		rec("oom-then-ok", 1, jobfleet.OutcomeOOM, time.Hour, time.Minute, 2*gib, 2*gib),
		rec("oom-then-ok", 2, jobfleet.OutcomeSucceeded, 2*time.Hour, 5*time.Minute, 3*gib, 3*gib),
		// Only ever OOM-killed: its peak is censored at the most it had.
		rec("censored", 1, jobfleet.OutcomeOOM, 0, time.Minute, 1*gib, 1*gib),
		rec("censored", 2, jobfleet.OutcomeOOM, time.Hour, 2*time.Minute, 2*gib, 2*gib),
		// Interrupted after checkpointing 8 minutes, then 5 more.
		interrupted,
		rec("resumed", 2, jobfleet.OutcomeSucceeded, time.Hour, 5*time.Minute, 4*gib, 2*gib),
		rec("failed", 1, jobfleet.OutcomeFailed, 0, time.Minute, gib, gib),
	})
	jobs := map[string]Job{}
	for _, j := range tr.Jobs {
		jobs[j.ID] = j
	}
	if len(jobs) != 3 || tr.Skipped["never succeeded or OOM-killed"] != 1 {
		t.Fatalf("jobs %v, skipped %v", jobs, tr.Skipped)
	}
	if j := jobs["oom-then-ok"]; j.Peak != 3*gib || j.Censored || j.Runtime != 300 || j.Submit != float64(t0.Add(time.Hour).Unix()) {
		t.Errorf("oom-then-ok: %+v", j)
	}
	if j := jobs["censored"]; j.Peak != 2*gib || !j.Censored || j.Runtime != 120 {
		t.Errorf("censored: %+v", j)
	}
	if j := jobs["resumed"]; j.Runtime != 13*60 || j.Labels["team"] != "ml" || len(j.Features) != 1 || j.Features[0] != 10 {
		t.Errorf("resumed: %+v", j)
	}
}

// A censored job is never taken at its recorded peak: replayed, it needs
// more than it was ever given.
func TestCensoredJobNeedsMore(t *testing.T) {
	tr := &Trace{Jobs: []Job{{ID: "c", Type: "t", Runtime: 600, Peak: 2 * gib, Censored: true, Requested: math.NaN()}}}
	f := policies(t, `
seeds: 1
policies:
- name: fixed
  platform: ec2
  sizing: {method: fixed, memory: 2Gi}
`)
	rep := run(t, tr, f, Options{})
	if rep.Censored != 1 || rep.Policies[0].FirstOOMRate != 1 {
		t.Fatalf("censored %d, first-attempt OOM rate %v: a job killed at 2 GiB must not fit in 2 GiB", rep.Censored, rep.Policies[0].FirstOOMRate)
	}
}

func TestDeterministic(t *testing.T) {
	var tr Trace
	for i := range 3000 {
		tr.Jobs = append(tr.Jobs, Job{ID: "j", Type: []string{"a", "b", "c"}[i%3], Submit: float64(i * 30), Runtime: float64(300 + i%7*600), Peak: float64(1+i%5) * gib, Requested: math.NaN()})
	}
	f := policies(t, `
seeds: 3
policies:
- name: od
  platform: ec2
  sizing: {method: type-quantile, retrainEvery: 1h, window: 6h}
- name: spot
  platform: ec2
  sizing: {method: predictor, retrainEvery: 1h, window: 6h}
  capacity: {spotShare: 0.5}
  interruptions: {model: rate, perHour: 0.5}
  checkpoint: {interval: 5m, cost: 10s}
`)
	encode := func() []byte {
		rep := run(t, &tr, f, Options{Warmup: Duration(6 * time.Hour)})
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := encode()
	if !bytes.Equal(first, encode()) {
		t.Fatal("two replays of the same trace, policies and seeds differ")
	}
	var rep Report
	if err := json.Unmarshal(first, &rep); err != nil {
		t.Fatal(err)
	}
	if spot := rep.Policies[1]; spot.Interruptions == 0 || spot.RedoneHours == 0 || spot.VsBaseline == nil || spot.VsBaseline.Lo == nil {
		t.Errorf("the spot policy: %+v", spot)
	}
}

func TestLoadCatalogErrorsNameTheCell(t *testing.T) {
	base := DefaultCostData()
	files := fstest.MapFS{}
	for _, name := range []string{fileTypes, filePrices, fileAdvisor, fileFargate} {
		b, err := fs.ReadFile(base, name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = &fstest.MapFile{Data: b}
	}
	if _, err := LoadCatalog(files); err != nil {
		t.Fatalf("the shipped data copied: %v", err)
	}
	bad := fstest.MapFS{}
	for k, v := range files {
		bad[k] = v
	}
	bad[filePrices] = &fstest.MapFile{Data: []byte("region,instance_type,usd_per_hour\nus-east-1,m5.large,cheap\n")}
	if _, err := LoadCatalog(bad); err == nil || !strings.Contains(err.Error(), "ec2-on-demand-prices.csv line 2 column usd_per_hour") {
		t.Errorf("error %v, want one naming the file, line and column", err)
	}
	delete(bad, fileFargate)
	bad[filePrices] = files[filePrices]
	if _, err := LoadCatalog(bad); err == nil || !strings.Contains(err.Error(), "fargate.json") {
		t.Errorf("error %v, want one naming fargate.json", err)
	}
	c, err := LoadCatalog(files)
	if err != nil {
		t.Fatal(err)
	}
	// The README's sanity checks.
	for name, price := range map[string]float64{"m5.large": 0.096, "g5.xlarge": 1.006, "p4d.24xlarge": 21.957642} {
		if in := c.Instance(name); in == nil || in.OnDemand != price {
			t.Errorf("%s: %+v, want %v USD/h", name, in, price)
		}
	}
}

// GPU jobs run on GPU types on EC2 and cannot run on Fargate.
func TestGPUJobs(t *testing.T) {
	tr := &Trace{Jobs: []Job{{ID: "g", Type: "train", Runtime: 3600, Peak: 8 * gib, GPUs: 1, Requested: math.NaN()}}}
	f := policies(t, `
seeds: 1
policies:
- name: ec2
  platform: ec2
  sizing: {method: fixed, memory: 10Gi}
- name: fargate
  platform: fargate
  sizing: {method: fixed, memory: 10Gi}
`)
	rep := run(t, tr, f, Options{})
	cheapest := math.Inf(1)
	for _, in := range catalog(t).Instances {
		if in.GPUs >= 1 && in.Category == "g" && in.Generation >= 5 && in.Arch == "amd64" && in.Memory >= 10*gib {
			cheapest = min(cheapest, in.OnDemand)
		}
	}
	if ec2 := rep.Policies[0]; ec2.Unplaceable != 0 || math.Abs(ec2.Cost.Mean/ec2.NodeHours-cheapest) > 1e-9 {
		t.Errorf("ec2: %v USD over %v node hours, want the cheapest GPU type's %v USD/h", ec2.Cost.Mean, ec2.NodeHours, cheapest)
	}
	if rep.Policies[1].Unplaceable != 1 || rep.Policies[1].Cost.Mean != 0 {
		t.Errorf("fargate: %+v: EKS Fargate has no GPUs", rep.Policies[1])
	}
}
