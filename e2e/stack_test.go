package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/dispatcher/interruption"
	"github.com/jobfleet/jobfleet/internal/awsaccess"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/localstack"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/jobtype"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is one test's view of the end-to-end stack: its own namespace,
// queues, bucket and class prefix on the shared control plane.
type stack struct {
	sqs       *testenv.SQS
	s3        *testenv.S3
	cluster   *testenv.Cluster
	ns        string
	bucket    string
	intake    string
	dead      string
	records   string
	interrupt string
	prefix    string
	testjob   string
	jobfleet  string
	// logs holds the count jobs' logs, one <job id>.log each.
	logs string

	// runs holds every run record received so far.
	runs []jobfleet.RunRecord
	// registryYAML is the registry registry parsed, for the chart.
	registryYAML string
	// installed is set when the dispatcher is the chart's: it stores the
	// run records in S3, where the test reads them; stored lists the files
	// read.
	installed bool
	stored    map[string]bool
	// recorded, when set, records the AWS calls of the chart's
	// dispatcher, its workers and KEDA.
	recorded *recorders
	// sns and sfn, when set (announce), receive the completion events of
	// the dispatcher's and workers' jobs and their task tokens' callbacks.
	sns    *localstack.SNSServer
	sfn    *localstack.SFNServer
	events string // the events topic
}

func setup(t *testing.T) *stack {
	t.Helper()
	s := &stack{sqs: testenv.StartSQS(t), s3: testenv.StartS3(t)}
	s.cluster = testenv.StartCluster(t, append(s.sqs.Env(), s.s3.Env()...))
	if !s.cluster.Runner.EnforcesMemory() {
		t.Fatal("the pod runner cannot enforce memory limits on this machine: it needs a writable cgroup v1 memory hierarchy (/sys/fs/cgroup/memory)")
	}
	s.ns = s.cluster.Namespace(t)
	s.bucket = s.s3.CreateBucket(t)
	s.intake = s.sqs.CreateQueue(t, "intake-", nil)
	s.dead = s.sqs.CreateQueue(t, "dead-", nil)
	s.records = s.sqs.CreateQueue(t, "records-", nil)
	s.interrupt = s.sqs.CreateQueue(t, "interrupt-", nil)
	s.prefix = testenv.UniqueName(t, "e", 14)
	s.testjob = testenv.Build(t, "./internal/testenv/testjob")
	s.jobfleet = testenv.Build(t, "./cmd/jobfleet")
	s.logs = t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{"keda-operator", "karpenter", "kube-scheduler", "kube-controller-manager"} {
				t.Logf("--- %s log tail:\n%s", c, s.cluster.Log(c, 3000))
			}
			if pods, err := s.cluster.Typed.CoreV1().Pods(s.ns).List(context.Background(), metav1.ListOptions{}); err == nil {
				for _, p := range pods.Items {
					reason := ""
					if cs := p.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Terminated != nil {
						reason = cs[0].State.Terminated.Reason
					}
					t.Logf("pod %s: %s on %q %s", p.Name, p.Status.Phase, p.Spec.NodeName, reason)
				}
			}
			for pod, out := range s.cluster.Runner.Output(s.ns, 4000) {
				t.Logf("--- pod %s output:\n%s", pod, out)
			}
		}
	})
	return s
}

// pools are the end-to-end registry's pools, on the simulated instance
// types of internal/testenv/e2e/instance-types.json: a CPU pool of two
// architectures, a GPU pool, and a 60/40 spot/on-demand split.
const pools = `
pools:
  - name: cpu
    archs: [amd64, arm64]
    instanceTypes: [m7i.large, m7i.xlarge, m7i.2xlarge, m7g.large, m7g.xlarge]
    sizes: [64Mi, 128Mi, 256Mi, 512Mi, 1Gi, 2Gi]
    consolidateAfter: 5s
  - name: gpu
    gpu: true
    instanceTypes: [g5.xlarge, g5.2xlarge]
    sizes: [256Mi, 512Mi, 1Gi, 2Gi]
    consolidateAfter: 5s
  - name: split
    archs: [amd64, arm64]
    spotPercent: 60
    instanceTypes: [m7i.large, m7g.large]
    sizes: [64Mi, 128Mi]
    consolidateAfter: 5s
types:
`

// registry parses job types for the test, with the stack's pools, and
// applies the NodePools `jobfleet nodepools --kwok` renders from them.
// TESTJOB in a command is the test job binary, LOGS the test's log
// directory.
func (s *stack) registry(t *testing.T, types string) *jobtype.Registry {
	t.Helper()
	yaml := pools + strings.NewReplacer("TESTJOB", s.testjob, "LOGS", s.logs).Replace(types)
	reg, err := jobtype.Parse("e2e.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s.registryYAML = yaml
	rendered, err := dispatcher.RenderNodePools(reg, dispatcher.NodeClass{KWOK: true})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := rendered.Objects()
	if err != nil {
		t.Fatal(err)
	}
	s.cluster.Apply(t, objs)
	return reg
}

// dispatch runs a dispatcher, with the interruption controller, until the
// returned stop is called (or the test ends).
func (s *stack) dispatch(t *testing.T, reg *jobtype.Registry) (stop func()) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	avoid := &interruption.AvoidConfigMap{Client: s.cluster.Typed, Namespace: s.ns, TTL: time.Hour, Clock: clock.RealClock{}}
	if err := avoid.Start(ctx); err != nil {
		t.Fatal(err)
	}
	interruptions := interruption.New(interruption.Config{QueueURL: s.interrupt, Namespace: s.ns},
		&interruption.Kubernetes{Client: s.cluster.Typed, Namespace: s.ns},
		s.sqs.Client, avoid, s.store(), interruption.NewMetrics(prometheus.NewRegistry()), log, nil)
	cfg := dispatcher.Config{
		IntakeURL: s.intake, DeadLetterURL: s.dead, Registry: reg, Bucket: s.bucket, ClassPoll: 500 * time.Millisecond,
		Template: dispatcher.Template{
			Namespace: s.ns, Prefix: s.prefix, WorkerImage: "jobfleet:e2e", Region: testenv.Region,
			IntakeURL: s.intake, DeadLetterURL: s.dead, RecordsURL: s.records, Bucket: s.bucket, CheckpointPrefix: "jobfleet",
			SQSEndpoint: s.sqs.Endpoint, S3Endpoint: s.s3.Endpoint, PollingInterval: time.Second,
			VisibilityTimeout: 30 * time.Second,
		},
		IntakeVisibility: 30 * time.Second, RetryDelay: time.Second, ClassIdleTTL: 20 * time.Second, CollectInterval: 2 * time.Second,
		ClassFresh: 2 * time.Second, CollectFence: 6 * time.Second,
	}
	opts := []dispatcher.Option{}
	if s.sns != nil {
		cfg.Template.EventsTopic, cfg.Template.SNSEndpoint, cfg.Template.SFNEndpoint = s.events, s.sns.Endpoint, s.sfn.Endpoint
		awsCfg := testenv.AWSConfig()
		opts = append(opts, dispatcher.WithAnnouncements(
			sns.NewFromConfig(awsCfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(s.sns.Endpoint) }),
			sfn.NewFromConfig(awsCfg, func(o *sfn.Options) { o.BaseEndpoint = aws.String(s.sfn.Endpoint) })))
	}
	d, err := dispatcher.New(cfg, s.sqs.Client, s.s3.Client, s.cluster.Dynamic, append(opts,
		dispatcher.WithRegisterer(prometheus.NewRegistry()),
		dispatcher.WithLogger(log),
		dispatcher.WithKubernetes(s.cluster.Typed, nil),
		dispatcher.WithSensor(dispatcher.SensorConfig{RecordsURL: s.records}),
		dispatcher.WithInterruptions(interruptions, avoid))...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dispatcher: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// announce starts local SNS and Step Functions servers on 127.0.0.1 that
// the next dispatch's dispatcher and workers send completion events and
// task token callbacks to.
func (s *stack) announce(t *testing.T) {
	t.Helper()
	var err error
	if s.sns, err = localstack.StartSNS(0, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.sns.Stop)
	if s.sfn, err = localstack.StartSFN(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.sfn.Stop)
	s.events = s.sns.CreateTopic(testenv.UniqueName(t, "events-", 60))
}

// dispatcherAccessKey is the access key ID of the installed dispatcher's
// AWS calls.
const dispatcherAccessKey = "dispatcher"

// recorders record the AWS calls made through them, by component.
type recorders struct {
	sqs, s3 *testenv.AWSRecorder
	stack   awsaccess.Stack
}

// recordAWS gives the test queues named as deploy/aws/jobfleet.yaml names
// a stack's, and has the chart's dispatcher, its workers and KEDA reach SQS
// and S3 through recorders, so that checkLeastPrivilege can evaluate every
// call they made against the stack's roles. Call it before install.
func (s *stack) recordAWS(t *testing.T) {
	t.Helper()
	name := testenv.UniqueName(t, "s", 30)
	for _, q := range []struct {
		url  *string
		name string
	}{{&s.intake, "intake"}, {&s.dead, "dead-letter"}, {&s.records, "records"}, {&s.interrupt, "interruptions"}} {
		out, err := s.sqs.Client.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name + "-" + q.name)})
		if err != nil {
			t.Fatal(err)
		}
		*q.url = aws.ToString(out.QueueUrl)
		t.Cleanup(func() {
			_, _ = s.sqs.Client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl})
		})
	}
	s.recorded = &recorders{
		sqs: testenv.RecordAWS(t, s.sqs.Endpoint),
		s3:  testenv.RecordAWS(t, s.s3.Endpoint),
		stack: awsaccess.Stack{
			Template: "../deploy/aws/jobfleet.yaml",
			Params: map[string]string{
				"Name": name, "ClassPrefix": s.prefix, "BucketName": s.bucket, "Prefix": "jobfleet", "Namespace": s.ns,
				"KedaOperatorRoleArn": "arn:aws:iam::" + testenv.Account + ":role/keda-operator",
			},
			Region: testenv.Region, Account: testenv.Account,
		},
	}
}

// checkLeastPrivilege evaluates the recorded AWS calls against the stack's
// roles: a call a role does not allow fails the test. The grants no call
// used are kept for TestEveryGrantUsed, which fails on those that no
// scenario used.
func (s *stack) checkLeastPrivilege(t *testing.T) {
	t.Helper()
	components := map[string]awsaccess.Component{
		dispatcherAccessKey: awsaccess.Dispatcher, testenv.AccessKey: awsaccess.Worker, testenv.KEDAAccessKey: awsaccess.KEDA,
	}
	calls := map[awsaccess.Component][]awsaccess.Call{awsaccess.Dispatcher: nil, awsaccess.Worker: nil, awsaccess.KEDA: nil}
	for _, rec := range []*testenv.AWSRecorder{s.recorded.sqs, s.recorded.s3} {
		for _, u := range rec.Unknown() {
			t.Errorf("an AWS call whose permission cannot be checked: %s", u)
		}
		for _, c := range rec.Calls() {
			comp, ok := components[c.AccessKeyID]
			if !ok {
				t.Errorf("an AWS call by an unknown caller: %s", c)
				continue
			}
			calls[comp] = append(calls[comp], awsaccess.Call{Action: c.Action, Resource: c.Resource, Context: c.Context})
		}
	}
	for comp, cs := range calls {
		if len(cs) == 0 {
			t.Errorf("no AWS call of the %s was recorded", comp)
		}
	}
	rep, err := awsaccess.Check(s.recorded.stack, calls)
	if err != nil {
		t.Fatal(err)
	}
	// Only SQS and S3 go through the recorders.
	rep = rep.Only("sqs", "s3")
	for _, d := range rep.Denied {
		t.Errorf("denied by the stack's policies: %s", d)
	}
	unused := map[string]awsaccess.Grant{}
	for _, g := range rep.Unused {
		unused[fmt.Sprintf("%s: %s %s", g.Component, g.Statement, g.Action)] = g
	}
	grants.mu.Lock()
	defer grants.mu.Unlock()
	grants.unused = append(grants.unused, unused)
}

// grants are the grants each recorded scenario left unused.
var grants struct {
	mu     sync.Mutex
	unused []map[string]awsaccess.Grant // by "component: statement action"
}

// chart is the Helm chart the end-to-end tier installs.
const chart = "../deploy/chart/jobfleet"

// install installs the dispatcher with the Helm chart, as a platform team
// would, into the test's namespace: two replicas on the system node, which
// the pod runner runs as the chart's service account, so that the API
// server authorizes every call by the chart's RBAC alone. It returns when
// a replica leads.
func (s *stack) install(t *testing.T, reg *jobtype.Registry) {
	t.Helper()
	sqsEndpoint, s3Endpoint := s.sqs.Endpoint, s.s3.Endpoint
	if s.recorded != nil {
		sqsEndpoint, s3Endpoint = s.recorded.sqs.URL(), s.recorded.s3.URL()
	}
	if reg == nil || s.registryYAML == "" {
		t.Fatal("install needs the registry that s.registry parsed")
	}
	values := map[string]any{
		"image":    map[string]any{"repository": "jobfleet", "tag": "e2e"},
		"replicas": 2,
		"aws": map[string]any{
			"region": testenv.Region, "intakeQueue": s.intake, "deadLetterQueue": s.dead, "recordsQueue": s.records,
			"interruptionQueue": s.interrupt, "bucket": s.bucket, "prefix": "jobfleet",
			"sqsEndpoint": sqsEndpoint, "s3Endpoint": s3Endpoint,
		},
		"dispatcher": map[string]any{
			"classPrefix": s.prefix, "retrain": false, "pollingInterval": "1s",
			// The test's pace: idle classes go within a test, run records
			// land in S3 within a second.
			"extraArgs": []string{"--class-idle-ttl=20s", "--collect-interval=2s", "--class-fresh=2s", "--collect-fence=6s",
				"--class-poll=500ms", "--intake-visibility=30s", "--records-flush=1s"},
			// Both replicas run on this host, where a fixed port would
			// collide.
			"extraEnv": []map[string]string{{"name": "JOBFLEET_METRICS_ADDR", "value": "127.0.0.1:0"},
				// Its calls are told apart from the workers' and KEDA's.
				{"name": "AWS_ACCESS_KEY_ID", "value": dispatcherAccessKey}},
		},
		"registry":     s.registryYAML,
		"nodeSelector": map[string]string{testenv.LabelSystemNode: "true"},
	}
	data, err := json.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "values.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	helm := testenv.Tool(t, "helm")
	release := s.prefix
	helmCmd := func(ctx context.Context, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, helm, append(args, "--namespace", s.ns, "--kubeconfig", s.cluster.Kubeconfig)...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		return cmd.CombinedOutput()
	}
	if out, err := helmCmd(t.Context(), "install", release, chart, "--values", file); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// The ClusterRole and its binding outlive the namespace.
		if out, err := helmCmd(context.Background(), "uninstall", release); err != nil {
			t.Errorf("helm uninstall: %v\n%s", err, out)
		}
	})
	s.installed, s.stored = true, map[string]bool{}
	await(t, 2*time.Minute, "a dispatcher replica to lead", func(ctx context.Context) (bool, error) {
		lease, err := s.cluster.Typed.CoordinationV1().Leases(s.ns).Get(ctx, "jobfleet-dispatcher", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "", nil
	})
}

// publish sends jobs to the intake queue with `jobfleet publish`, as JSON
// Lines on its standard input.
func (s *stack) publish(t *testing.T, jobs ...*jobfleet.Job) {
	t.Helper()
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, j := range jobs {
		if err := enc.Encode(j); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), s.jobfleet, "publish", "--queue", s.intake, "--log-format", "json")
	cmd.Env = append(os.Environ(), s.sqs.Env()...)
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("jobfleet publish: %v\n%s", err, out)
	}
}

// jobs returns n jobs of a type, with ids <prefix>-<i>, labelled
// batch=<prefix>.
func jobs(typ, prefix string, n int) []*jobfleet.Job {
	out := make([]*jobfleet.Job, n)
	for i := range out {
		out[i] = &jobfleet.Job{Version: jobfleet.Version, ID: fmt.Sprintf("%s-%02d", prefix, i), Type: typ, Labels: map[string]string{"batch": prefix}}
	}
	return out
}

// awaitRuns collects run records until done says they are enough.
func (s *stack) awaitRuns(t *testing.T, timeout time.Duration, what string, done func(runs []jobfleet.RunRecord) bool) {
	t.Helper()
	await(t, timeout, what, func(ctx context.Context) (bool, error) {
		if err := s.receiveRuns(ctx); err != nil {
			return false, err
		}
		return done(s.runs), nil
	})
}

// receiveRuns adds the records waiting in the records queue to s.runs,
// or, with the chart's dispatcher, which consumes that queue, the records
// it stored in S3 since last time.
func (s *stack) receiveRuns(ctx context.Context) error {
	if s.installed {
		return s.readStoredRuns(ctx)
	}
	for _, m := range s.receive(ctx, s.records) {
		r, err := jobfleet.DecodeRunRecord([]byte(aws.ToString(m.Body)))
		if err != nil {
			return err
		}
		s.runs = append(s.runs, *r)
	}
	return nil
}

// readStoredRuns adds the run records in files the dispatcher stored in S3
// that were not read before to s.runs.
func (s *stack) readStoredRuns(ctx context.Context) error {
	p := s3.NewListObjectsV2Paginator(s.s3.Client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(dispatcher.RecordsPrefix("jobfleet") + "/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if s.stored[key] {
				continue
			}
			out, err := s.s3.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: o.Key})
			if err != nil {
				return err
			}
			runs, err := decodeStoredRuns(out.Body)
			out.Body.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			s.runs = append(s.runs, runs...)
			s.stored[key] = true
		}
	}
	return nil
}

// decodeStoredRuns reads one gzip JSON Lines file of run records.
func decodeStoredRuns(r io.Reader) ([]jobfleet.RunRecord, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	var runs []jobfleet.RunRecord
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		rec, err := jobfleet.DecodeRunRecord(sc.Bytes())
		if err != nil {
			return nil, err
		}
		runs = append(runs, *rec)
	}
	return runs, sc.Err()
}

// receive takes what a queue holds now, without waiting for more.
func (s *stack) receive(ctx context.Context, url string) []sqstypes.Message {
	var got []sqstypes.Message
	for {
		out, err := s.sqs.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 0,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil || len(out.Messages) == 0 {
			return got
		}
		for _, m := range out.Messages {
			if _, err := s.sqs.Client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err == nil {
				got = append(got, m)
			}
		}
	}
}

// runsOf groups run records by job id, in attempt order.
func runsOf(runs []jobfleet.RunRecord) map[string][]jobfleet.RunRecord {
	out := map[string][]jobfleet.RunRecord{}
	for _, r := range runs {
		out[r.JobID] = append(out[r.JobID], r)
	}
	for _, rs := range out {
		slices.SortFunc(rs, func(a, b jobfleet.RunRecord) int { return cmp.Compare(a.Attempt, b.Attempt) })
	}
	return out
}

// succeeded counts the distinct jobs with a successful run.
func succeeded(runs []jobfleet.RunRecord) int {
	ids := map[string]bool{}
	for _, r := range runs {
		if r.Outcome == jobfleet.OutcomeSucceeded {
			ids[r.JobID] = true
		}
	}
	return len(ids)
}

// await polls cond every quarter second until it holds, failing the test
// with what it waited for after timeout.
func await(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	start := time.Now()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		// One stuck request must not use up the whole wait.
		callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ok, err := cond(callCtx)
		if err != nil && callCtx.Err() != nil {
			// A call cut short by the deadline is the timeout, not an error.
			last = err
			return false, nil
		}
		return ok, err
	})
	switch {
	case wait.Interrupted(err):
		t.Fatalf("waited %v for %s, in vain (last error: %v)", time.Since(start).Round(time.Second), what, last)
	case err != nil:
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// store is the stack's jobfleet records in S3.
func (s *stack) store() contract.Store {
	return contract.Store{S3: s.s3.Client, Bucket: s.bucket}
}

// checkpointed reports whether the current run of a job has a checkpoint
// in S3. Each call is bounded, so that one stuck request cannot use up a
// test's wait.
func (s *stack) checkpointed(ctx context.Context, jobID string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	run, _, err := s.store().ReadRun(ctx, jobID)
	if errors.Is(err, contract.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = s.s3.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.store().CheckpointPrefix(jobID, run.Run) + "/manifest.json")})
	var notFound *s3types.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	return err == nil, err
}

// listBucket lists the test bucket's keys, for failure messages.
func (s *stack) listBucket(t *testing.T) string {
	var b strings.Builder
	p := s3.NewListObjectsV2Paginator(s.s3.Client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			fmt.Fprintf(&b, "listing: %v\n", err)
			break
		}
		for _, o := range page.Contents {
			fmt.Fprintf(&b, "%s %d\n", aws.ToString(o.Key), aws.ToInt64(o.Size))
		}
	}
	return b.String()
}

// jobLog returns the lines a count job logged, over all its attempts.
func (s *stack) jobLog(t *testing.T, jobID string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.logs, jobID+".log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// runningPods returns the test's running job pods.
func (s *stack) runningPods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := s.cluster.Typed.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=jobfleet"})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// activeJobs counts the test's Kubernetes Jobs that still run pods.
func (s *stack) activeJobs(ctx context.Context) (int, error) {
	list, err := s.cluster.Typed.BatchV1().Jobs(s.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, j := range list.Items {
		if !finished(&j) {
			n++
		}
	}
	return n, nil
}

func finished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// interruptSpot publishes EC2's spot interruption warning for the instance
// of a node to the interruption queue, as EventBridge would.
func (s *stack) interruptSpot(t *testing.T, node string) {
	t.Helper()
	instance := testenv.InstanceID(node)
	await(t, 30*time.Second, "node "+node+" to carry its instance id", func(context.Context) (bool, error) {
		return s.node(t, node).InstanceID == instance, nil
	})
	event := map[string]any{
		"version": "0", "id": "e2e-" + instance, "detail-type": "EC2 Spot Instance Interruption Warning",
		"source": "aws.ec2", "account": "123456789012", "time": time.Now().UTC().Format(time.RFC3339),
		"region": testenv.Region, "resources": []string{"arn:aws:ec2:us-east-1a:instance/" + instance},
		"detail": map[string]string{"instance-id": instance, "instance-action": "terminate"},
	}
	body, err := json.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(s.interrupt), MessageBody: aws.String(string(body))}); err != nil {
		t.Fatal(err)
	}
}

// node returns what the cluster saw of a node.
func (s *stack) node(t *testing.T, name string) testenv.NodeInfo {
	t.Helper()
	n, ok := s.cluster.Node(name)
	if !ok {
		t.Fatalf("no node %q was seen", name)
	}
	return n
}
