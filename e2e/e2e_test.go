package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

// The job types of the fleet scenarios: count jobs long enough to upload a
// periodic checkpoint (the 10s minimum interval), a memory-allocating one,
// and a GPU one.
const fleetTypes = `
  - {name: etl, image: x, command: [TESTJOB, count, "160", "100", LOGS], pool: cpu, cpu: 100m,
     memory: {default: 128Mi}, checkpoint: {interval: 10s}}
  - {name: report, image: x, command: [TESTJOB, alloc, "32", "500"], pool: cpu, cpu: 100m, archs: [arm64],
     memory: {default: 256Mi}}
  - {name: train, image: x, command: [TESTJOB, count, "160", "100", LOGS], pool: gpu, cpu: 100m, gpu: {count: 1},
     memory: {default: 256Mi}, checkpoint: {interval: 10s}}
`

// TestFleet installs the dispatcher with the Helm chart (two replicas,
// authorized by the chart's RBAC alone) and publishes 30 jobs of three
// types, one of them GPU and one built for arm64 only, with `jobfleet
// publish`: every job succeeds once, on the right kind of node,
// checkpointing to S3; then the fleet scales to zero.
func TestFleet(t *testing.T) {
	s := setup(t)
	s.recordAWS(t)
	s.install(t, s.registry(t, fleetTypes))
	all := append(append(jobs("etl", "etl", 10), jobs("report", "report", 10)...), jobs("train", "train", 10)...)
	s.publish(t, all...)
	s.awaitRuns(t, 5*time.Minute, "30 jobs to succeed", func(runs []jobfleet.RunRecord) bool { return succeeded(runs) == len(all) })

	byJob := runsOf(s.runs)
	for _, j := range all {
		runs := byJob[j.ID]
		if len(runs) != 1 || runs[0].Outcome != jobfleet.OutcomeSucceeded {
			t.Errorf("%s: want one successful run, got %+v", j.ID, runs)
			continue
		}
		r := runs[0]
		if r.Labels["batch"] != j.Labels["batch"] {
			t.Errorf("%s: run record labels %v, want the message's %v", j.ID, r.Labels, j.Labels)
		}
		node := s.node(t, r.Node)
		gpuNode := node.NodePool == "jobfleet-gpu" || node.GPUs > 0
		if want := j.Type == "train"; gpuNode != want {
			t.Errorf("%s (%s) ran on %s %+v: on a GPU node = %v, want %v", j.ID, j.Type, r.Node, node, gpuNode, want)
		}
		wantArch := map[string]string{"report": "arm64"}[j.Type]
		if wantArch == "" {
			wantArch = "amd64"
		}
		if node.Arch != wantArch {
			t.Errorf("%s (%s) ran on a %s node %s, want %s", j.ID, j.Type, node.Arch, r.Node, wantArch)
		}
		if j.Type != "report" {
			if ok, err := s.checkpointed(t.Context(), j.ID); r.Checkpoints < 1 || !ok {
				t.Errorf("%s: %d checkpoints recorded, in S3: %v (%v)", j.ID, r.Checkpoints, ok, err)
			}
			if log := s.jobLog(t, j.ID); len(log) != 2 || log[0] != "start 0 false 1" || log[1] != "done 160" {
				t.Errorf("%s: job log %q", j.ID, log)
			}
		}
	}

	// Scale to zero: the Jobs finish, consolidation removes the empty
	// nodes, and the dispatcher deletes the idle ScaledJobs.
	var state string
	await(t, 3*time.Minute, "the fleet to scale to zero", func(ctx context.Context) (bool, error) {
		active, err := s.activeJobs(ctx)
		if err != nil {
			return false, err
		}
		claims, err := s.cluster.Dynamic.Resource(testenv.NodeClaims).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		scaled, err := s.cluster.Dynamic.Resource(testenv.ScaledJobs).Namespace(s.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		if now := fmt.Sprintf("active Jobs %d, NodeClaims %d, ScaledJobs %d", active, len(claims.Items), len(scaled.Items)); now != state {
			state = now
			t.Log(state)
		}
		return active == 0 && len(claims.Items) == 0 && len(scaled.Items) == 0, nil
	})
	// Nothing ran twice meanwhile.
	if err := s.receiveRuns(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(s.runs) != len(all) {
		t.Errorf("%d run records for %d jobs", len(s.runs), len(all))
	}
	if dead := s.receive(t.Context(), s.dead); len(dead) > 0 {
		t.Errorf("%d dead-lettered messages: %s", len(dead), aws.ToString(dead[0].Body))
	}
	// Every AWS call of the dispatcher, the workers and KEDA was one the
	// CloudFormation stack's roles allow (TestEveryGrantUsed checks the
	// other way).
	s.checkLeastPrivilege(t)
}

// TestSpotOnDemandSplit: ten jobs of a type on a pool split 60/40 between
// spot and on-demand, all running at once, land six on spot nodes and four
// on on-demand ones, on nodes of both architectures the type's image has.
func TestSpotOnDemandSplit(t *testing.T) {
	s := setup(t)
	gate := filepath.Join(t.TempDir(), "gate")
	s.dispatch(t, s.registry(t, `
  - {name: spread, image: x, command: [TESTJOB, wait, `+gate+`], pool: split, cpu: 100m, archs: [amd64, arm64],
     memory: {default: 64Mi}}
`))
	all := jobs("spread", "spread", 10)
	s.publish(t, all...)
	var pods []corev1.Pod
	await(t, 3*time.Minute, "10 pods running at once", func(ctx context.Context) (bool, error) {
		list, err := s.cluster.Typed.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{LabelSelector: dispatcher.LabelType + "=spread"})
		if err != nil {
			return false, err
		}
		pods = slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.Status.Phase != corev1.PodRunning })
		return len(pods) == len(all), nil
	})
	capacity := map[string]int{}
	spreads := map[string]int{}
	for _, p := range pods {
		node := s.node(t, p.Spec.NodeName)
		capacity[node.CapacityType]++
		spreads[node.Spread]++
	}
	t.Logf("pods by capacity type %v, by spread value %v", capacity, spreads)
	if capacity["spot"] != 6 || capacity["on-demand"] != 4 {
		t.Errorf("pods by capacity type %v, want 6 spot and 4 on-demand", capacity)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.awaitRuns(t, 3*time.Minute, "10 jobs to succeed", func(runs []jobfleet.RunRecord) bool { return succeeded(runs) == len(all) })
}

// TestOOMRerunsWithMoreMemory: a job whose container exceeds its memory
// limit is OOM-killed, rerun in a larger size class, and succeeds.
func TestOOMRerunsWithMoreMemory(t *testing.T) {
	s := setup(t)
	s.dispatch(t, s.registry(t, `
  - {name: hog, image: x, command: [TESTJOB, alloc, "160", "200"], pool: cpu, cpu: 100m, memory: {default: 128Mi, max: 1Gi}}
`))
	s.publish(t, jobs("hog", "hog", 1)...)
	s.awaitRuns(t, 3*time.Minute, "the job to succeed", func(runs []jobfleet.RunRecord) bool { return succeeded(runs) == 1 })
	runs := runsOf(s.runs)["hog-00"]
	if len(runs) != 2 {
		t.Fatalf("runs = %+v, want an OOM kill and a success", runs)
	}
	if r := runs[0]; r.Outcome != jobfleet.OutcomeOOM || r.AllocatedBytes != 128<<20 {
		t.Errorf("first run: %s with %d bytes, want oom with 128Mi", r.Outcome, r.AllocatedBytes)
	}
	// Both records carry the message's labels, which the retrained
	// model groups by and the raise after misses keys on.
	for _, r := range runs {
		if r.Labels["batch"] != "hog" {
			t.Errorf("attempt %d (%s): run record labels %v, want batch=hog", r.Attempt, r.Outcome, r.Labels)
		}
	}
	if r := runs[1]; r.Outcome != jobfleet.OutcomeSucceeded || r.AllocatedBytes <= 128<<20 || r.Attempt != 2 {
		t.Errorf("rerun: attempt %d %s with %d bytes, want a success with more than 128Mi", r.Attempt, r.Outcome, r.AllocatedBytes)
	}
}

// TestFailingJobIsDeadLettered: a job that always fails ends in the
// dead-letter queue with its history once its retry budget is spent.
func TestFailingJobIsDeadLettered(t *testing.T) {
	s := setup(t)
	s.dispatch(t, s.registry(t, `
  - {name: broken, image: x, command: [TESTJOB, fail, "3"], pool: cpu, cpu: 100m, memory: {default: 128Mi}, maxAttempts: 2}
`))
	s.publish(t, jobs("broken", "broken", 1)...)
	var dead []string
	var reason, run string
	var attempt int
	await(t, 3*time.Minute, "the job in the dead-letter queue", func(ctx context.Context) (bool, error) {
		for _, m := range s.receive(ctx, s.dead) {
			dead = append(dead, aws.ToString(m.Body))
			if a, ok := m.MessageAttributes[queue.AttrError]; ok {
				reason = aws.ToString(a.StringValue)
			}
			run, attempt = queue.DeadRunAttempt(m.MessageAttributes)
		}
		return len(dead) > 0, nil
	})
	job, err := jobfleet.Decode([]byte(dead[0]))
	if err != nil {
		t.Fatalf("the dead letter is not a job: %v", err)
	}
	last, _, err := s.store().ReadClaim(t.Context(), job.ID, run, attempt)
	if err != nil {
		t.Fatalf("the dead letter's attempt %d of run %q: %v", attempt, run, err)
	}
	if len(last.History) != 2 {
		t.Fatalf("history = %+v, want two attempts", last.History)
	}
	if r, _, err := s.store().ReadRun(t.Context(), job.ID); err != nil || r.State != contract.RunEnded {
		t.Errorf("the dead-lettered job's run = %+v %v, want ended", r, err)
	}
	for i, a := range last.History {
		if a.Reason != jobfleet.ReasonFailed || a.ExitCode != 3 || a.Node == "" {
			t.Errorf("attempt %d: %+v", i+1, a)
		}
	}
	if !strings.Contains(reason, "retry budget spent") {
		t.Errorf("dead-letter reason %q", reason)
	}
	if err := s.receiveRuns(t.Context()); err != nil {
		t.Fatal(err)
	}
	if runs := runsOf(s.runs)["broken-00"]; len(runs) != 2 || runs[0].Outcome != jobfleet.OutcomeFailed || runs[1].Outcome != jobfleet.OutcomeFailed {
		t.Errorf("runs = %+v, want two failures", runs)
	}
	if len(dead) != 1 {
		t.Errorf("%d dead letters, want 1", len(dead))
	}
}

// TestDispatcherRestart: the dispatcher stops half-way through a run and a
// new one takes over; every job still succeeds exactly once.
func TestDispatcherRestart(t *testing.T) {
	s := setup(t)
	reg := s.registry(t, `
  - {name: etl, image: x, command: [TESTJOB, count, "20", "100", LOGS], pool: cpu, cpu: 100m, memory: {default: 128Mi}}
`)
	all := jobs("etl", "etl", 30)
	stop := s.dispatch(t, reg)
	s.publish(t, all[:15]...)
	s.awaitRuns(t, 3*time.Minute, "the first jobs to succeed", func(runs []jobfleet.RunRecord) bool { return succeeded(runs) >= 5 })
	stop()
	// Jobs arrive while no dispatcher runs.
	s.publish(t, all[15:]...)
	s.dispatch(t, reg)
	s.awaitRuns(t, 4*time.Minute, "30 jobs to succeed", func(runs []jobfleet.RunRecord) bool { return succeeded(runs) == len(all) })

	byJob := runsOf(s.runs)
	for _, j := range all {
		if runs := byJob[j.ID]; len(runs) != 1 || runs[0].Outcome != jobfleet.OutcomeSucceeded {
			t.Errorf("%s: want one successful run, got %+v", j.ID, runs)
		}
		if log := s.jobLog(t, j.ID); len(log) != 2 || log[1] != "done 20" {
			t.Errorf("%s: job log %q", j.ID, log)
		}
	}
	if dead := s.receive(t.Context(), s.dead); len(dead) > 0 {
		t.Errorf("%d dead-lettered messages: %s", len(dead), aws.ToString(dead[0].Body))
	}
}

// longTypes is a count job of 25 s that checkpoints every 10 s: 100 steps
// are one checkpoint interval.
const longTypes = `
  - {name: long, image: x, command: [TESTJOB, count, "250", "100", LOGS], pool: cpu, cpu: 100m,
     memory: {default: 128Mi}, checkpoint: {interval: 10s}}
`

const stepsPerInterval = 100

// TestSpotInterruption: a spot interruption warning arrives while 10 long
// jobs run, handled by the dispatcher the chart installs, under the
// chart's RBAC alone (it taints the nodes, annotates and evicts the pods,
// and records the capacity to avoid). Every worker gets SIGTERM and uploads
// its checkpoint; every rerun lands on another node, resumes, and
// succeeds, having redone at most one checkpoint interval of work.
func TestSpotInterruption(t *testing.T) {
	s := setup(t)
	s.recordAWS(t)
	s.install(t, s.registry(t, longTypes))
	all := jobs("long", "long", 10)
	s.publish(t, all...)

	// Once every job has a periodic checkpoint, interrupt the nodes they
	// run on.
	var pods int
	var unchecked []string
	var s3Err error
	interrupted := map[string]bool{}
	defer func() {
		if t.Failed() {
			t.Logf("running pods %d, jobs without a checkpoint %v (last S3 error: %v), objects in the bucket:\n%s", pods, unchecked, s3Err, s.listBucket(t))
		}
	}()
	await(t, 3*time.Minute, "every job to run and checkpoint", func(ctx context.Context) (bool, error) {
		running, err := s.runningPods(ctx)
		if err != nil {
			return false, err
		}
		for _, p := range running {
			interrupted[p.Spec.NodeName] = true
		}
		pods = len(running)
		unchecked = unchecked[:0]
		for _, j := range all {
			ok, err := s.checkpointed(ctx, j.ID)
			if err != nil {
				s3Err = err
			}
			if !ok {
				unchecked = append(unchecked, j.ID)
			}
		}
		return len(unchecked) == 0, nil
	})
	if pods != len(all) {
		t.Fatalf("%d pods running, want %d", pods, len(all))
	}
	for node := range interrupted {
		if info := s.node(t, node); info.CapacityType != "spot" {
			t.Fatalf("node %s is %s, want spot", node, info.CapacityType)
		}
		s.interruptSpot(t, node)
	}
	s.awaitRuns(t, 4*time.Minute, "every rerun to succeed", func(runs []jobfleet.RunRecord) bool { return succeeded(runs) == len(all) })

	byJob := runsOf(s.runs)
	for _, j := range all {
		runs := byJob[j.ID]
		if len(runs) != 2 {
			t.Errorf("%s: runs %+v, want an interrupted one and a success", j.ID, runs)
			continue
		}
		first, rerun := runs[0], runs[1]
		if first.Outcome != jobfleet.OutcomeInterrupted || !interrupted[first.Node] {
			t.Errorf("%s: first run %s on %s, want interrupted on one of %v", j.ID, first.Outcome, first.Node, interrupted)
		}
		if first.Checkpoints < 2 {
			t.Errorf("%s: the interrupted run uploaded %d checkpoints, want a periodic and a final one", j.ID, first.Checkpoints)
		}
		if rerun.Outcome != jobfleet.OutcomeSucceeded || !rerun.Resumed || interrupted[rerun.Node] {
			t.Errorf("%s: rerun %s (resumed %v) on %s, want a resumed success on another node", j.ID, rerun.Outcome, rerun.Resumed, rerun.Node)
		}
		redone, err := redoneSteps(s.jobLog(t, j.ID))
		if err != nil {
			t.Errorf("%s: %v", j.ID, err)
		} else if redone > stepsPerInterval {
			t.Errorf("%s: %d steps redone, more than one checkpoint interval (%d)", j.ID, redone, stepsPerInterval)
		}
	}
	// Every AWS call of the dispatcher, the workers and KEDA, interruption
	// handling included, was one the stack's roles allow.
	s.checkLeastPrivilege(t)
}

// TestInterruptedTwiceRunsOnDemand: a job interrupted twice reruns on
// on-demand capacity.
func TestInterruptedTwiceRunsOnDemand(t *testing.T) {
	s := setup(t)
	s.dispatch(t, s.registry(t, longTypes))
	s.publish(t, jobs("long", "twice", 1)...)
	id := "twice-00"
	for attempt := 1; attempt <= 2; attempt++ {
		// Interrupt the attempt once it runs.
		var node string
		await(t, 3*time.Minute, fmt.Sprintf("attempt %d to run", attempt), func(ctx context.Context) (bool, error) {
			running, err := s.runningPods(ctx)
			if err != nil || len(running) != 1 {
				return false, err
			}
			log := s.jobLog(t, id)
			if len(log) == 0 || !strings.HasPrefix(log[len(log)-1], "start ") || !strings.HasSuffix(log[len(log)-1], fmt.Sprintf(" %d", attempt)) {
				return false, nil
			}
			node = running[0].Spec.NodeName
			return true, nil
		})
		s.interruptSpot(t, node)
	}
	s.awaitRuns(t, 3*time.Minute, "the job to succeed", func(runs []jobfleet.RunRecord) bool { return succeeded(runs) == 1 })
	runs := runsOf(s.runs)[id]
	if len(runs) != 3 {
		t.Fatalf("runs = %+v, want two interrupted and a success", runs)
	}
	for i, r := range runs[:2] {
		if r.Outcome != jobfleet.OutcomeInterrupted || s.node(t, r.Node).CapacityType != "spot" {
			t.Errorf("run %d: %s on %+v, want interrupted on spot", i+1, r.Outcome, s.node(t, r.Node))
		}
	}
	if last := runs[2]; last.Outcome != jobfleet.OutcomeSucceeded || s.node(t, last.Node).CapacityType != "on-demand" {
		t.Errorf("third run: %s on %+v, want a success on on-demand", last.Outcome, s.node(t, last.Node))
	}
}

// redoneSteps reads a count job's log, "start <progress> <resumed>
// <attempt>", "stop <progress>", ..., "done <progress>", and returns the
// most steps any rerun repeated: where it stopped less where the rerun
// started.
func redoneSteps(log []string) (int, error) {
	if len(log) < 4 || !strings.HasPrefix(log[len(log)-1], "done ") {
		return 0, fmt.Errorf("log %q: want a start, a stop, a resumed start and done", log)
	}
	most, stopped := 0, -1
	for _, line := range log {
		var progress int
		switch {
		case strings.HasPrefix(line, "stop "):
			if _, err := fmt.Sscanf(line, "stop %d", &progress); err != nil {
				return 0, fmt.Errorf("line %q: %w", line, err)
			}
			stopped = progress
		case strings.HasPrefix(line, "start "):
			var resumed bool
			var attempt int
			if _, err := fmt.Sscanf(line, "start %d %t %d", &progress, &resumed, &attempt); err != nil {
				return 0, fmt.Errorf("line %q: %w", line, err)
			}
			if stopped >= 0 {
				if !resumed || progress == 0 {
					return 0, fmt.Errorf("log %q: attempt %d did not resume", log, attempt)
				}
				most = max(most, stopped-progress)
			}
		}
	}
	if stopped < 0 {
		return 0, fmt.Errorf("log %q: the job never got SIGTERM", log)
	}
	return most, nil
}

// TestEveryGrantUsed fails on a grant of deploy/aws/jobfleet.yaml's roles
// that no recorded scenario (TestFleet, TestSpotInterruption) used, unless
// notExercised says why no scenario here calls it. It runs after them: Go
// runs a package's tests in the order of their files and, within a file,
// of the source, and both are above it in this file.
func TestEveryGrantUsed(t *testing.T) {
	grants.mu.Lock()
	defer grants.mu.Unlock()
	if len(grants.unused) < 2 {
		t.Fatalf("%d scenarios recorded their AWS calls, want 2: run the whole tier (go test ./e2e)", len(grants.unused))
	}
	for key, g := range grants.unused[0] {
		unusedEverywhere := true
		for _, other := range grants.unused[1:] {
			if _, ok := other[key]; !ok {
				unusedEverywhere = false
			}
		}
		if _, ok := notExercised[key]; unusedEverywhere && !ok {
			t.Errorf("granted but never used: %s", g)
		}
	}
	for key := range notExercised {
		for _, unused := range grants.unused {
			if _, ok := unused[key]; !ok {
				t.Logf("%s, listed as not exercised, was used in a scenario", key)
				break
			}
		}
	}
}

// notExercised are the grants no end-to-end scenario needs to use, each
// with why. The template's tests check each against the code that makes
// the call.
var notExercised = map[string]string{
	"dispatcher: CompleteDeadPodsAttempts sqs:DeleteMessage": "no job pod dies, so the failure sensor completes no attempt",
	"dispatcher: ManageClassQueues sqs:UntagQueue":           "no class marked for collection gets busy again",
	"worker: LargeDeadLetterBodies s3:PutObject":             "no job too large for a dead letter is dead-lettered",
	"worker: ReadTheRaise s3:GetObject":                      "no job here is sized by a memory model, so none has a raise to compare (dispatcher/resize_test.go covers it with a worker)",
	"worker: ConsumeClassQueue sqs:ChangeMessageVisibility":  "a message is extended only when its job runs past a third of its visibility",
	// Whether any message goes back to intake depends on which replica
	// receives a new class's first jobs: the leader creates the class
	// itself, another replica hands the job back until the leader has.
	"dispatcher: ConsumeIntake sqs:ChangeMessageVisibility": "a job goes back to intake only when a replica that is not the leader meets a class not created yet, or S3 fails",
}
