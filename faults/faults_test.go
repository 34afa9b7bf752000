package faults

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/jobtype"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// registry is the job type of every scenario: a count of 4000 steps of a
// millisecond, which checkpoints its progress and resumes from it.
const registry = `
pools:
  - name: cpu
types:
  - name: count
    image: x
    command: [TESTJOB, count, "4000", "1", LOGS]
    pool: cpu
    checkpoint: {interval: 10s, stopGrace: 3s, uploadGrace: 3s}
    maxAttempts: 3
`

// world is one scenario's processes and servers: a dispatcher and workers,
// which reach SQS and S3 through proxies the scenario can cut.
type world struct {
	t        *testing.T
	sqs      *testenv.SQS
	s3       *testenv.S3
	sqsProxy *testenv.Proxy
	s3Proxy  *testenv.Proxy
	store    contract.Store
	prefix   string
	intake   string
	dead     string
	records  string
	registry string
	reg      *jobtype.Registry
	logs     string
	bin      string

	mu         sync.Mutex
	dispatcher *exec.Cmd
	dispOut    *testenv.Buffer
	workers    []*worker
	// hook is called with the first worker started; it may arm faults.
	hook func(w *worker)
}

// worker is a worker process whose log lines the scenario watches.
type worker struct {
	cmd    *exec.Cmd
	out    *testenv.Buffer
	mu     sync.Mutex
	onLine []func(line string)
	done   chan struct{}
}

// when calls f once, with the first log line containing s.
func (w *worker) when(s string, f func()) {
	var once sync.Once
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onLine = append(w.onLine, func(line string) {
		if strings.Contains(line, s) {
			once.Do(f)
		}
	})
}

func (w *worker) signal(sig syscall.Signal) { _ = w.cmd.Process.Signal(sig) }

func newWorld(t *testing.T, bin, testjob string) *world {
	t.Helper()
	w := &world{t: t, sqs: testenv.StartSQS(t), s3: testenv.StartS3(t), bin: bin, logs: t.TempDir()}
	w.sqsProxy, w.s3Proxy = testenv.NewProxy(t, w.sqs.Endpoint), testenv.NewProxy(t, w.s3.Endpoint)
	w.store = contract.Store{S3: w.s3.Client, Bucket: w.s3.CreateBucket(t)}
	w.prefix = testenv.UniqueName(t, "f", 20)
	w.intake, w.dead, w.records = w.sqs.CreateQueue(t, "intake-", nil), w.sqs.CreateQueue(t, "dead-", nil), w.sqs.CreateQueue(t, "records-", nil)
	text := strings.NewReplacer("TESTJOB", testjob, "LOGS", w.logs).Replace(registry)
	w.registry = filepath.Join(t.TempDir(), "jobtypes.yaml")
	if err := os.WriteFile(w.registry, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := jobtype.Load(w.registry)
	if err != nil {
		t.Fatal(err)
	}
	w.reg = reg
	t.Cleanup(func() {
		w.mu.Lock()
		procs := []*exec.Cmd{}
		if w.dispatcher != nil {
			procs = append(procs, w.dispatcher)
		}
		for _, wk := range w.workers {
			procs = append(procs, wk.cmd)
		}
		w.mu.Unlock()
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("--- dispatcher:\n%s", w.dispOut.String())
			for i, wk := range w.workers {
				t.Logf("--- worker %d:\n%s", i, wk.out.String())
			}
		}
	})
	return w
}

// proxiedEnv is the AWS environment of a process that goes through the
// proxies.
func (w *world) proxiedEnv() []string {
	return append(os.Environ(), "AWS_ENDPOINT_URL_SQS="+w.sqsProxy.Endpoint, "AWS_ENDPOINT_URL_S3="+w.s3Proxy.Endpoint,
		"AWS_REGION="+testenv.Region, "AWS_ACCESS_KEY_ID="+testenv.AccessKey, "AWS_SECRET_ACCESS_KEY="+testenv.SecretKey)
}

// startDispatcher runs `jobfleet dispatcher` without Kubernetes.
func (w *world) startDispatcher() {
	w.t.Helper()
	cmd := exec.Command(w.bin, "--log-format", "json", "dispatcher", "--no-kubernetes", "--no-leader-elect", "--no-retrain",
		"--intake", w.intake, "--dead-letter", w.dead, "--records", w.records, "--bucket", w.store.Bucket,
		"--registry", w.registry, "--class-prefix", w.prefix, "--metrics-addr", "127.0.0.1:0",
		"--intake-visibility", "10s", "--class-poll", "200ms", "--class-fresh", "2s", "--collect-fence", "4s")
	cmd.Env = w.proxiedEnv()
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.dispatcher, w.dispOut = cmd, out
	w.mu.Unlock()
}

func (w *world) killDispatcher() {
	w.mu.Lock()
	cmd := w.dispatcher
	w.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// startWorker runs `jobfleet worker` for a class queue, as a pod would.
func (w *world) startWorker(url string) *worker {
	typ, _ := w.reg.Type("count")
	env := contract.WorkerEnv{
		Queue: url, Intake: w.intake, DeadLetter: w.dead, Records: w.records, Bucket: w.store.Bucket, JobType: typ.Name,
		MaxAttempts: typ.MaxAttempts, CheckpointDir: filepath.Join(w.t.TempDir(), "ckpt"), CheckpointInterval: typ.Checkpoint.Interval,
		GracePeriod: typ.Checkpoint.GracePeriod(), UploadGrace: typ.Checkpoint.UploadGrace, VisibilityTimeout: 4 * time.Second,
		IdleTimeout: 3 * time.Second, Cgroup: "off", ReasonFile: filepath.Join(w.t.TempDir(), "none"),
	}
	cmd := exec.Command(w.bin, append([]string{"--log-format", "json", "worker", "--"}, typ.Command...)...)
	// Its own temp directory, as a pod's /tmp: a killed worker's leftovers
	// go with the test.
	cmd.Env = append(append(w.proxiedEnv(), env.Strings()...), "TMPDIR="+w.t.TempDir())
	wk := &worker{cmd: cmd, out: &testenv.Buffer{}, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	go func() {
		scanner := bufio.NewScanner(pr)
		scanner.Buffer(make([]byte, 1<<20), 1<<20)
		for scanner.Scan() {
			line := scanner.Text()
			_, _ = wk.out.Write([]byte(line + "\n"))
			wk.mu.Lock()
			hooks := append([]func(string){}, wk.onLine...)
			wk.mu.Unlock()
			for _, h := range hooks {
				h(line)
			}
		}
	}()
	w.mu.Lock()
	first := len(w.workers) == 0
	w.workers = append(w.workers, wk)
	w.mu.Unlock()
	if first && w.hook != nil {
		w.hook(wk)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); pw.Close(); close(wk.done) }()
	return wk
}

// execute plays KEDA until ctx ends: for every class queue, as many
// workers as it holds messages (up to 8), less those running, as KEDA's
// default scaling strategy with scaleOnInFlight does. (The emulator counts
// an expired message as in flight until it is received, so a message in
// flight that no worker holds still gets one.)
func (w *world) execute(ctx context.Context) {
	running := map[string][]*worker{}
	for ctx.Err() == nil {
		out, err := w.sqs.Client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(w.prefix)})
		if err == nil {
			for _, url := range out.QueueUrls {
				live := running[url][:0]
				for _, wk := range running[url] {
					select {
					case <-wk.done:
					default:
						live = append(live, wk)
					}
				}
				visible, inFlight := depth(ctx, w.sqs.Client, url)
				for want := min(visible+inFlight, 8); len(live) < want; {
					live = append(live, w.startWorker(url))
				}
				running[url] = live
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func depth(ctx context.Context, client *sqs.Client, url string) (visible, inFlight int) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
	if err != nil {
		return 0, 0
	}
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessages"], &visible)
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessagesNotVisible"], &inFlight)
	return visible, inFlight
}

// tally is what a scenario counts.
type tally struct {
	Jobs, Lost, RunTwice, Stranded int
	Seconds                        float64
}

// publish sends n jobs to intake.
func (w *world) publish(ids ...string) {
	w.t.Helper()
	var jobs []*jobfleet.Job
	for _, id := range ids {
		jobs = append(jobs, &jobfleet.Job{Version: 1, ID: id, Type: "count"})
	}
	if err := jobfleet.NewPublisher(w.sqs.Client, w.intake).Publish(w.t.Context(), jobs...); err != nil {
		w.t.Fatal(err)
	}
}

// settle waits, up to timeout, for every job's run to end and every queue
// to empty, and counts: lost (a run that did not end in success), run twice
// (a job that counted to the end more than once), stranded (a message left
// in intake, a class queue or the dead-letter queue).
func (w *world) settle(ids []string, timeout time.Duration) tally {
	w.t.Helper()
	start := time.Now()
	ctx := w.t.Context()
	ended := func(id string) bool {
		r, _, err := w.store.ReadRun(ctx, id)
		return err == nil && r.State == contract.RunEnded
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		all := true
		for _, id := range ids {
			if !ended(id) {
				all = false
				break
			}
		}
		if all && w.queuesEmpty(ctx) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	res := tally{Jobs: len(ids), Seconds: time.Since(start).Seconds()}
	for _, id := range ids {
		r, _, err := w.store.ReadRun(ctx, id)
		if err != nil || r.State != contract.RunEnded || r.Outcome != jobfleet.OutcomeSucceeded {
			res.Lost++
			w.t.Logf("job %s: run %+v (%v)", id, r, err)
		}
		data, _ := os.ReadFile(filepath.Join(w.logs, id+".log"))
		if n := strings.Count(string(data), "done "); n > 1 {
			res.RunTwice++
			w.t.Logf("job %s counted to the end %d times:\n%s", id, n, data)
		}
	}
	res.Stranded = w.stranded(ctx)
	return res
}

func (w *world) queuesEmpty(ctx context.Context) bool { return w.stranded(ctx) == 0 }

func (w *world) stranded(ctx context.Context) int {
	n := 0
	urls := []string{w.intake, w.dead}
	if out, err := w.sqs.Client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(w.prefix)}); err == nil {
		urls = append(urls, out.QueueUrls...)
	}
	for _, url := range urls {
		visible, inFlight := depth(ctx, w.sqs.Client, url)
		n += visible + inFlight
	}
	return n
}
