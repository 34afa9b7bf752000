package local_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/local"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestDemo runs the embedded default with a small workload and a spot
// interruption: every job succeeds, none is lost, and an interrupted
// training job resumes from its checkpoint.
func TestDemo(t *testing.T) {
	bin := testenv.Build(t, "./cmd/jobfleet")
	var out bytes.Buffer
	sum, err := local.Run(t.Context(), local.Options{
		Jobs: 9, Interrupt: true, Concurrency: 3, Binary: bin, Out: &out,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Timeout: 5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	sum.Print(&out)
	t.Log(out.String())
	if sum.Submitted != 9 || sum.Succeeded != 9 || sum.Lost != 0 || sum.DeadLettered != 0 {
		t.Errorf("summary %+v", sum)
	}
	if sum.Interrupted == 0 || sum.Resumed == 0 {
		t.Errorf("no training job was interrupted and resumed: %+v", sum)
	}
	// It ends with one job's state and a two-step workflow.
	if sum.Status == nil || sum.Status.Status != jobfleet.StatusSucceeded || len(sum.Status.Attempts) == 0 {
		t.Errorf("the job shown: %+v", sum.Status)
	}
	if len(sum.Workflow) != 2 {
		t.Fatalf("workflow steps: %+v", sum.Workflow)
	}
	for _, step := range sum.Workflow {
		if step.State.Status != jobfleet.StatusSucceeded || step.RunningAfter != 0 || len(step.State.Outputs) == 0 {
			t.Errorf("workflow step %s: %+v, %d workers running after it", step.Name, step.State, step.RunningAfter)
		}
	}
	if sum.Workflow[1].State.Outputs["accuracy"] == "" {
		t.Errorf("the training step left no accuracy: %v", sum.Workflow[1].State.Outputs)
	}
	for _, want := range []string{"jobfleet status ", "ATTEMPT", "a two-step workflow", "workers running after it: 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	last := strings.TrimSpace(out.String())
	last = last[strings.LastIndexByte(last, '\n')+1:]
	if want := "jobfleet local: 9 submitted, 9 succeeded, 0 dead-lettered, 0 lost, "; !strings.HasPrefix(last, want) || !strings.HasSuffix(last, " resumed from checkpoint") {
		t.Errorf("last line %q", last)
	}
}
