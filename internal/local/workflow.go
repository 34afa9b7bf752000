package local

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/jobview"
)

// WorkflowStep is one step of the demo's two-step workflow: a job
// submitted, waited for and read back, as `jobfleet submit --wait` does.
type WorkflowStep struct {
	Name  string
	State *jobfleet.JobState
	// Took is how long the step waited for its job; RunningAfter the
	// worker processes still running once it ended.
	Took         time.Duration
	RunningAfter int
}

// runWorkflow runs a two-step workflow on the demo's types: prepare data
// (export), then train on what it produced, each step waiting for its job
// as a workflow engine's step would, with nothing left running between.
func runWorkflow(ctx context.Context, api *sqs.Client, intake string, store contract.Store, exec *executor) ([]WorkflowStep, error) {
	run := time.Now().UTC().Format("20060102-150405")
	pub := jobfleet.NewPublisher(api, intake)
	step := func(name string, job *jobfleet.Job) (WorkflowStep, error) {
		start := time.Now()
		job.Version, job.ID = jobfleet.Version, "workflow-"+run+"-"+name
		job.Labels = map[string]string{"workflow": "demo-" + run, "step": name}
		if err := pub.Publish(ctx, job); err != nil {
			return WorkflowStep{}, err
		}
		st, err := jobview.Wait(ctx, store, job.ID, 2*time.Second, nil)
		if err != nil {
			return WorkflowStep{}, fmt.Errorf("workflow step %s: %w", name, err)
		}
		if st.Status != jobfleet.StatusSucceeded {
			return WorkflowStep{}, fmt.Errorf("workflow step %s %s: %s", name, st.Status, st.Reason)
		}
		// The worker exits once its job ended; give it the moment it takes.
		running := 0
		for deadline := time.Now().Add(30 * time.Second); ; {
			running = 0
			for _, n := range exec.Running() {
				running += n
			}
			if running == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		return WorkflowStep{Name: name, State: st, Took: time.Since(start), RunningAfter: running}, nil
	}
	prepare, err := step("prepare", &jobfleet.Job{Type: "export", Features: map[string]float64{"rows": 200_000}})
	if err != nil {
		return nil, err
	}
	params := fmt.Sprintf(`{"data": %q, "learning_rate": 0.03}`, prepare.State.Outputs["sha256"])
	train, err := step("train", &jobfleet.Job{Type: "train", Params: []byte(params), Features: map[string]float64{"model_params": 200_000, "epochs": 3}})
	if err != nil {
		return nil, err
	}
	return []WorkflowStep{prepare, train}, nil
}

// printWorkflow writes the workflow's steps.
func printWorkflow(w io.Writer, steps []WorkflowStep) {
	fmt.Fprintf(w, "\na two-step workflow (prepare -> train), each step waiting for its job as `jobfleet submit --wait` does:\n")
	for _, s := range steps {
		fmt.Fprintf(w, "  %-8s %-40s %s in %s, outputs %s; workers running after it: %d\n",
			s.Name, s.State.JobID, s.State.Status, s.Took.Round(100*time.Millisecond), jobview.FormatMap(s.State.Outputs), s.RunningAfter)
	}
}

// printStatus writes one job's state as `jobfleet status` does.
func printStatus(w io.Writer, st *jobfleet.JobState) {
	fmt.Fprintf(w, "\njobfleet status %s\n", st.JobID)
	var b strings.Builder
	_ = jobview.Print(&b, st, false)
	for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
}
