package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

// useSQS points the AWS SDK of in-process commands at the test emulator.
func useSQS(t *testing.T) *testenv.SQS {
	t.Helper()
	sqs := testenv.StartSQS(t)
	for _, kv := range sqs.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return sqs
}

// TestPublishJSONL publishes 1,000 jobs from a JSON Lines file and receives
// every one back, intact, with its attributes.
func TestPublishJSONL(t *testing.T) {
	sqs := useSQS(t)
	url := sqs.CreateQueue(t, "intake-", nil)

	const n = 1000
	var lines strings.Builder
	want := map[string]*jobfleet.Job{}
	for i := range n {
		job := &jobfleet.Job{
			Version:  jobfleet.Version,
			ID:       fmt.Sprintf("job-%04d", i),
			Type:     []string{"export", "aggregate", "train"}[i%3],
			Params:   json.RawMessage(fmt.Sprintf(`{"shard":%d}`, i)),
			Features: map[string]float64{"rows": float64(i * 1000), "entities": float64(i % 17)},
			Priority: i % 10,
		}
		want[job.ID] = job
		data, err := json.Marshal(job)
		if err != nil {
			t.Fatal(err)
		}
		lines.Write(data)
		lines.WriteByte('\n')
	}
	file := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(file, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	code, _, stderr := runCLI(t, "", "publish", "--queue", url, "--file", file, "--log-format", "json")
	if code != 0 {
		t.Fatalf("publish exited %d:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, `"published":1000`) {
		t.Errorf("publish did not report 1000 published jobs:\n%s", stderr)
	}

	got := sqs.Receive(t, url, n, true)
	seen := map[string]bool{}
	for _, m := range got {
		job, err := jobfleet.Decode([]byte(aws.ToString(m.Body)))
		if err != nil {
			t.Fatalf("received an invalid job: %v", err)
		}
		if seen[job.ID] {
			t.Fatalf("job %s received twice", job.ID)
		}
		seen[job.ID] = true
		w, ok := want[job.ID]
		if !ok {
			t.Fatalf("received unknown job %s", job.ID)
		}
		wantBody, _ := json.Marshal(w)
		if aws.ToString(m.Body) != string(wantBody) {
			t.Errorf("job %s body = %s, want %s", job.ID, aws.ToString(m.Body), wantBody)
		}
		if got := aws.ToString(m.MessageAttributes[jobfleet.AttrType].StringValue); got != w.Type {
			t.Errorf("job %s type attribute = %q, want %q", job.ID, got, w.Type)
		}
		// Runs and attempts are jobfleet's to set, when it forwards a job.
		if _, ok := m.MessageAttributes[jobfleet.AttrAttempt]; ok {
			t.Errorf("job %s carries an attempt attribute", job.ID)
		}
	}
	if len(seen) != n {
		t.Fatalf("received %d distinct jobs, want %d", len(seen), n)
	}
	if visible, inFlight := sqs.Depth(t, url); visible+inFlight != 0 {
		t.Errorf("queue holds %d more messages than were published", visible+inFlight)
	}
}

func TestPublishFromFlagsAndStdin(t *testing.T) {
	sqs := useSQS(t)
	url := sqs.CreateQueue(t, "intake-", nil)
	name := url[strings.LastIndexByte(url, '/')+1:]

	// One job from flags, with the queue given by name.
	code, stdout, stderr := runCLI(t, "", "publish", "--queue", name, "--type", "train", "--id", "flag-job",
		"--params", `{"epochs":3}`, "--feature", "rows=1e6,model_params=350000000", "--priority", "7", "--label", "team=search,user=ana", "--label", "step=train", "--print-ids")
	if code != 0 {
		t.Fatalf("publish exited %d:\n%s", code, stderr)
	}
	if strings.TrimSpace(stdout) != "flag-job" {
		t.Errorf("--print-ids printed %q, want flag-job", stdout)
	}
	// Two jobs as JSON Lines on standard input.
	stdin := `{"version":1,"id":"stdin-1","type":"export"}` + "\n\n" + `{"version":1,"id":"stdin-2","type":"export","features":{"rows":5}}` + "\n"
	if code, _, stderr := runCLI(t, stdin, "publish", "--queue", url); code != 0 {
		t.Fatalf("publish from stdin exited %d:\n%s", code, stderr)
	}

	jobs := map[string]*jobfleet.Job{}
	for _, m := range sqs.Receive(t, url, 3, true) {
		job, err := jobfleet.Decode([]byte(aws.ToString(m.Body)))
		if err != nil {
			t.Fatal(err)
		}
		jobs[job.ID] = job
	}
	flag := jobs["flag-job"]
	if flag == nil || flag.Type != "train" || flag.Priority != 7 || flag.Features["model_params"] != 3.5e8 || string(flag.Params) != `{"epochs":3}` {
		t.Errorf("job from flags = %+v", flag)
	} else if want := map[string]string{"team": "search", "user": "ana", "step": "train"}; !maps.Equal(flag.Labels, want) {
		t.Errorf("job from flags has labels %v, want %v", flag.Labels, want)
	}
	if jobs["stdin-1"] == nil || jobs["stdin-2"].Features["rows"] != 5 {
		t.Errorf("jobs from stdin = %v", jobs)
	}
}

func TestPublishRejectsInvalidInput(t *testing.T) {
	sqs := useSQS(t)
	url := sqs.CreateQueue(t, "intake-", nil)
	stdin := strings.Join([]string{
		`{"version":1,"id":"good-1","type":"export"}`,
		`{"version":1,"id":"bad-1","type":"export","features":{"rows":-4}}`,
		`{"version":1,"id":"good-2","type":"export"}`,
		`{"version":1,"id":"good-1","type":"export"}`,
		`not json`,
	}, "\n")

	code, _, stderr := runCLI(t, stdin, "publish", "--queue", url)
	if code == 0 {
		t.Fatal("publish succeeded with invalid input")
	}
	for _, want := range []string{"3 invalid jobs, nothing published", "standard input:2: invalid job message: features.rows: invalid feature", `standard input:4: job id "good-1" repeats line 1`, "standard input:5: invalid job message: malformed JSON"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if visible, _ := sqs.Depth(t, url); visible != 0 {
		t.Fatalf("%d messages published from invalid input", visible)
	}

	code, _, stderr = runCLI(t, stdin, "publish", "--queue", url, "--skip-invalid")
	if code != 0 {
		t.Fatalf("publish --skip-invalid exited %d:\n%s", code, stderr)
	}
	got := sqs.Receive(t, url, 2, true)
	ids := []string{}
	for _, m := range got {
		job, _ := jobfleet.Decode([]byte(aws.ToString(m.Body)))
		ids = append(ids, job.ID)
	}
	if len(ids) != 2 || !strings.Contains(strings.Join(ids, ","), "good-1") || !strings.Contains(strings.Join(ids, ","), "good-2") {
		t.Errorf("published %v, want good-1 and good-2", ids)
	}
}
