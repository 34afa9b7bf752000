package interruption

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// bundle is one test's namespace, nodes and controller. The controller
// talks to the API server through a proxy, to cut it off.
type bundle struct {
	kube    kubernetes.Interface
	ns      string
	cluster *Kubernetes
	c       *Controller
	metrics *Metrics
	avoid   *AvoidConfigMap
	stops   contract.Store
	proxy   *testenv.Proxy
	nodes   int
}

func setup(t testing.TB, cfg Config) *bundle {
	t.Helper()
	k := testenv.StartKube(t)
	rc := *k.Config
	rc.QPS, rc.Burst = 500, 1000
	client, err := kubernetes.NewForConfig(&rc)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{kube: client, ns: k.Namespace(t)}
	b.proxy = testenv.NewProxy(t, rc.Host)
	proxied := rc
	proxied.Host = b.proxy.Endpoint
	proxiedClient, err := kubernetes.NewForConfig(&proxied)
	if err != nil {
		t.Fatal(err)
	}
	s3 := testenv.StartS3(t)
	b.stops = contract.Store{S3: testenv.NewS3Client(s3.Endpoint), Bucket: s3.CreateBucket(t)}
	cfg.Namespace = b.ns
	b.metrics = NewMetrics(prometheus.NewRegistry())
	b.cluster = &Kubernetes{Client: proxiedClient, Namespace: b.ns}
	b.avoid = &AvoidConfigMap{Client: proxiedClient, Namespace: b.ns, TTL: time.Hour, Clock: clock.RealClock{}}
	b.c = New(cfg, b.cluster, nil, b.avoid, b.stops, b.metrics, zerolog.New(zerolog.NewTestWriter(t)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := b.cluster.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// node creates a node on a simulated spot instance, named by its provider
// id, and returns its instance id.
func (b *bundle) node(t testing.TB) (name, instance string) {
	t.Helper()
	return b.newNode(t, false)
}

// newNode creates a node whose instance id is in its provider id or, with
// byLabel, only in its LabelInstanceID label.
func (b *bundle) newNode(t testing.TB, byLabel bool) (name, instance string) {
	t.Helper()
	b.nodes++
	instance = fmt.Sprintf("i-%s%04d", strings.ReplaceAll(b.ns[len(b.ns)-8:], "-", "0"), b.nodes)
	name = "node-" + instance
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			labelInstanceType: "g5.xlarge", labelZone: "us-east-2a", labelCapacityType: "spot",
		}},
		Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-2a/" + instance},
	}
	if byLabel {
		node.Spec.ProviderID = "kwok://" + name
		node.Labels[LabelInstanceID] = instance
	}
	if _, err := b.kube.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	// The index fills from the informer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if objs, _ := b.cluster.nodes.ByIndex(indexInstance, instance); len(objs) == 1 {
			return name, instance
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s never reached the index", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pods creates n jobfleet pods bound to the node, and one pod of someone
// else's.
func (b *bundle) pods(t testing.TB, node string, n int) {
	t.Helper()
	for i := range n {
		b.pod(t, fmt.Sprintf("%s-job-%d", node, i), node, map[string]string{labelManagedBy: "jobfleet"})
	}
	b.pod(t, node+"-other", node, map[string]string{"app": "web"})
}

func (b *bundle) pod(t testing.TB, name, node string, labels map[string]string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](90),
			Containers: []corev1.Container{{Name: "job", Image: "x"}},
		},
	}
	if _, err := b.kube.CoreV1().Pods(b.ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// notice reads a fixture, aimed at the instance and stamped now.
func notice(t testing.TB, file, instance string) *Notice {
	t.Helper()
	data, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Parse(data)
	if err != nil || n == nil {
		t.Fatalf("parsing %s: %v", file, err)
	}
	n.InstanceIDs, n.Time = []string{instance}, time.Now()
	return n
}

func (b *bundle) tainted(t *testing.T, node string) string {
	t.Helper()
	n, err := b.kube.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, taint := range n.Spec.Taints {
		if taint.Key == TaintKey {
			return taint.Value
		}
	}
	return ""
}

// podStates reads the node's pods: which were evicted (with their grace)
// or deleted, and their interruption annotation.
func (b *bundle) podStates(t *testing.T, node string) map[string]string {
	t.Helper()
	pods, err := b.kube.CoreV1().Pods(b.ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != node {
			continue
		}
		state := "running"
		if p.DeletionTimestamp != nil {
			state = fmt.Sprintf("evicted grace=%d", *p.DeletionGracePeriodSeconds)
		}
		if a := p.Annotations[AnnotationInterruption]; a != "" {
			state += " " + a + " " + p.Annotations[AnnotationInstanceType] + " " + p.Annotations[AnnotationZone]
		}
		out[p.Name] = state
	}
	return out
}

func TestSpotInterruptionEvictsWithinTheDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	node, instance := b.node(t)
	b.pods(t, node, 3)
	n := notice(t, "spot-interruption.json", instance)
	if err := b.c.Handle(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if got := b.tainted(t, node); got != string(SpotInterruption) {
		t.Errorf("taint = %q", got)
	}
	states := b.podStates(t, node)
	for i := range 3 {
		got := states[fmt.Sprintf("%s-job-%d", node, i)]
		// 120s of notice, less 10s of margin, less what passed: the pod's
		// 90s grace fits.
		if got != "evicted grace=90 spot-interruption g5.xlarge us-east-2a" {
			t.Errorf("pod %d: %q", i, got)
		}
	}
	if got := states[node+"-other"]; got != "running" {
		t.Errorf("a pod not of jobfleet's was touched: %q", got)
	}
	// The interrupted capacity is recorded in the cluster, where another
	// replica's view of it sees it too.
	other := &AvoidConfigMap{Client: b.kube, Namespace: b.ns, TTL: time.Hour, Clock: clock.RealClock{}}
	if err := other.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the interrupted pair in the avoid ConfigMap", func() bool {
		pairs := other.Pairs()
		return len(pairs) == 1 && pairs[0] == (Pair{"g5.xlarge", "us-east-2a"})
	})
	// Each pod's worker learns why its pod stops and until when.
	for i := range 3 {
		stop, err := b.stops.ReadStopNotice(t.Context(), b.ns, fmt.Sprintf("%s-job-%d", node, i))
		if err != nil {
			t.Fatalf("pod %d's stop notice: %v", i, err)
		}
		if stop.Kind != string(SpotInterruption) || stop.InstanceType != "g5.xlarge" || time.Until(stop.Deadline) > 91*time.Second || time.Until(stop.Deadline) < 80*time.Second {
			t.Errorf("pod %d's stop notice = %+v, want its 90s grace", i, stop)
		}
	}
	if got := testutil.ToFloat64(b.metrics.evicted.WithLabelValues(string(SpotInterruption))); got != 3 {
		t.Errorf("evicted metric = %v", got)
	}
	// A duplicate notice is harmless.
	if err := b.c.Handle(t.Context(), n); err != nil {
		t.Fatal(err)
	}
}

func TestLateNoticeShortensGrace(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	node, instance := b.node(t)
	b.pods(t, node, 1)
	n := notice(t, "spot-interruption.json", instance)
	n.Time = time.Now().Add(-80 * time.Second) // read 80s after AWS sent it
	if err := b.c.Handle(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	got := b.podStates(t, node)[node+"-job-0"]
	// 120 - 80 - 10 = 30s left, at most.
	if !strings.HasPrefix(got, "evicted grace=29") && !strings.HasPrefix(got, "evicted grace=30") {
		t.Errorf("pod = %q, want a grace cut to the deadline", got)
	}
	// The worker, whose own grace period is 90s, learns the real deadline.
	stop, err := b.stops.ReadStopNotice(t.Context(), b.ns, node+"-job-0")
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(stop.Deadline); left > 31*time.Second || left < 20*time.Second {
		t.Errorf("the stop notice's deadline is %v away, want the 30s the notice left", left)
	}
}

// TestFailedHandlingIsRetried cuts the controller off the API server while
// a notice arrives: the notice is kept, comes back, and is handled once the
// API server is reachable again.
func TestFailedHandlingIsRetried(t *testing.T) {
	t.Parallel()
	env := testenv.StartSQS(t)
	url := env.CreateQueue(t, "interruptions-", nil)
	b := setup(t, Config{})
	node, instance := b.node(t)
	b.pods(t, node, 1)
	b.c.sqs, b.c.cfg.QueueURL = env.Client, url
	spot, _ := os.ReadFile("testdata/spot-interruption.json")
	body := strings.ReplaceAll(strings.ReplaceAll(string(spot), "i-1234567890abcdef0", instance), "2026-11-22T10:00:00Z", time.Now().UTC().Format(time.RFC3339))
	b.proxy.Down()
	if _, err := env.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.c.Run(ctx) }()
	testenv.Eventually(t, 60*time.Second, "a failed handling kept for retry", func() bool {
		return testutil.ToFloat64(b.metrics.messages.WithLabelValues("retried")) >= 1
	})
	if visible, inFlight := env.Depth(t, url); visible+inFlight != 1 {
		t.Errorf("after a failed handling the queue holds %d messages, want the notice kept", visible+inFlight)
	}
	b.proxy.Up()
	testenv.Eventually(t, 60*time.Second, "the notice handled on its return", func() bool {
		return testutil.ToFloat64(b.metrics.messages.WithLabelValues("handled")) == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := b.podStates(t, node)[node+"-job-0"]; !strings.HasPrefix(got, "evicted") {
		t.Errorf("pod = %q, want it evicted once the API server came back", got)
	}
	if visible, inFlight := env.Depth(t, url); visible+inFlight != 0 {
		t.Errorf("the handled notice is still queued")
	}
}

func TestNoticeKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		file      string
		cfg       Config
		wantTaint string
		wantPod   string // state of the jobfleet pod; "" when deleted
	}{
		{name: "rebalance taints only", file: "rebalance-recommendation.json", wantTaint: "rebalance-recommendation", wantPod: "running"},
		{name: "rebalance moves proactively when configured", file: "rebalance-recommendation.json", cfg: Config{RebalanceEvicts: true}, wantTaint: "rebalance-recommendation", wantPod: "evicted grace=90 rebalance-recommendation g5.xlarge us-east-2a"},
		{name: "scheduled change", file: "scheduled-change.json", wantTaint: "scheduled-change", wantPod: "evicted grace=90 scheduled-change g5.xlarge us-east-2a"},
		{name: "capacity reservation", file: "capacity-reservation-interruption.json", wantTaint: "capacity-reservation-interruption", wantPod: "evicted grace=90 capacity-reservation-interruption g5.xlarge us-east-2a"},
		{name: "stopping", file: "state-change-stopping.json", wantTaint: "state-change", wantPod: "evicted grace=1 state-change g5.xlarge us-east-2a"},
		{name: "terminated with pods still bound reruns them now", file: "state-change-terminated.json", wantTaint: "state-change", wantPod: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.cfg)
			node, instance := b.node(t)
			b.pods(t, node, 1)
			if err := b.c.Handle(t.Context(), notice(t, tt.file, instance)); err != nil {
				t.Fatal(err)
			}
			if got := b.tainted(t, node); got != tt.wantTaint {
				t.Errorf("taint = %q, want %q", got, tt.wantTaint)
			}
			states := b.podStates(t, node)
			if got := states[node+"-job-0"]; got != tt.wantPod {
				t.Errorf("jobfleet pod = %q, want %q", got, tt.wantPod)
			}
			if got := states[node+"-other"]; got != "running" {
				t.Errorf("the other pod = %q", got)
			}
		})
	}
}

// TestNodeFoundByLabel: a node registered without the AWS cloud provider
// is found by its jobfleet.io/instance-id label.
func TestNodeFoundByLabel(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	node, instance := b.newNode(t, true)
	b.pods(t, node, 1)
	if err := b.c.Handle(t.Context(), notice(t, "spot-interruption.json", instance)); err != nil {
		t.Fatal(err)
	}
	if got := b.podStates(t, node)[node+"-job-0"]; got != "evicted grace=90 spot-interruption g5.xlarge us-east-2a" {
		t.Errorf("jobfleet pod = %q", got)
	}
}

func TestUnknownInstanceIsIgnored(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	if err := b.c.Handle(t.Context(), notice(t, "spot-interruption.json", "i-0000000000000dead")); err != nil {
		t.Errorf("a notice for another cluster's instance: %v", err)
	}
}

// TestQueueIsDrained sends real events through SQS: the handled, the
// unknown and the malformed are all deleted, and counted.
func TestQueueIsDrained(t *testing.T) {
	t.Parallel()
	env := testenv.StartSQS(t)
	url := env.CreateQueue(t, "interruptions-", nil)
	b := setup(t, Config{})
	node, instance := b.node(t)
	b.pods(t, node, 2)
	b.c.sqs, b.c.cfg.QueueURL = env.Client, url
	spot, _ := os.ReadFile("testdata/spot-interruption.json")
	unknown, _ := os.ReadFile("testdata/unknown-launch.json")
	running, _ := os.ReadFile("testdata/state-change-running.json")
	bodies := []string{
		strings.ReplaceAll(strings.ReplaceAll(string(spot), "i-1234567890abcdef0", instance), "2026-11-22T10:00:00Z", time.Now().UTC().Format(time.RFC3339)),
		string(unknown), string(running), `{"detail-type": 7}`,
	}
	for _, body := range bodies {
		if _, err := env.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.c.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(b.metrics.messages.WithLabelValues("handled"))+testutil.ToFloat64(b.metrics.messages.WithLabelValues("unknown"))+
		testutil.ToFloat64(b.metrics.messages.WithLabelValues("malformed"))+testutil.ToFloat64(b.metrics.messages.WithLabelValues("no_action")) < 4 {
		if time.Now().After(deadline) {
			t.Fatal("the notices were not all read")
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		visible, inFlight := env.Depth(t, url)
		if visible+inFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue still holds %d messages", visible+inFlight)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for result, want := range map[string]float64{"handled": 1, "unknown": 1, "no_action": 1, "malformed": 1} {
		if got := testutil.ToFloat64(b.metrics.messages.WithLabelValues(result)); got != want {
			t.Errorf("messages{%s} = %v, want %v", result, got, want)
		}
	}
	if got := b.podStates(t, node)[node+"-job-1"]; !strings.HasPrefix(got, "evicted") {
		t.Errorf("pod = %q", got)
	}
	if _, err := b.kube.CoreV1().Pods(b.ns).Get(t.Context(), node+"-other", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Error("the other pod was deleted")
	}
}

// BenchmarkEvict50 measures the time from a spot interruption notice to
// the eviction of all 50 jobfleet pods on its node.
func BenchmarkEvict50(b *testing.B) {
	bb := setup(b, Config{})
	for b.Loop() {
		b.StopTimer()
		node, instance := bb.node(b)
		bb.pods(b, node, 50)
		n := notice(b, "spot-interruption.json", instance)
		b.StartTimer()
		start := time.Now()
		if err := bb.c.Handle(b.Context(), n); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-evict-50")
	}
}
