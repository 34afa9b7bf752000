package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

const workflowTypes = `
  - {name: prepare, image: x, command: [TESTJOB, count, "10", "50", LOGS], pool: cpu, cpu: 100m,
     memory: {default: 64Mi}}
  - {name: train, image: x, command: [TESTJOB, count, "120", "50", LOGS], pool: gpu, cpu: 100m, gpu: {count: 1},
     memory: {default: 256Mi}, checkpoint: {interval: 10s}}
  - {name: evaluate, image: x, command: [TESTJOB, count, "5", "50", LOGS], pool: cpu, cpu: 100m,
     memory: {default: 64Mi}}
  - {name: sleeper, image: x, command: [TESTJOB, count, "100000", "100", LOGS], pool: cpu, cpu: 100m,
     memory: {default: 64Mi}}
`

// argoStep is the command of deploy/argo/jobfleet-job.yaml's submit step,
// with its outputs' paths: what Argo's workflow-controller would run in the
// step's pod.
type argoStep struct {
	command []string
	outputs map[string]string // output parameter -> path
}

func loadArgoStep(t *testing.T) *argoStep {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "deploy", "argo", "jobfleet-job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var wt struct {
		Spec struct {
			Templates []struct {
				Name    string `json:"name"`
				Outputs struct {
					Parameters []struct {
						Name      string `json:"name"`
						ValueFrom struct {
							Path string `json:"path"`
						} `json:"valueFrom"`
					} `json:"parameters"`
				} `json:"outputs"`
				Container struct {
					Command []string `json:"command"`
					Args    []string `json:"args"`
				} `json:"container"`
			} `json:"templates"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &wt); err != nil {
		t.Fatal(err)
	}
	for _, tmpl := range wt.Spec.Templates {
		if tmpl.Name != "submit" {
			continue
		}
		step := &argoStep{command: append(tmpl.Container.Command, tmpl.Container.Args...), outputs: map[string]string{}}
		for _, p := range tmpl.Outputs.Parameters {
			step.outputs[p.Name] = p.ValueFrom.Path
		}
		return step
	}
	t.Fatal("no submit template")
	return nil
}

// run runs the step as Argo would, with its inputs substituted, the
// jobfleet binary for /jobfleet and dir for the pod's /tmp/jobfleet
// volume; it returns the exit code and the output parameters.
func (a *argoStep) run(t *testing.T, s *stack, dir string, inputs map[string]string) (int, map[string]string) {
	t.Helper()
	vars := []string{"{{workflow.name}}", "e2e-workflow", "/tmp/jobfleet", dir}
	for k, v := range inputs {
		vars = append(vars, "{{inputs.parameters."+k+"}}", v)
	}
	r := strings.NewReplacer(vars...)
	args := make([]string, len(a.command))
	for i, arg := range a.command {
		args[i] = r.Replace(arg)
		if strings.Contains(args[i], "{{") {
			t.Fatalf("the step's %q has a variable the test did not set", arg)
		}
	}
	cmd := exec.CommandContext(t.Context(), s.jobfleet, args[1:]...)
	// The ConfigMap jobfleet-submit's settings.
	cmd.Env = append(append(os.Environ(), s.sqs.Env()...), s.s3.Env()...)
	cmd.Env = append(cmd.Env, "JOBFLEET_QUEUE="+s.intake, "JOBFLEET_BUCKET="+s.bucket, "JOBFLEET_PREFIX=jobfleet", "JOBFLEET_LOG_FORMAT=json")
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	outputs := map[string]string{}
	for name, path := range a.outputs {
		data, err := os.ReadFile(r.Replace(path))
		if err == nil {
			outputs[name] = string(data)
		}
	}
	t.Logf("step %s exited %d", inputs["id"], code)
	if code != 0 {
		t.Logf("%s", out)
	}
	return code, outputs
}

// TestWorkflowLeavesNothingBetweenSteps runs a three-step workflow, a GPU
// training between a preparation and an evaluation, through the real
// stack, with the commands of deploy/argo/jobfleet-job.yaml's step as
// Argo's workflow-controller would run them (the controller itself is not
// built here; see docs/testing.md). Each step waits for its job; between
// steps no job pod runs, no Job is active and, after Karpenter's
// consolidation, no node is left.
func TestWorkflowLeavesNothingBetweenSteps(t *testing.T) {
	s := setup(t)
	s.announce(t)
	s.dispatch(t, s.registry(t, workflowTypes))
	step := loadArgoStep(t)
	steps := []struct {
		typ, want string
		gpu       bool
	}{{"prepare", "10", false}, {"train", "120", true}, {"evaluate", "5", false}}
	for i, st := range steps {
		id := "wf-" + st.typ
		code, outputs := step.run(t, s, t.TempDir(), map[string]string{
			"type": st.typ, "id": id, "params": "{}", "features": "", "labels": "team=ml", "priority": "0", "timeout": "5m", "metric": "count",
		})
		if code != 0 {
			t.Fatalf("step %s exited %d", st.typ, code)
		}
		var result jobfleet.JobState
		if err := json.Unmarshal([]byte(outputs["result"]), &result); err != nil || result.Status != jobfleet.StatusSucceeded {
			t.Fatalf("step %s: result %v %q", st.typ, err, outputs["result"])
		}
		if outputs["metric"] != st.want {
			t.Errorf("step %s: metric output %q, want %q", st.typ, outputs["metric"], st.want)
		}
		if result.Labels["workflow"] != "e2e-workflow" || result.Labels["step"] != id || result.Labels["team"] != "ml" {
			t.Errorf("step %s: labels %v", st.typ, result.Labels)
		}
		last := result.Attempts[len(result.Attempts)-1]
		// The dispatcher records where the training ran (six seconds) from
		// its node: the pools launch spot and on-demand, so the worker
		// could not tell. The other steps end within a second.
		await(t, 30*time.Second, "step "+st.typ+"'s placement in its state", func(ctx context.Context) (bool, error) {
			if !st.gpu {
				return true, nil
			}
			cur, _, err := s.store().ReadRun(ctx, id)
			if err != nil {
				return false, err
			}
			a := cur.Attempts[len(cur.Attempts)-1]
			node := s.node(t, a.Node)
			return a.CapacityType == node.CapacityType && a.InstanceType == node.InstanceType && a.CapacityType != "", nil
		})
		node := s.node(t, last.Node)
		if onGPU := node.NodePool == "jobfleet-gpu" || node.GPUs > 0; onGPU != st.gpu {
			t.Errorf("step %s ran on %s %+v: on a GPU node = %v, want %v", st.typ, last.Node, node, onGPU, st.gpu)
		}
		if i == len(steps)-1 {
			break
		}
		// Between steps: nothing runs, and the nodes go.
		var state string
		await(t, 3*time.Minute, "the cluster to empty after step "+st.typ, func(ctx context.Context) (bool, error) {
			pods, err := s.runningPods(ctx)
			if err != nil {
				return false, err
			}
			active, err := s.activeJobs(ctx)
			if err != nil {
				return false, err
			}
			claims, err := s.cluster.Dynamic.Resource(testenv.NodeClaims).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			if now := fmt.Sprintf("running pods %d, active Jobs %d, NodeClaims %d", len(pods), active, len(claims.Items)); now != state {
				state = now
				t.Log(state)
			}
			return len(pods) == 0 && active == 0 && len(claims.Items) == 0, nil
		})
	}
	// One event per job end.
	for _, st := range steps {
		n := 0
		for _, p := range s.sns.Published(s.events) {
			var e jobfleet.Event
			if json.Unmarshal([]byte(p.Message), &e) == nil && e.JobID == "wf-"+st.typ {
				n++
				if e.Status != jobfleet.StatusSucceeded || p.Attributes["workflow"] != "e2e-workflow" {
					t.Errorf("event of %s: %+v %v", st.typ, e, p.Attributes)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d events for the %s step, want 1", n, st.typ)
		}
	}
}

// TestCancelAndTaskTokens cancels a running job (its pod goes, nothing is
// retried) and a queued one (it never runs), and runs a job for a Step
// Functions task token, whose callbacks reach a local Step Functions
// endpoint.
func TestCancelAndTaskTokens(t *testing.T) {
	s := setup(t)
	s.announce(t)
	s.dispatch(t, s.registry(t, workflowTypes))
	cli := func(args ...string) (int, string) {
		cmd := exec.CommandContext(t.Context(), s.jobfleet, args...)
		cmd.Env = append(append(os.Environ(), s.sqs.Env()...), s.s3.Env()...)
		cmd.Env = append(cmd.Env, "JOBFLEET_QUEUE="+s.intake, "JOBFLEET_BUCKET="+s.bucket, "JOBFLEET_LOG_FORMAT=json")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	state := func(ctx context.Context, id string) (*contract.Run, error) {
		cur, _, err := s.store().ReadRun(ctx, id)
		if errors.Is(err, contract.ErrNotFound) {
			return nil, nil
		}
		return cur, err
	}

	// A running job.
	if code, out := cli("submit", "--type", "sleeper", "--id", "cancel-running"); code != 0 {
		t.Fatalf("submit: %d\n%s", code, out)
	}
	await(t, 2*time.Minute, "the job to run in its pod", func(ctx context.Context) (bool, error) {
		pods, err := s.runningPods(ctx)
		if err != nil {
			return false, err
		}
		cur, err := state(ctx, "cancel-running")
		return len(pods) == 1 && cur != nil && cur.Status == jobfleet.StatusRunning, err
	})
	if code, out := cli("cancel", "cancel-running"); code != 0 {
		t.Fatalf("cancel: %d\n%s", code, out)
	}
	if code, out := cli("wait", "cancel-running", "--timeout", "2m"); code != 2 {
		t.Fatalf("wait on the cancelled job: exit %d, want 2\n%s", code, out)
	}
	await(t, time.Minute, "the cancelled job's pod to go", func(ctx context.Context) (bool, error) {
		pods, err := s.runningPods(ctx)
		return len(pods) == 0, err
	})
	s.awaitRuns(t, time.Minute, "the cancelled attempt's record", func(runs []jobfleet.RunRecord) bool { return len(runs) >= 1 })
	if r := runsOf(s.runs)["cancel-running"]; len(r) != 1 || r[0].Outcome != jobfleet.OutcomeCancelled {
		t.Errorf("the cancelled job's runs: %+v", r)
	}

	// A queued job: cancelled before the dispatcher receives its message.
	body, _ := jobfleet.Encode(&jobfleet.Job{Version: 1, ID: "cancel-queued", Type: "sleeper"})
	if _, err := s.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(s.intake), MessageBody: aws.String(string(body)), DelaySeconds: 3}); err != nil {
		t.Fatal(err)
	}
	if code, out := cli("cancel", "cancel-queued"); code != 0 {
		t.Fatalf("cancel: %d\n%s", code, out)
	}

	// A job for a Step Functions task token.
	s.sfn.Issue("token-e2e")
	if err := jobfleet.NewPublisher(s.sqs.Client, s.intake).Publish(t.Context(), &jobfleet.Job{Version: 1, ID: "sfn-e2e", Type: "evaluate", TaskToken: "token-e2e"}); err != nil {
		t.Fatal(err)
	}
	await(t, 2*time.Minute, "the task token's callback", func(ctx context.Context) (bool, error) {
		cur, err := state(ctx, "sfn-e2e")
		return cur != nil && cur.TaskAnswered, err
	})
	var successes int
	for _, c := range s.sfn.Calls("token-e2e") {
		switch {
		case c.Action == "SendTaskSuccess" && c.Accepted:
			successes++
			var e jobfleet.Event
			if err := json.Unmarshal([]byte(c.Output), &e); err != nil || e.Outputs["count"] != "5" {
				t.Errorf("the task's output: %v %s", err, c.Output)
			}
		case c.Action == "SendTaskHeartbeat":
		default:
			t.Errorf("unexpected callback %+v", c)
		}
	}
	if successes != 1 {
		t.Errorf("%d SendTaskSuccess calls, want 1", successes)
	}

	// The queued job's message reaches the dispatcher, which drops it unrun
	// and announces the cancel; then nothing is left in intake.
	await(t, time.Minute, "the queued job's message to be dropped", func(ctx context.Context) (bool, error) {
		for _, p := range s.sns.Published(s.events) {
			if strings.Contains(p.Message, `"job_id":"cancel-queued"`) {
				visible, inFlight := s.sqs.Depth(t, s.intake)
				return visible+inFlight == 0, nil
			}
		}
		return false, nil
	})
	cur, err := state(t.Context(), "cancel-queued")
	if err != nil || cur == nil || cur.Status != jobfleet.StatusCancelled || cur.Run != "" || len(cur.Attempts) != 0 {
		t.Errorf("the job cancelled while queued: %+v, %v", cur, err)
	}
	if err := s.receiveRuns(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.runs {
		if r.JobID == "cancel-queued" || (r.JobID == "cancel-running" && r.Attempt > 1) {
			t.Errorf("a cancelled job ran: %+v", r)
		}
	}
	if dead := s.receive(t.Context(), s.dead); len(dead) > 0 {
		t.Errorf("%d dead-lettered messages: %s", len(dead), aws.ToString(dead[0].Body))
	}
	// One event per job end: the two cancels and the task token's job.
	ends := map[string]int{}
	for _, p := range s.sns.Published(s.events) {
		var e jobfleet.Event
		if err := json.Unmarshal([]byte(p.Message), &e); err != nil {
			t.Fatal(err)
		}
		ends[e.JobID+" "+string(e.Status)]++
	}
	for _, want := range []string{"cancel-running cancelled", "cancel-queued cancelled", "sfn-e2e succeeded"} {
		if ends[want] != 1 {
			t.Errorf("%d events %q, want 1 (all: %v)", ends[want], want, ends)
		}
	}
}
