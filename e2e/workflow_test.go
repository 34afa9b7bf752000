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
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
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

// argoWorkflow runs three jobfleet steps through deploy/argo/jobfleet-job.yaml
// (prepare, a GPU training, evaluate), each followed by a suspended
// "settle" step the test resumes once it has checked the cluster.
const argoWorkflow = `
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: train-
spec:
  entrypoint: main
  serviceAccountName: argo-step
  podGC: {strategy: OnPodSuccess}
  arguments:
    parameters:
      - {name: jobfleet-image, value: "jobfleet:e2e"}
  templates:
    - name: main
      steps:
        - - name: prepare
            templateRef: {name: jobfleet-job, template: submit}
            arguments: {parameters: [{name: type, value: prepare}, {name: id, value: "{{workflow.uid}}-prepare"}, {name: labels, value: team=ml}, {name: timeout, value: 5m}, {name: metric, value: count}]}
        - - {name: settle-1, template: settle}
        - - name: train
            templateRef: {name: jobfleet-job, template: submit}
            arguments: {parameters: [{name: type, value: train}, {name: id, value: "{{workflow.uid}}-train"}, {name: labels, value: team=ml}, {name: timeout, value: 5m}, {name: metric, value: count}]}
        - - {name: settle-2, template: settle}
        - - name: evaluate
            templateRef: {name: jobfleet-job, template: submit}
            arguments: {parameters: [{name: type, value: evaluate}, {name: id, value: "{{workflow.uid}}-evaluate"}, {name: labels, value: team=ml}, {name: timeout, value: 5m}, {name: metric, value: count}]}
    - name: settle
      suspend: {}
`

// argoNode is a node of a Workflow's status.
type argoNode struct {
	DisplayName string `json:"displayName"`
	Type        string `json:"type"`
	Phase       string `json:"phase"`
	Message     string `json:"message"`
	Outputs     struct {
		Parameters []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"parameters"`
		ExitCode string `json:"exitCode"`
	} `json:"outputs"`
}

func (n argoNode) output(name string) string {
	for _, p := range n.Outputs.Parameters {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// workflowNodes reads a Workflow's phase and nodes by display name.
func (s *stack) workflowNodes(ctx context.Context, name string) (*unstructured.Unstructured, string, map[string]argoNode, error) {
	wf, err := s.cluster.Dynamic.Resource(testenv.Workflows).Namespace(s.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, "", nil, err
	}
	phase, _, _ := unstructured.NestedString(wf.Object, "status", "phase")
	raw, _, _ := unstructured.NestedMap(wf.Object, "status", "nodes")
	data, err := json.Marshal(raw)
	if err != nil {
		return nil, "", nil, err
	}
	var byID map[string]argoNode
	if err := json.Unmarshal(data, &byID); err != nil {
		return nil, "", nil, err
	}
	nodes := map[string]argoNode{}
	for _, n := range byID {
		nodes[n.DisplayName] = n
	}
	return wf, phase, nodes, nil
}

// resume resumes a Workflow's suspended step as `argo resume` does: it
// marks the active suspend node succeeded.
func (s *stack) resume(t *testing.T, name string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wf, err := s.cluster.Dynamic.Resource(testenv.Workflows).Namespace(s.ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		nodes, _, _ := unstructured.NestedMap(wf.Object, "status", "nodes")
		resumed := false
		for id, raw := range nodes {
			n, ok := raw.(map[string]any)
			if !ok || n["type"] != "Suspend" || n["phase"] != "Running" {
				continue
			}
			n["phase"], n["finishedAt"] = "Succeeded", time.Now().UTC().Format(time.RFC3339)
			nodes[id] = n
			resumed = true
		}
		if !resumed {
			return errors.New("no suspended step")
		}
		if err := unstructured.SetNestedMap(wf.Object, nodes, "status", "nodes"); err != nil {
			return err
		}
		_, err = s.cluster.Dynamic.Resource(testenv.Workflows).Namespace(s.ns).Update(t.Context(), wf, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("resuming workflow %s: %v", name, err)
	}
}

// argoSetup starts Argo's workflow-controller and gives the test's
// namespace what deploy/argo/jobfleet-job.yaml needs: the WorkflowTemplate
// itself, the jobfleet-submit ConfigMap, and a service account with the
// permissions of Argo's executor.
func (s *stack) argoSetup(t *testing.T) {
	t.Helper()
	s.cluster.StartArgo(t)
	ctx := t.Context()
	data, err := os.ReadFile(filepath.Join("..", "deploy", "argo", "jobfleet-job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl unstructured.Unstructured
	if err := yaml.Unmarshal(data, &tmpl.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cluster.Dynamic.Resource(testenv.WorkflowTemplates).Namespace(s.ns).Create(ctx, &tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the WorkflowTemplate: %v", err)
	}
	core := s.cluster.Typed.CoreV1()
	if _, err := core.ConfigMaps(s.ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "jobfleet-submit"},
		Data:       map[string]string{"JOBFLEET_QUEUE": s.intake, "JOBFLEET_BUCKET": s.bucket, "JOBFLEET_PREFIX": "jobfleet", "AWS_REGION": testenv.Region, "JOBFLEET_LOG_FORMAT": "json"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.ServiceAccounts(s.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "argo-step"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rbac := s.cluster.Typed.RbacV1()
	if _, err := rbac.Roles(s.ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "argo-executor"},
		// What docs/workflows.md says Argo's executor needs, no more.
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"create", "patch"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(s.ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "argo-executor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "argo-executor"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "argo-step", Namespace: s.ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- workflow-controller log tail:\n%s", s.cluster.Log("workflow-controller", 6000))
		}
	})
}

// TestWorkflowLeavesNothingBetweenSteps runs a three-step Argo workflow, a
// GPU training between a preparation and an evaluation, with Argo's own
// workflow-controller and executor and the shipped WorkflowTemplate
// (deploy/argo/jobfleet-job.yaml), through the real stack. Each step
// waits for its job; while the workflow is suspended between steps, no
// job pod runs, no Job is active and, after Karpenter's consolidation, no
// node is left. The steps' outputs (the job's result and metric) reach the
// workflow.
func TestWorkflowLeavesNothingBetweenSteps(t *testing.T) {
	s := setup(t)
	s.announce(t)
	s.dispatch(t, s.registry(t, workflowTypes))
	s.argoSetup(t)
	var wf unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(argoWorkflow), &wf.Object); err != nil {
		t.Fatal(err)
	}
	created, err := s.cluster.Dynamic.Resource(testenv.Workflows).Namespace(s.ns).Create(t.Context(), &wf, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the Workflow: %v", err)
	}
	name, uid := created.GetName(), string(created.GetUID())
	steps := []struct {
		typ, want, settle string
		gpu               bool
	}{{"prepare", "10", "settle-1", false}, {"train", "120", "settle-2", true}, {"evaluate", "5", "", false}}
	for _, st := range steps {
		id := uid + "-" + st.typ
		var node argoNode
		await(t, 5*time.Minute, "the workflow's "+st.typ+" step", func(ctx context.Context) (bool, error) {
			_, phase, nodes, err := s.workflowNodes(ctx, name)
			if err != nil {
				return false, err
			}
			node = nodes[st.typ]
			if phase == "Failed" || phase == "Error" || node.Phase == "Failed" || node.Phase == "Error" {
				return false, fmt.Errorf("workflow %s, step %s %s: %s", phase, st.typ, node.Phase, node.Message)
			}
			return node.Phase == "Succeeded", nil
		})
		var result jobfleet.JobState
		if err := json.Unmarshal([]byte(node.output("result")), &result); err != nil || result.Status != jobfleet.StatusSucceeded {
			t.Fatalf("step %s: result output %v %q", st.typ, err, node.output("result"))
		}
		if got := node.output("metric"); got != st.want {
			t.Errorf("step %s: metric output %q, want %q", st.typ, got, st.want)
		}
		if result.JobID != id || result.Labels["workflow"] != name || result.Labels["step"] != id || result.Labels["team"] != "ml" {
			t.Errorf("step %s: job %s, labels %v", st.typ, result.JobID, result.Labels)
		}
		last := result.Attempts[len(result.Attempts)-1]
		node1 := s.node(t, last.Node)
		if onGPU := node1.NodePool == "jobfleet-gpu" || node1.GPUs > 0; onGPU != st.gpu {
			t.Errorf("step %s ran on %s %+v: on a GPU node = %v, want %v", st.typ, last.Node, node1, onGPU, st.gpu)
		}
		if st.gpu {
			// The dispatcher records where the training ran from its node:
			// the pools launch spot and on-demand, so the worker could not tell.
			await(t, 30*time.Second, "step "+st.typ+"'s placement in its state", func(ctx context.Context) (bool, error) {
				cur, _, err := s.store().ReadRun(ctx, id)
				if err != nil {
					return false, err
				}
				a := cur.Attempts[len(cur.Attempts)-1]
				n := s.node(t, a.Node)
				return a.CapacityType == n.CapacityType && a.InstanceType == n.InstanceType && a.CapacityType != "", nil
			})
		}
		if st.settle == "" {
			break
		}
		// Between steps, the workflow suspended: nothing runs, and the
		// nodes go.
		var state string
		await(t, 3*time.Minute, "the cluster to empty after step "+st.typ, func(ctx context.Context) (bool, error) {
			_, _, nodes, err := s.workflowNodes(ctx, name)
			if err != nil {
				return false, err
			}
			switch n := nodes[st.settle]; n.Phase {
			case "", "Pending":
				return false, nil // not suspended yet
			case "Running":
			default:
				return false, fmt.Errorf("the %s step is %q, not suspended", st.settle, n.Phase)
			}
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
			if now := fmt.Sprintf("running job pods %d, active Jobs %d, NodeClaims %d", len(pods), active, len(claims.Items)); now != state {
				state = now
				t.Log(state)
			}
			return len(pods) == 0 && active == 0 && len(claims.Items) == 0, nil
		})
		s.resume(t, name)
	}
	await(t, time.Minute, "the workflow to succeed", func(ctx context.Context) (bool, error) {
		_, phase, _, err := s.workflowNodes(ctx, name)
		return phase == "Succeeded", err
	})
	// One event per job end.
	for _, st := range steps {
		n := 0
		for _, p := range s.sns.Published(s.events) {
			var e jobfleet.Event
			if json.Unmarshal([]byte(p.Message), &e) == nil && e.JobID == uid+"-"+st.typ {
				n++
				if e.Status != jobfleet.StatusSucceeded || p.Attributes["workflow"] != name {
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
