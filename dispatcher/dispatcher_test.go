package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/predictor"
)

// bundle is one test's queues, namespace and dispatcher settings.
type bundle struct {
	sqs    *testenv.SQS
	s3     *testenv.S3
	store  contract.Store
	kube   *testenv.Kube
	ns     string
	intake string
	dead   string
	prefix string
	cfg    Config
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupWith(t, testenv.StartSQS(t))
}

func setupWith(t *testing.T, sqsEnv *testenv.SQS) *bundle {
	t.Helper()
	b := &bundle{sqs: sqsEnv, s3: testenv.StartS3(t), kube: testenv.StartKube(t)}
	b.ns = b.kube.Namespace(t)
	bucket := b.s3.CreateBucket(t)
	b.store = contract.Store{S3: b.s3.Client, Bucket: bucket, Prefix: "jobfleet"}
	b.intake = b.sqs.CreateQueue(t, "intake-", nil)
	b.dead = b.sqs.CreateQueue(t, "dead-", nil)
	b.prefix = testenv.UniqueName(t, "c", 20)
	b.cfg = Config{
		IntakeURL: b.intake, DeadLetterURL: b.dead, Registry: registry(t), Bucket: bucket,
		Template: Template{
			Namespace: b.ns, Prefix: b.prefix, WorkerImage: "jobfleet:test", Region: testenv.Region,
			IntakeURL: b.intake, DeadLetterURL: b.dead, RecordsURL: "http://records", Bucket: "b", CheckpointPrefix: "jobfleet",
			SQSEndpoint: b.sqs.Endpoint,
		},
		IntakeVisibility: 30 * time.Second,
		RetryDelay:       time.Second,
		ClassPoll:        200 * time.Millisecond,
	}
	t.Cleanup(func() { b.deleteClassQueues(context.Background()) })
	return b
}

// deleteClassQueues removes the class queues the test's dispatcher made.
func (b *bundle) deleteClassQueues(ctx context.Context) {
	out, err := b.sqs.Client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(b.prefix)})
	if err != nil {
		return
	}
	for _, url := range out.QueueUrls {
		_, _ = b.sqs.Client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	}
}

func (b *bundle) classURL(t *testing.T, name string) string {
	t.Helper()
	out, err := b.sqs.Client.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("class queue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// start runs a dispatcher until the returned stop is called.
func (b *bundle) start(t *testing.T, cfg Config, opts ...Option) (d *Dispatcher, stop func()) {
	t.Helper()
	opts = append([]Option{WithRegisterer(prometheus.NewRegistry()), WithLogger(zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))}, opts...)
	d, err := New(cfg, b.sqs.Client, b.s3.Client, b.kube.Dynamic, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return d, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	}
}

// constantModel is a model file's worth of per-type predictions, read as
// the dispatcher reads one: a real *predictor.Model whose estimators are
// constants.
func constantModel(sizes map[string]float64) *predictor.Model {
	return constantModelAt(sizes, time.Time{}, time.Time{})
}

// constantModelAt is a constantModel trained at the time given, on the
// runs that had ended at runsUntil.
func constantModelAt(sizes map[string]float64, trained, runsUntil time.Time) *predictor.Model {
	types := map[string]any{}
	for typ, v := range sizes {
		types[typ] = map[string]any{"kind": "quantile", "constant": math.Log(v), "floor": 0, "ceiling": 100}
	}
	return modelFile(map[string]any{"types": types, "trained_at": trained, "runs_until": runsUntil})
}

// linearModelAt is a model file that sizes typ by a linear estimator of
// features (log1p of each; -1 for a missing one): exp(coef[0] +
// coef[1]*x1 + ...), trained and with runs read at at.
func linearModelAt(typ string, features []string, coef []float64, at time.Time) *predictor.Model {
	est := map[string]any{"kind": "linear", "linear": map[string]any{"coef": coef}, "floor": 0, "ceiling": 100}
	return modelFile(map[string]any{"features": features, "types": map[string]any{typ: est}, "trained_at": at, "runs_until": at})
}

// modelFile reads a model file of q = 0.9 with fields, as the dispatcher
// reads one.
func modelFile(fields map[string]any) *predictor.Model {
	fields["format"], fields["version"], fields["quantile"] = "jobfleet-predictor", 2, 0.9
	file, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	m, err := predictor.ReadModel(bytes.NewReader(file))
	if err != nil {
		panic(err)
	}
	return m
}

type staticModels struct{ m *predictor.Model }

func (s staticModels) Model() *predictor.Model { return s.m }

// expectation is where a job must land.
type expectation struct {
	class string
	size  int64
}

// rerun does what a worker does when an attempt of a job ends: it records
// the run's history in the attempt's claim, with a rerun to follow, and
// sends the next attempt to intake. It returns the run.
func (b *bundle) rerun(t *testing.T, job *jobfleet.Job, history jobfleet.History) string {
	t.Helper()
	ctx, run, n := t.Context(), "run-"+job.ID, len(history)
	body, err := jobfleet.Encode(job)
	if err != nil {
		t.Fatal(err)
	}
	if start, _, err := b.store.StartRun(ctx, job, string(body), run, time.Time{}, time.Now(), nil); err != nil || start != contract.Started {
		t.Fatalf("starting a run of %s: %v %v", job.ID, start, err)
	}
	c := &contract.Claim{JobID: job.ID, Type: job.Type, Run: run, Attempt: n, Holder: "w", MessageID: "m"}
	_, _, etag, err := b.store.Claim(ctx, c, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c.State, c.Next, c.Outcome, c.History = contract.ClaimEnded, contract.NextRerun, jobfleet.OutcomeFailed, history
	if _, err := b.store.Update(ctx, c, etag); err != nil {
		t.Fatal(err)
	}
	if f := queue.Send(ctx, b.sqs.Client, b.intake, []queue.Message{queue.ForwardMessage(string(body), job.Type, run, n+1)}, queue.Retry{}); len(f) > 0 {
		t.Fatal(f[0].Err)
	}
	return run
}

// publishMix publishes n jobs of four types, some of them reruns with OOM
// and interruption history, and returns where each must land.
func (b *bundle) publishMix(t *testing.T, n int) map[string]expectation {
	t.Helper()
	want := map[string]expectation{}
	var jobs []*jobfleet.Job
	reruns := map[*jobfleet.Job]jobfleet.History{}
	for i := range n {
		job := &jobfleet.Job{Version: 1, ID: fmt.Sprintf("job-%05d", i), Features: map[string]float64{"rows": float64(i)}, Priority: i % 10}
		var class string
		var size int64
		switch i % 4 {
		case 0: // predicted 1.5Gi, rounded up to 2Gi
			job.Type, class, size = "export", b.prefix+"-export-cpu-2gi", 2*gib
			if i%40 == 0 { // an OOM at 2Gi: 3Gi, rounded up to 4Gi
				reruns[job] = jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: 2 * gib}}
				class, size = b.prefix+"-export-cpu-4gi", 4*gib
			}
		case 1: // no prediction: the default 8Gi
			job.Type, class, size = "train", b.prefix+"-train-gpu-8gi", 8*gib
			if i%20 == 1 { // interrupted twice: on-demand
				reruns[job] = jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}, {Attempt: 2, Reason: jobfleet.ReasonInterrupted}}
				class = b.prefix + "-train-gpu-8gi-od"
			}
		case 2:
			job.Type, class, size = "report", b.prefix+"-report-cpu-2gi-od", 2*gib
		case 3:
			job.Type, class, size = "batch", b.prefix+"-batch-cpu-512mi-spot", 512<<20
		}
		want[job.ID] = expectation{class: class, size: size}
		if _, ok := reruns[job]; !ok {
			jobs = append(jobs, job)
		}
	}
	if err := jobfleet.NewPublisher(b.sqs.Client, b.intake).Publish(t.Context(), jobs...); err != nil {
		t.Fatalf("publishing: %v", err)
	}
	for job, history := range reruns {
		b.rerun(t, job, history)
	}
	return want
}

// publishBad sends poison and unknown-type messages straight to intake.
func (b *bundle) publishBad(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		for _, body := range []string{fmt.Sprintf(`{"version":1,"id":"poison-%d"`, i), fmt.Sprintf(`{"version":1,"id":"alien-%d","type":"quantum"}`, i)} {
			if _, err := b.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(b.intake), MessageBody: aws.String(body)}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// drainClasses receives every message of the given classes and checks each
// job landed exactly once where it should.
func (b *bundle) drainClasses(t *testing.T, want map[string]expectation) {
	t.Helper()
	perClass := map[string]int{}
	for _, e := range want {
		perClass[e.class]++
	}
	seen := map[string]int{}
	for class, n := range perClass {
		for _, m := range b.sqs.Receive(t, b.classURL(t, class), n, true) {
			job, err := jobfleet.Decode([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Fatalf("class %s holds an invalid job: %v", class, err)
			}
			seen[job.ID]++
			e := want[job.ID]
			if e.class != class {
				t.Errorf("job %s landed in %s, want %s", job.ID, class, e.class)
			}
			if got := aws.ToString(m.MessageAttributes[AttrMemory].StringValue); got != strconv.FormatInt(e.size, 10) {
				t.Errorf("job %s memory attribute %s, want %d", job.ID, got, e.size)
			}
		}
		if visible, inFlight := b.sqs.Depth(t, b.classURL(t, class)); visible+inFlight != 0 {
			t.Errorf("class %s holds %d more messages than jobs routed to it: duplicates", class, visible+inFlight)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("job %s landed %d times", id, seen[id])
		}
	}
}

// waitForClasses waits until the class queues hold n messages in all.
func (b *bundle) waitForClasses(t *testing.T, classes []string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		total := 0
		for _, c := range classes {
			out, err := b.sqs.Client.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(c)})
			if err != nil {
				continue
			}
			v, f := b.sqs.Depth(t, aws.ToString(out.QueueUrl))
			total += v + f
		}
		if total >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the class queues hold %d of %d jobs", timeout, total, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func classNames(want map[string]expectation) []string {
	set := map[string]bool{}
	for _, e := range want {
		set[e.class] = true
	}
	var out []string
	for c := range set {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func TestDispatchTenThousandJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n, bad = 10000, 25
	start := time.Now()
	want := b.publishMix(t, n)
	b.publishBad(t, bad)
	t.Logf("published in %v", time.Since(start))
	model := staticModels{constantModel(map[string]float64{"export": 1.5 * gib, "report": 1.2 * gib, "batch": 300 << 20})}

	d, stop := b.start(t, b.cfg, WithModels(model))
	classes := classNames(want)
	start = time.Now()
	b.waitForClasses(t, classes, n, 5*time.Minute)
	t.Logf("dispatched in %v", time.Since(start))
	testenv.Eventually(t, 10*time.Second, "the classes gauge to count the classes", func() bool {
		return testutil.ToFloat64(d.metrics.classes) == float64(len(classes))
	})
	deadMsgs := b.sqs.Receive(t, b.dead, 2*bad, true)
	stop()

	start = time.Now()
	b.drainClasses(t, want)
	t.Logf("drained in %v", time.Since(start))
	reasons := map[string]int{}
	for _, m := range deadMsgs {
		reason := aws.ToString(m.MessageAttributes[jobfleet.AttrError].StringValue)
		switch {
		case strings.Contains(reason, "malformed JSON"):
			reasons["poison"]++
		case strings.Contains(reason, `unknown job type "quantum"`):
			reasons["unknown"]++
		default:
			t.Errorf("dead letter with reason %q", reason)
		}
	}
	if reasons["poison"] != bad || reasons["unknown"] != bad {
		t.Errorf("dead letters = %v, want %d of each", reasons, bad)
	}
	if visible, inFlight := b.sqs.Depth(t, b.intake); visible+inFlight != 0 {
		t.Errorf("intake still holds %d messages", visible+inFlight)
	}

	list, err := b.kube.Dynamic.Resource(scaledJobs).Namespace(b.ns).List(t.Context(), metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sj := range list.Items {
		got = append(got, sj.GetName())
	}
	slices.Sort(got)
	if strings.Join(got, ",") != strings.Join(classes, ",") {
		t.Errorf("ScaledJobs = %v, want exactly the classes in use %v", got, classes)
	}
}
