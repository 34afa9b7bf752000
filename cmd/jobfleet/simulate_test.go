package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

// simReport is the part of simulate's JSON the tests read.
type simReport struct {
	Jobs     int    `json:"jobs"`
	Baseline string `json:"baseline"`
	Policies []struct {
		Name          string  `json:"name"`
		VsBaselinePct float64 `json:"vs_baseline_pct"`
		Cost          struct {
			Mean float64 `json:"mean"`
		} `json:"cost_usd"`
		FirstOOMRate float64 `json:"first_attempt_oom_rate"`
		Assumptions  []struct {
			Name, Value, Source string
		} `json:"assumptions"`
		ByType  []struct{ Key string } `json:"by_type"`
		ByLabel []struct{ Key string } `json:"by_label"`
	} `json:"policies"`
	Recommendations []struct {
		Policy string  `json:"policy"`
		Type   string  `json:"type"`
		Daly   float64 `json:"daly_interval_seconds"`
	} `json:"recommendations"`
}

// The claims' policy file replayed on a CSV trace: every policy reports,
// all-spot costs less than the on-demand baseline, the HTML report has
// its plots.
func TestSimulateCSV(t *testing.T) {
	t.Parallel()
	html := filepath.Join(t.TempDir(), "report.html")
	code, stdout, stderr := runCLI(t, "", "simulate", "--trace", "testdata/trace.csv", "--policies", "../../docs/simulate/claims.yaml",
		"--time-col", "submit_s", "--type-col", "user", "--runtime-col", "run_s", "--peak-col", "mem_used_kb", "--memory-unit", "1Ki",
		"--label-cols", "queue", "--by-label", "queue", "--seeds", "3", "--warmup", "7d", "--recommend", "--json", "--html", html)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep simReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, stdout)
	}
	if rep.Jobs == 0 || rep.Baseline != "fargate" || len(rep.Policies) != 6 {
		t.Fatalf("report: %+v", rep)
	}
	for _, p := range rep.Policies {
		if p.Cost.Mean <= 0 || len(p.ByType) == 0 || len(p.ByLabel) == 0 || len(p.Assumptions) < 10 {
			t.Errorf("policy %s: %+v", p.Name, p)
		}
		for _, a := range p.Assumptions {
			if a.Source == "" {
				t.Errorf("policy %s: assumption %s has no source", p.Name, a.Name)
			}
		}
	}
	if spot := rep.Policies[5]; spot.Name != "ec2-spot" || !(spot.Cost.Mean < rep.Policies[1].Cost.Mean) {
		t.Errorf("all-spot %v USD is not below on-demand EC2's %v", spot.Cost.Mean, rep.Policies[1].Cost.Mean)
	}
	if len(rep.Recommendations) == 0 || rep.Recommendations[0].Daly <= 0 {
		t.Errorf("recommendations: %+v", rep.Recommendations)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Cost per policy", "Allocated but unused memory by type", "First-attempt OOM rate by type", "Wait from submit to start", "assumptions:"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("the HTML report has no %q", want)
		}
	}
	if n := bytes.Count(page, []byte("<svg")); n != 4 {
		t.Errorf("%d plots in the HTML report, want 4", n)
	}

	code, stdout, stderr = runCLI(t, "", "simulate", "--trace", "testdata/trace.csv", "--policies", "../../docs/simulate/claims.yaml",
		"--time-col", "submit_s", "--type-col", "user", "--runtime-col", "run_s", "--peak-col", "mem_used_kb", "--memory-unit", "1Ki", "--seeds", "2", "--warmup", "7d")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"policy", "vs baseline", "slack GB-h", "cost per job by type", "assumptions:", "oom.killedAt", "Columns:", "makespan"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the table has no %q:\n%s", want, stdout)
		}
	}
}

// Run records under an S3 prefix, read from a real S3 server, as the
// workers store them.
func TestSimulateRecordsFromS3(t *testing.T) {
	s3srv := testenv.StartS3(t)
	for _, kv := range append(s3srv.Env(), "AWS_REGION="+testenv.Region, "AWS_ACCESS_KEY_ID="+testenv.AccessKey, "AWS_SECRET_ACCESS_KEY="+testenv.SecretKey) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	bucket := s3srv.CreateBucket(t)
	t0 := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	var lines bytes.Buffer
	enc := json.NewEncoder(&lines)
	for i := range 40 {
		start := t0.Add(time.Duration(i) * 10 * time.Minute)
		outcome, peak := jobfleet.OutcomeSucceeded, int64(1+i%3)<<30
		rec := jobfleet.RunRecord{JobID: "job-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Type: []string{"etl", "train"}[i%2], Attempt: 1, Outcome: outcome,
			AllocatedBytes: 4 << 30, PeakBytes: peak, StartedAt: start, EndedAt: start.Add(5 * time.Minute), DurationSecs: 300, Labels: map[string]string{"team": "ml"}}
		if err := enc.Encode(rec); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for key, body := range map[string][]byte{
		"runs/dt=2026-11-02/a.jsonl":  lines.Bytes(),
		"runs/dt=2026-11-02/b.jsonl":  []byte("{not json\n"),
		"elsewhere/dt=2026-11-02.txt": []byte("ignored"),
	} {
		if _, err := s3srv.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	policies := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policies, []byte(`
seeds: 2
policies:
- name: od
  platform: ec2
  sizing: {method: fixed, memory: 4Gi}
- name: p90
  platform: ec2
  sizing: {method: type-quantile, retrainEvery: 1h, window: 1h}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "simulate", "--trace", "s3://"+bucket+"/runs/", "--policies", policies, "--warmup", "1h", "--by-label", "team", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep simReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	// 40 jobs, the first hour's 6 history only.
	if rep.Jobs != 34 || len(rep.Policies) != 2 || rep.Policies[1].VsBaselinePct >= 0 {
		t.Errorf("report: %+v", rep)
	}
	if by := rep.Policies[0].ByLabel; len(by) != 1 || by[0].Key != "ml" {
		t.Errorf("by label: %+v", by)
	}
}

func TestSimulateFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("policies: [{name: a, platform: ec2, sizing: {method: fixed, memory: 1Gi}, capacity: {spotShare: 2}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := "../../docs/simulate/claims.yaml"
	csv := []string{"--time-col", "submit_s", "--type-col", "user", "--runtime-col", "run_s", "--peak-col", "mem_used_kb"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append([]string{"--trace", "testdata/trace.csv", "--policies", bad}, csv...), "--policies: " + bad + ": policies[0] (a): capacity.spotShare"},
		{append([]string{"--trace", "testdata/trace.csv", "--policies", good, "--warmup", "soon"}, csv...), "--warmup"},
		{append([]string{"--trace", "testdata/trace.csv", "--policies", good, "--memory-unit", "KB"}, csv...), "--memory-unit"},
		{[]string{"--trace", "testdata/trace.csv", "--policies", good, "--time-col", "submit_s"}, "--type-col is required"},
		{append([]string{"--trace", filepath.Join(dir, "missing.csv"), "--policies", good}, csv...), "--trace"},
		{append([]string{"--trace", "testdata/trace.csv", "--policies", good, "--cost-data", dir}, csv...), "--cost-data"},
		{append([]string{"--trace", "testdata/trace.csv", "--policies", good, "--warmup", "1000d"}, csv...), "pass a shorter --warmup"},
	} {
		code, _, stderr := runCLI(t, "", append([]string{"simulate"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.want)
		}
	}
}
