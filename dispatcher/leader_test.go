package dispatcher

import (
	"encoding/json"
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
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/worker"
)

// eventually waits for cond, polling, and fails the test at the deadline.
func TestIdleClassesAreCollected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.ClassIdleTTL = 2 * time.Second
	cfg.CollectInterval = 200 * time.Millisecond
	client, err := kubernetes.NewForConfig(b.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	jobs := []*jobfleet.Job{{Version: 1, ID: "idle-1", Type: "export"}, {Version: 1, ID: "busy-1", Type: "report"}}
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), jobs...); err != nil {
		t.Fatal(err)
	}
	_, stop := b.start(t, cfg, WithKubernetes(client, nil))
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
}

func TestSensorRerunsOOMKilledPod(t *testing.T) {
	t.Parallel()
	b := setup(t)
	store := testenv.StartS3(t)
	bucket := store.CreateBucket(t)
	client, err := kubernetes.NewForConfig(b.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := b.start(t, b.cfg, WithKubernetes(client, &LeaderConfig{Identity: "test"}), WithSensor(store.Client, SensorConfig{Bucket: bucket, Prefix: "jobfleet"}))
	defer stop()

	// A job reaches its class and a worker in pod p-1 claims it.
	job := &jobfleet.Job{Version: 1, ID: "oomer", Type: "export"}
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	first := b.prefix + "-export-cpu-1gi"
	b.waitForClasses(t, []string{first}, 1, time.Minute)
	out, err := b.sqs.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(b.classURL(t, first)), VisibilityTimeout: 300, WaitTimeSeconds: 5})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receiving the job: %v, %d", err, len(out.Messages))
	}
	m := out.Messages[0]
	claim := worker.Claim{
		JobID: job.ID, Type: job.Type, Attempt: 1, MessageID: aws.ToString(m.MessageId), QueueURL: b.classURL(t, first),
		ReceiptHandle: aws.ToString(m.ReceiptHandle), Pod: "p-1", Namespace: b.ns, State: worker.ClaimRunning, ClaimedAt: time.Now().UTC(),
	}
	if err := worker.WriteClaim(t.Context(), store.Client, bucket, worker.ClaimKey("jobfleet", job.ID, 1), &claim); err != nil {
		t.Fatal(err)
	}
	index := claim
	index.Job = json.RawMessage(aws.ToString(m.Body))
	if err := worker.WriteClaim(t.Context(), store.Client, bucket, worker.PodKey("jobfleet", b.ns, "p-1"), &index); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p-1", Namespace: b.ns, Labels: map[string]string{LabelManagedBy: ManagedBy}},
		Spec: corev1.PodSpec{NodeName: "node-9", Containers: []corev1.Container{{
			Name: "job", Image: "x", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
		}}},
	}
	pod, err = client.CoreV1().Pods(b.ns).Create(t.Context(), pod, metav1.CreateOptions{})
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

	// The rerun goes back through intake and lands in the next size up,
	// 1.5 x 1Gi rounded up the ladder: 2Gi.
	next := b.prefix + "-export-cpu-2gi"
	b.waitForClasses(t, []string{next}, 1, time.Minute)
	msgs := b.sqs.Receive(t, b.classURL(t, next), 1, true)
	rerun, err := jobfleet.Decode([]byte(aws.ToString(msgs[0].Body)))
	if err != nil {
		t.Fatal(err)
	}
	h := rerun.History
	if rerun.ID != job.ID || len(h) != 1 || h[0].Reason != jobfleet.ReasonOOM || h[0].AllocatedBytes != 1<<30 || h[0].Node != "node-9" {
		t.Fatalf("rerun = %+v", rerun)
	}
	got, err := worker.ReadClaim(t.Context(), store.Client, bucket, worker.ClaimKey("jobfleet", job.ID, 1))
	if err != nil || got.State != worker.ClaimFinished || got.Outcome != jobfleet.OutcomeOOM {
		t.Errorf("claim = %+v, %v; want finished with outcome oom", got, err)
	}
	if visible, inFlight := b.sqs.Depth(t, b.classURL(t, first)); visible+inFlight != 0 {
		t.Errorf("the dead pod's message is still in its class queue: %d", visible+inFlight)
	}
}
