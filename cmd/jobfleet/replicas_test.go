package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/jobtype"
)

var scaledJobsResource = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledjobs"}

// fleet is two dispatcher processes on one API server, with a stand-in
// for the workers that claims and ends every job the way workers do.
type fleet struct {
	sqs      *testenv.SQS
	s3       *testenv.S3
	store    contract.Store
	kube     *testenv.Kube
	client   kubernetes.Interface
	ns       string
	prefix   string
	intake   string
	dead     string
	records  string
	args     []string
	bin      string
	replicas map[string]*exec.Cmd
	outs     map[string]*testenv.Buffer

	mu      sync.Mutex
	claimed map[string]int // job/run/attempt -> times owned
	ended   map[string]int // job id -> successful ends
}

func (f *fleet) start(t *testing.T, name string) {
	t.Helper()
	cmd := exec.Command(f.bin, append(append([]string{}, f.args...), "--identity", name)...)
	cmd.Env = append(append(os.Environ(), f.sqs.Env()...), f.s3.Env()...)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.replicas[name], f.outs[name] = cmd, out
}

// leader returns the Lease's holder.
func (f *fleet) leader(ctx context.Context) string {
	l, err := f.client.CoordinationV1().Leases(f.ns).Get(ctx, "jobfleet-dispatcher", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// work plays the workers until ctx ends: it receives from every class
// queue, claims each attempt as a worker does, and ends it as a success.
func (f *fleet) work(ctx context.Context, t *testing.T) {
	for ctx.Err() == nil {
		out, err := f.sqs.Client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(f.prefix)})
		if err != nil {
			continue
		}
		for _, url := range out.QueueUrls {
			msgs, err := f.sqs.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 60, MessageAttributeNames: []string{"All"}})
			if err != nil {
				continue
			}
			for _, m := range msgs.Messages {
				f.run(ctx, t, url, m.Body, m.MessageId, m.ReceiptHandle, m.MessageAttributes)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *fleet) run(ctx context.Context, t *testing.T, url string, body, id, receipt *string, attrs map[string]sqstypes.MessageAttributeValue) {
	job, err := jobfleet.Decode([]byte(aws.ToString(body)))
	if err != nil {
		t.Errorf("a class queue holds an invalid job: %v", err)
		return
	}
	run, attempt, ok, err := queue.RunAttempt(attrs)
	if !ok || err != nil {
		t.Errorf("job %s forwarded without its run: %v", job.ID, err)
		return
	}
	if _, err := f.store.VerifyRun(ctx, job.ID, aws.ToString(body), run, attempt); err != nil {
		return // a leftover of a run that ended: a worker deletes it
	}
	c := &contract.Claim{JobID: job.ID, Type: job.Type, Run: run, Attempt: attempt, Holder: aws.ToString(id), MessageID: aws.ToString(id), QueueURL: url, ReceiptHandle: aws.ToString(receipt)}
	got, found, etag, err := f.store.Claim(ctx, c, time.Now(), time.Minute)
	if err != nil {
		return
	}
	switch got {
	case contract.Owned:
		f.mu.Lock()
		f.claimed[job.ID+"/"+run+"/"+fmt.Sprint(attempt)]++
		f.mu.Unlock()
		found.State, found.Outcome, found.Next = contract.ClaimEnded, jobfleet.OutcomeSucceeded, contract.NextDone
		if _, err := f.store.Update(ctx, found, etag); err != nil {
			return
		}
		if err := f.store.Complete(ctx, f.sqs.Client, contract.Queues{Intake: f.intake, DeadLetter: f.dead}, found, aws.ToString(body), url, aws.ToString(receipt), time.Now(), contract.Once(ctx)); err != nil {
			return
		}
		f.mu.Lock()
		f.ended[job.ID]++
		f.mu.Unlock()
	case contract.HeldByOther, contract.Ended:
		_, _ = f.sqs.Client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: receipt})
	}
}

// TestLeaderKilledWhileJobsFlow runs two dispatcher replicas, kills the
// leader with SIGKILL while jobs flow and classes are created and
// collected, and checks that no job was lost or run twice, and that every
// ScaledJob is what one replica alone would write.
func TestLeaderKilledWhileJobsFlow(t *testing.T) {
	t.Parallel()
	f := &fleet{sqs: testenv.NewSQS(t), s3: testenv.StartS3(t), kube: testenv.StartKube(t), replicas: map[string]*exec.Cmd{}, outs: map[string]*testenv.Buffer{},
		claimed: map[string]int{}, ended: map[string]int{}}
	f.store = contract.Store{S3: f.s3.Client, Bucket: f.s3.CreateBucket(t)}
	f.ns = f.kube.Namespace(t)
	var err error
	if f.client, err = kubernetes.NewForConfig(f.kube.Config); err != nil {
		t.Fatal(err)
	}
	f.prefix = testenv.UniqueName(t, "r", 16)
	f.intake, f.dead, f.records = f.sqs.CreateQueue(t, "intake-", nil), f.sqs.CreateQueue(t, "dead-", nil), f.sqs.CreateQueue(t, "records-", nil)
	registry, _ := filepath.Abs("../../dispatcher/testdata/jobtypes.yaml")
	f.bin = testenv.Build(t, "./cmd/jobfleet")
	f.args = []string{"--log-format", "json", "--log-level", "debug", "dispatcher", "--intake", f.intake, "--dead-letter", f.dead, "--records", f.records,
		"--bucket", f.store.Bucket, "--registry", registry, "--namespace", f.ns, "--kubeconfig", f.kube.Kubeconfig(t),
		"--class-prefix", f.prefix, "--worker-image", "jobfleet:test", "--metrics-addr", "127.0.0.1:0", "--no-retrain",
		"--class-idle-ttl", "5s", "--collect-interval", "1s", "--collect-fence", "4s", "--class-fresh", "2s", "--class-poll", "300ms",
		"--intake-visibility", "10s", "--polling-interval", "30s"}
	t.Cleanup(func() {
		for name, cmd := range f.replicas {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("--- replica %s:\n%s", name, f.outs[name].String())
			}
		}
	})
	stopWatch, watched := f.watchScaledJobs(t)
	defer stopWatch()
	f.start(t, "a")
	testenv.Eventually(t, 30*time.Second, "replica a to lead", func() bool { return f.leader(t.Context()) == "a" })
	f.start(t, "b")

	ctx, stopWork := context.WithCancel(t.Context())
	var workers sync.WaitGroup
	workers.Go(func() { f.work(ctx, t) })
	defer func() { stopWork(); workers.Wait() }()

	pub := jobfleet.NewPublisher(f.sqs.Client, f.intake)
	publish := func(typ string, from, n int) {
		var jobs []*jobfleet.Job
		for i := range n {
			jobs = append(jobs, &jobfleet.Job{Version: 1, ID: fmt.Sprintf("%s-%03d", typ, from+i), Type: typ, Features: map[string]float64{"rows": float64(i)}})
		}
		if err := pub.Publish(t.Context(), jobs...); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	endedAll := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.ended) == total
	}
	// First wave: two classes, created by a.
	publish("export", 0, 100)
	publish("report", 0, 100)
	total += 200
	testenv.Eventually(t, 2*time.Minute, "the first wave to end", endedAll)
	// The leader dies while a second wave flows, of new classes.
	publish("batch", 0, 100)
	if err := f.replicas["a"].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = f.replicas["a"].Wait()
	delete(f.replicas, "a")
	publish("embed", 0, 100)
	publish("export", 100, 50)
	total += 250
	testenv.Eventually(t, 3*time.Minute, "the second wave to end", endedAll)
	if got := f.leader(t.Context()); got != "b" {
		t.Errorf("leader after a's death = %q, want b", got)
	}
	// The first wave's report class, idle since, is collected by b.
	reportClass := f.prefix + "-report-cpu-2gi-od"
	testenv.Eventually(t, 2*time.Minute, "the idle report class to be collected", func() bool {
		_, err := f.kube.Dynamic.Resource(scaledJobsResource).Namespace(f.ns).Get(t.Context(), reportClass, metav1.GetOptions{})
		return err != nil && strings.Contains(err.Error(), "not found")
	})

	f.mu.Lock()
	for key, n := range f.claimed {
		if n != 1 {
			t.Errorf("attempt %s ran %d times", key, n)
		}
	}
	for id, n := range f.ended {
		if n != 1 {
			t.Errorf("job %s succeeded %d times", id, n)
		}
	}
	f.mu.Unlock()
	// What the killed replica held comes back after its visibility
	// timeout: its jobs ended already, and their messages go.
	deadline := time.Now().Add(time.Minute)
	for visible, inFlight := f.sqs.Depth(t, f.intake); visible+inFlight != 0; visible, inFlight = f.sqs.Depth(t, f.intake) {
		if time.Now().After(deadline) {
			out, _ := f.sqs.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.intake), MaxNumberOfMessages: 10,
				WaitTimeSeconds: 20, MessageAttributeNames: []string{"All"}, MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{"All"}})
			for _, m := range out.Messages {
				job, _ := jobfleet.Decode([]byte(aws.ToString(m.Body)))
				t.Logf("left in intake: job %v, attributes %v, system %v", job, m.MessageAttributes, m.Attributes)
			}
			if b := f.replicas["b"]; b != nil {
				_ = b.Process.Signal(syscall.SIGQUIT) // its goroutines, in its output
				_ = b.Wait()
				delete(f.replicas, "b")
				t.Logf("--- replica b:\n%s", f.outs["b"].String())
			}
			t.Fatalf("intake still holds %d visible and %d in flight after a minute", visible, inFlight)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if visible, inFlight := f.sqs.Depth(t, f.dead); visible+inFlight != 0 {
		t.Errorf("the dead-letter queue holds %d messages", visible+inFlight)
	}

	// Every ScaledJob, in every version written while the test ran, is
	// exactly what the flags render for its class.
	var cli CLI
	parser, err := newParser(&cli, &testenv.Buffer{}, &testenv.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(f.args[4:]); err != nil {
		t.Fatal(err)
	}
	reg, err := jobtype.Load(registry)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := cli.Dispatcher.config(reg, testenv.Region).Template
	tmpl.SQSEndpoint, tmpl.S3Endpoint = f.sqs.Endpoint, f.s3.Endpoint
	stopWatch()
	compared := map[string]bool{}
	for _, seen := range watched() {
		if seen.class == nil {
			continue // collected before its marker could be read
		}
		live := seen.job
		typ, _ := reg.Type(seen.class.Type)
		pool, _ := reg.Pool(typ.Pool)
		want := tmpl.ScaledJob(*seen.class, typ, pool, live.Annotations[dispatcher.AnnotationQueue])
		if !equality.Semantic.DeepEqual(want.Spec, live.Spec) || !equality.Semantic.DeepEqual(want.Labels, live.Labels) {
			gotJSON, _ := json.Marshal(live.Spec)
			wantJSON, _ := json.Marshal(want.Spec)
			t.Errorf("ScaledJob %s (resource version %s) differs from what one replica renders:\n got %s\nwant %s", live.Name, live.ResourceVersion, gotJSON, wantJSON)
		}
		for _, mf := range live.ManagedFields {
			if mf.Manager != dispatcher.ManagedBy {
				t.Errorf("ScaledJob %s has fields managed by %q", live.Name, mf.Manager)
			}
		}
		compared[live.Name] = true
	}
	// export, report, batch and embed: at least one class each.
	if len(compared) < 4 {
		t.Errorf("compared %d ScaledJobs (%v), want every class of the test", len(compared), compared)
	}
}

// seenScaledJob is one version of a ScaledJob observed by watchScaledJobs,
// with the class its marker names.
type seenScaledJob struct {
	job   kedav1alpha1.ScaledJob
	class *dispatcher.Class
}

// watchScaledJobs records every version of every ScaledJob written in the
// fleet's namespace until stop is called; seen returns them.
func (f *fleet) watchScaledJobs(t *testing.T) (stop func(), seen func() []seenScaledJob) {
	t.Helper()
	w, err := f.kube.Dynamic.Resource(scaledJobsResource).Namespace(f.ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		got  []seenScaledJob
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			var sj kedav1alpha1.ScaledJob
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &sj); err != nil {
				t.Errorf("a ScaledJob that does not decode: %v", err)
				continue
			}
			cl, _ := f.marker(context.WithoutCancel(t.Context()), sj.Name)
			mu.Lock()
			got = append(got, seenScaledJob{job: sj, class: cl})
			mu.Unlock()
		}
	}()
	stop = func() { w.Stop(); <-done }
	seen = func() []seenScaledJob {
		mu.Lock()
		defer mu.Unlock()
		return append([]seenScaledJob(nil), got...)
	}
	return stop, seen
}

// marker reads the class a ScaledJob was made for, from its marker.
func (f *fleet) marker(ctx context.Context, name string) (*dispatcher.Class, error) {
	out, err := f.s3.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(f.store.Bucket), Key: aws.String("jobfleet/classes/" + name + ".json")})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	var cl dispatcher.Class
	if err := json.NewDecoder(out.Body).Decode(&cl); err != nil {
		return nil, err
	}
	return &cl, nil
}
