package dispatcher

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

func (b *bundle) client(t *testing.T) kubernetes.Interface {
	t.Helper()
	client, err := kubernetes.NewForConfig(b.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func TestIdleClassesAreCollected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.ClassIdleTTL = 2 * time.Second
	cfg.CollectInterval = 200 * time.Millisecond
	cfg.ClassFresh, cfg.CollectFence = time.Second, 2*time.Second
	jobs := []*jobfleet.Job{{Version: 1, ID: "idle-1", Type: "export"}, {Version: 1, ID: "busy-1", Type: "report"}}
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), jobs...); err != nil {
		t.Fatal(err)
	}
	_, stop := b.start(t, cfg, WithKubernetes(b.client(t), nil))
	defer stop()
	idle, busy := b.prefix+"-export-cpu-1gi", b.prefix+"-report-cpu-2gi-od"
	b.waitForClasses(t, []string{idle, busy}, 2, time.Minute)
	// The export job ran and finished: its queue is empty. The report job
	// waits in its queue.
	b.sqs.Receive(t, b.classURL(t, idle), 1, true)
	idleURL := b.classURL(t, idle)

	sjs := b.kube.Dynamic.Resource(scaledJobs).Namespace(b.ns)
	testenv.Eventually(t, 30*time.Second, "the idle ScaledJob to be removed", func() bool {
		_, err := sjs.Get(t.Context(), idle, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	testenv.Eventually(t, 10*time.Second, "the idle queue to be removed", func() bool {
		_, err := b.sqs.Client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(idleURL)})
		return isQueueMissing(err)
	})
	if _, err := sjs.Get(t.Context(), busy, metav1.GetOptions{}); err != nil {
		t.Errorf("the class with a waiting job was removed: %v", err)
	}
	if visible, _ := b.sqs.Depth(t, b.classURL(t, busy)); visible != 1 {
		t.Errorf("the busy class queue holds %d messages, want its job", visible)
	}
	// A job of the removed class brings it back.
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), &jobfleet.Job{Version: 1, ID: "idle-2", Type: "export"}); err != nil {
		t.Fatal(err)
	}
	b.waitForClasses(t, []string{idle}, 1, time.Minute)
	if _, err := sjs.Get(t.Context(), idle, metav1.GetOptions{}); err != nil {
		t.Errorf("the class is back without its ScaledJob: %v", err)
	}
}

// TestSendDuringCollectionIsKept sends a job to a class the collector has
// marked, as a replica whose cache still called the class ready would: the
// collector sees the job when its fence ends and keeps the class, so the
// job is not deleted with the queue.
func TestSendDuringCollectionIsKept(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.ClassIdleTTL = time.Second
	cfg.CollectInterval = 100 * time.Millisecond
	cfg.ClassFresh, cfg.CollectFence = time.Second, 3*time.Second
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), &jobfleet.Job{Version: 1, ID: "first", Type: "export"}); err != nil {
		t.Fatal(err)
	}
	_, stop := b.start(t, cfg, WithKubernetes(b.client(t), nil))
	defer stop()
	class := b.prefix + "-export-cpu-1gi"
	b.waitForClasses(t, []string{class}, 1, time.Minute)
	url := b.classURL(t, class)
	b.sqs.Receive(t, url, 1, true)
	testenv.Eventually(t, 30*time.Second, "the idle class to be marked for collection", func() bool {
		tags, err := b.sqs.Client.ListQueueTags(t.Context(), &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
		return err == nil && tags.Tags[tagCollecting] != ""
	})
	// A send confirmed before the mark lands now.
	body, _ := jobfleet.Encode(&jobfleet.Job{Version: 1, ID: "late", Type: "export"})
	if f := queue.Send(t.Context(), b.sqs.Client, url, []queue.Message{queue.ForwardMessage(string(body), "export", "r", 1)}, queue.Retry{}); len(f) > 0 {
		t.Fatal(f[0].Err)
	}
	testenv.Eventually(t, 30*time.Second, "the collector to keep the class", func() bool {
		tags, err := b.sqs.Client.ListQueueTags(t.Context(), &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
		return err == nil && tags.Tags[tagCollecting] == ""
	})
	if visible, inFlight := b.sqs.Depth(t, url); visible+inFlight != 1 {
		t.Errorf("the class queue holds %d messages, want the late job", visible+inFlight)
	}
	if _, err := b.kube.Dynamic.Resource(scaledJobs).Namespace(b.ns).Get(t.Context(), class, metav1.GetOptions{}); err != nil {
		t.Errorf("the kept class lost its ScaledJob: %v", err)
	}
}

// claimAs receives a job from its class queue and claims it as a worker in
// pod does, with its pod index.
func (b *bundle) claimAs(t *testing.T, class, pod string) *contract.Claim {
	t.Helper()
	url := b.classURL(t, class)
	out, err := b.sqs.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), VisibilityTimeout: 300, WaitTimeSeconds: 5, MessageAttributeNames: []string{"All"}})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receiving the job: %v, %d", err, len(out.Messages))
	}
	m := out.Messages[0]
	job, err := jobfleet.Decode([]byte(aws.ToString(m.Body)))
	if err != nil {
		t.Fatal(err)
	}
	run, attempt, ok, err := queue.RunAttempt(m.MessageAttributes)
	if !ok || err != nil {
		t.Fatalf("a forwarded job without its run: %v", err)
	}
	c := &contract.Claim{
		JobID: job.ID, Type: job.Type, Run: run, Attempt: attempt, Holder: pod, MessageID: aws.ToString(m.MessageId),
		QueueURL: url, ReceiptHandle: aws.ToString(m.ReceiptHandle), Pod: pod, Namespace: b.ns, ClaimedAt: time.Now().UTC(),
		PredictedBytes: queue.Predicted(m.MessageAttributes), // as the worker keeps it
	}
	if got, _, _, err := b.store.Claim(t.Context(), c, time.Now(), time.Minute); err != nil || got != contract.Owned {
		t.Fatalf("claiming: %v %v", got, err)
	}
	index := &contract.PodIndex{Namespace: b.ns, Pod: pod, JobID: job.ID, Type: job.Type, Run: run, Attempt: attempt, MessageID: c.MessageID, Body: aws.ToString(m.Body)}
	if err := b.store.WritePodIndex(t.Context(), index); err != nil {
		t.Fatal(err)
	}
	return c
}

// oomKill creates a job pod and reports its container OOM-killed.
func (b *bundle) oomKill(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.ns, Labels: map[string]string{LabelManagedBy: ManagedBy}},
		Spec: corev1.PodSpec{NodeName: "node-9", Containers: []corev1.Container{{
			Name: "job", Image: "x", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
		}}},
	}
	pod, err := client.CoreV1().Pods(b.ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The job outgrows its limit: the kernel kills the container, worker
	// and all, and the kubelet reports OOMKilled.
	pod.Status = corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "job", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}},
	}}}
	if _, err := client.CoreV1().Pods(b.ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// assertOOMRerun checks that a job's rerun landed in the next size up, as
// attempt 2 of its run with the OOM kill in its history.
func (b *bundle) assertOOMRerun(t *testing.T, c *contract.Claim, next string) {
	t.Helper()
	b.waitForClasses(t, []string{next}, 1, time.Minute)
	msgs := b.sqs.Receive(t, b.classURL(t, next), 1, true)
	run, attempt, _, _ := queue.RunAttempt(msgs[0].MessageAttributes)
	if run != c.Run || attempt != 2 {
		t.Fatalf("rerun of run %s attempt %d, want run %s attempt 2", run, attempt, c.Run)
	}
	ended, _, err := b.store.ReadClaim(t.Context(), c.JobID, c.Run, 1)
	if err != nil || ended.State != contract.ClaimEnded || ended.Outcome != jobfleet.OutcomeOOM || ended.Next != contract.NextRerun {
		t.Fatalf("claim = %+v, %v; want ended with outcome oom and a rerun", ended, err)
	}
	if h := ended.History; len(h) != 1 || h[0].Reason != jobfleet.ReasonOOM || h[0].AllocatedBytes != 1<<30 || h[0].Node != "node-9" {
		t.Errorf("history = %+v", h)
	}
}

// assertDeleted checks that the dead pods' messages left their class queue.
func (b *bundle) assertDeleted(t *testing.T, url string) {
	t.Helper()
	if visible, inFlight := b.sqs.Depth(t, url); visible+inFlight != 0 {
		t.Errorf("a dead pod's message is still in its class queue: %d", visible+inFlight)
	}
}

// sensorClaim starts a leader with the failure sensor and a model that
// sizes export jobs at 0.9Gi, in the 1Gi class; publishes an export job,
// and claims it as a worker in pod p-1 does.
func (b *bundle) sensorClaim(t *testing.T, id string) (kubernetes.Interface, *contract.Claim, func()) {
	t.Helper()
	client := b.client(t)
	models := staticModels{constantModel(map[string]float64{"export": 0.9 * gib})}
	_, stop := b.start(t, b.cfg, WithKubernetes(client, &LeaderConfig{Identity: "test"}), WithSensor(SensorConfig{}), WithModels(models))
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), &jobfleet.Job{Version: 1, ID: id, Type: "export"}); err != nil {
		stop()
		t.Fatal(err)
	}
	class := b.prefix + "-export-cpu-1gi"
	b.waitForClasses(t, []string{class}, 1, time.Minute)
	return client, b.claimAs(t, class, "p-1"), stop
}

func TestSensorRerunsOOMKilledPod(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A job reaches its class and a worker in pod p-1 claims it.
	client, c, stop := b.sensorClaim(t, "oomer")
	defer stop()
	b.oomKill(t, client, "p-1")
	// The rerun goes back through intake and lands in the next size up,
	// 1.5 x 1Gi rounded up the ladder: 2Gi.
	b.assertOOMRerun(t, c, b.prefix+"-export-cpu-2gi")
	b.assertDeleted(t, c.QueueURL)
	// The kill's run record carries the model's class, for the raise
	// after misses and the margin.
	ended, _, err := b.store.ReadClaim(t.Context(), c.JobID, c.Run, 1)
	if err != nil || ended.Record == nil || ended.Record.PredictedBytes != gib {
		t.Errorf("the OOM kill's record: %+v, %v; want predicted_bytes %d, the model's class", ended.Record, err, int64(gib))
	}
}

// TestSensorActsOnPodsThatDiedWhileNoLeaderRan: a pod OOM-killed, and
// another deleted, before any dispatcher watched; the leader that starts
// afterwards ends both attempts at once.
func TestSensorActsOnPodsThatDiedWhileNoLeaderRan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client := b.client(t)
	d, stop := b.start(t, b.cfg)
	for _, id := range []string{"early-oom", "early-gone"} {
		if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), &jobfleet.Job{Version: 1, ID: id, Type: "export"}); err != nil {
			t.Fatal(err)
		}
	}
	first := b.prefix + "-export-cpu-1gi"
	b.waitForClasses(t, []string{first}, 2, time.Minute)
	stop()
	_ = d
	oom := b.claimAs(t, first, "p-oom")
	gone := b.claimAs(t, first, "p-gone")
	// p-gone's worker stopped renewing its claim long ago.
	cur, etag, err := b.store.ReadClaim(t.Context(), gone.JobID, gone.Run, 1)
	if err != nil {
		t.Fatal(err)
	}
	cur.RenewedAt = time.Now().Add(-time.Hour)
	if _, err := b.store.Update(t.Context(), cur, etag); err != nil {
		t.Fatal(err)
	}
	b.oomKill(t, client, "p-oom")
	// p-gone's pod vanished with its node: only its index is left.

	_, stop = b.start(t, b.cfg, WithKubernetes(client, &LeaderConfig{Identity: "late"}), WithSensor(SensorConfig{}))
	defer stop()
	b.assertOOMRerun(t, oom, b.prefix+"-export-cpu-2gi")
	testenv.Eventually(t, time.Minute, "the vanished pod's attempt to end", func() bool {
		c, _, err := b.store.ReadClaim(t.Context(), gone.JobID, gone.Run, 1)
		return err == nil && c.State == contract.ClaimEnded && c.Outcome == jobfleet.OutcomeEvicted && c.Next == contract.NextRerun
	})
	// The evicted job's rerun lands in the same class: both dead pods'
	// messages are gone, and it holds the rerun alone.
	msgs := b.sqs.Receive(t, gone.QueueURL, 1, true)
	if run, attempt, _, _ := queue.RunAttempt(msgs[0].MessageAttributes); run != gone.Run || attempt != 2 {
		t.Errorf("the class queue holds run %s attempt %d, want the vanished pod's rerun", run, attempt)
	}
	b.assertDeleted(t, oom.QueueURL)
}

// TestSensorLeavesAnAttemptTakenOver: pod p-1 dies after another worker
// took its attempt over; the sensor must not rerun a job that runs.
func TestSensorLeavesAnAttemptTakenOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client := b.client(t)
	_, stop := b.start(t, b.cfg, WithKubernetes(client, &LeaderConfig{Identity: "test"}), WithSensor(SensorConfig{}))
	defer stop()
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), &jobfleet.Job{Version: 1, ID: "taken", Type: "export"}); err != nil {
		t.Fatal(err)
	}
	first := b.prefix + "-export-cpu-1gi"
	b.waitForClasses(t, []string{first}, 1, time.Minute)
	c := b.claimAs(t, first, "p-1")
	// Intake deletes what it forwarded in batches, a moment later: only
	// a rerun may be there at the end.
	testenv.Eventually(t, 30*time.Second, "intake to delete the forwarded job", func() bool {
		visible, inFlight := b.sqs.Depth(t, b.intake)
		return visible+inFlight == 0
	})
	// The message came back (p-1 stopped renewing) and a worker in p-2
	// took the attempt over.
	cur, etag, err := b.store.ReadClaim(t.Context(), c.JobID, c.Run, 1)
	if err != nil {
		t.Fatal(err)
	}
	cur.Pod, cur.Holder = "p-2", "p-2"
	if _, err := b.store.Update(t.Context(), cur, etag); err != nil {
		t.Fatal(err)
	}
	b.oomKill(t, client, "p-1")
	testenv.Eventually(t, 30*time.Second, "the sensor to drop p-1's index", func() bool {
		_, err := b.store.ReadPodIndex(t.Context(), b.ns, "p-1")
		return err != nil
	})
	after, _, err := b.store.ReadClaim(t.Context(), c.JobID, c.Run, 1)
	if err != nil || after.State != contract.ClaimRunning || after.Pod != "p-2" {
		t.Errorf("claim = %+v, %v; want it still running in p-2", after, err)
	}
	if visible, inFlight := b.sqs.Depth(t, b.intake); visible+inFlight != 0 {
		t.Errorf("the sensor reran a job that runs elsewhere")
	}
}
