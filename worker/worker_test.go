package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/cgroup"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const mib = 1 << 20

// bundle is one test's queues, bucket and worker settings.
type bundle struct {
	sqs     *testenv.SQS
	s3      *testenv.S3
	store   contract.Store
	bucket  string
	class   string
	intake  string
	dead    string
	records string
	testjob string
	cfg     worker.Config
	out     *testenv.Buffer
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{sqs: testenv.StartSQS(t), s3: testenv.StartS3(t), out: &testenv.Buffer{}}
	b.init(t)
	return b
}

// setupOwnS3 gives the test an S3 server of its own to stop and restart.
func setupOwnS3(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{sqs: testenv.StartSQS(t), s3: testenv.NewS3(t), out: &testenv.Buffer{}}
	b.init(t)
	return b
}

func (b *bundle) init(t *testing.T) {
	b.bucket = b.s3.CreateBucket(t)
	b.store = contract.Store{S3: testenv.NewS3Client(b.s3.Endpoint), Bucket: b.bucket, Prefix: "jobs"}
	b.class = b.sqs.CreateQueue(t, "class-", nil)
	b.intake = b.sqs.CreateQueue(t, "intake-", nil)
	b.dead = b.sqs.CreateQueue(t, "dead-", nil)
	b.records = b.sqs.CreateQueue(t, "records-", nil)
	b.testjob = testenv.Build(t, "./internal/testenv/testjob")
	b.cfg = worker.Config{
		QueueURL: b.class, IntakeURL: b.intake, DeadLetterURL: b.dead, RecordsURL: b.records,
		Bucket: b.bucket, Prefix: "jobs",
		CheckpointDir:      filepath.Join(t.TempDir(), "checkpoint"),
		CheckpointInterval: time.Minute,
		GracePeriod:        20 * time.Second,
		UploadGrace:        5 * time.Second,
		VisibilityTimeout:  30 * time.Second,
		IdleTimeout:        2 * time.Second,
		Cgroup:             worker.CgroupOff,
		ReasonFile:         filepath.Join(t.TempDir(), "annotations"),
		Placement:          worker.Placement{Node: "node-a", InstanceType: "m7i.large", CapacityType: jobfleet.CapacitySpot, Zone: "us-east-1a"},
		WorkDir:            t.TempDir(),
		Stdout:             b.out,
		Stderr:             b.out,
	}
}

// publish does what the dispatcher does with a producer's new job: it
// records a run of the job in S3 and forwards attempt 1 to the class
// queue. It returns the job.
func (b *bundle) publish(t *testing.T, job *jobfleet.Job) *jobfleet.Job {
	t.Helper()
	b.publishRun(t, job)
	return job
}

// publishRun is publish, returning the run it started.
func (b *bundle) publishRun(t *testing.T, job *jobfleet.Job) string {
	t.Helper()
	run := b.startRun(t, job)
	body, err := jobfleet.Encode(job)
	if err != nil {
		t.Fatal(err)
	}
	m := queue.ForwardMessage(string(body), job.Type, run, 1)
	m.Attributes[queue.AttrPredicted] = queue.NumberAttribute(forwardedPrediction)
	b.send(t, b.class, m)
	return run
}

// forwardedPrediction is the model's size publish forwards jobs with, as
// the dispatcher does.
const forwardedPrediction = 700 << 20

// startRun records a run of the job, as the dispatcher does when it
// accepts a producer's message.
func (b *bundle) startRun(t *testing.T, job *jobfleet.Job) string {
	t.Helper()
	if job.Version == 0 {
		job.Version = jobfleet.Version
	}
	if job.Type == "" {
		job.Type = "test"
	}
	run := fmt.Sprintf("run-%d-%s", time.Now().UnixNano(), job.ID)
	body, err := jobfleet.Encode(job)
	if err != nil {
		t.Fatal(err)
	}
	start, _, err := b.store.StartRun(t.Context(), job, string(body), run, time.Time{}, time.Now(), nil)
	if err != nil || start != contract.Started {
		t.Fatalf("starting a run of %s: %v (%v)", job.ID, err, start)
	}
	return run
}

func (b *bundle) send(t *testing.T, url string, m queue.Message) {
	t.Helper()
	if f := queue.Send(t.Context(), b.sqs.Client, url, []queue.Message{m}, queue.Retry{}); len(f) > 0 {
		t.Fatalf("sending to %s: %v", url, f[0].Err)
	}
}

// run runs a worker with the command until it exits.
func (b *bundle) run(t *testing.T, ctx context.Context, cfg worker.Config, args ...string) error {
	t.Helper()
	return b.runHandler(t, ctx, cfg, worker.Command(b.testjob, args...))
}

func (b *bundle) runHandler(t *testing.T, ctx context.Context, cfg worker.Config, h worker.Handler) error {
	t.Helper()
	w, err := worker.New(cfg, b.sqs.Client, testenv.NewS3Client(b.s3.Endpoint), h, worker.WithLogger(zerolog.New(zerolog.NewTestWriter(t))))
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	return w.Run(ctx)
}

// recordsOf reads n run records.
func (b *bundle) recordsOf(t *testing.T, n int) []jobfleet.RunRecord {
	t.Helper()
	var out []jobfleet.RunRecord
	for _, m := range b.sqs.Receive(t, b.records, n, true) {
		rec, err := jobfleet.DecodeRunRecord([]byte(aws.ToString(m.Body)))
		if err != nil {
			t.Fatalf("invalid run record: %v", err)
		}
		out = append(out, *rec)
	}
	return out
}

// sent is a job message jobfleet sent on: a rerun to intake, or a dead
// letter, with the run's history as jobfleet recorded it.
type sent struct {
	Job     *jobfleet.Job
	Run     string
	Attempt int
	History jobfleet.History
	Msg     types.Message
}

// sentIn reads n job messages from a queue, with their run's history: for
// a rerun (to intake), the history its previous attempt's claim recorded;
// for a dead letter, the history of the attempt that ended the run.
func (b *bundle) sentIn(t *testing.T, url string, n int) []sent {
	t.Helper()
	var out []sent
	for _, m := range b.sqs.Receive(t, url, n, true) {
		job, err := jobfleet.Decode([]byte(aws.ToString(m.Body)))
		if err != nil {
			t.Fatalf("invalid job in %s: %v", url, err)
		}
		run, attempt, ok, err := queue.RunAttempt(m.MessageAttributes)
		if url == b.dead {
			run, attempt = queue.DeadRunAttempt(m.MessageAttributes)
			ok, err = run != "" && attempt > 0, nil
		}
		if err != nil || !ok {
			t.Fatalf("a message jobfleet sent on carries no run and attempt: %v", err)
		}
		s := sent{Job: job, Run: run, Attempt: attempt, Msg: m}
		claimOf := attempt - 1
		if url == b.dead {
			claimOf = attempt
		}
		if claimOf >= 1 {
			c, _, err := b.store.ReadClaim(t.Context(), job.ID, run, claimOf)
			if err != nil {
				t.Fatalf("reading the claim of attempt %d of %s: %v", claimOf, job.ID, err)
			}
			s.History = c.History
		}
		out = append(out, s)
	}
	return out
}

// forward sends a rerun on to the class queue, as the dispatcher does
// once it checked it.
func (b *bundle) forward(t *testing.T, s sent) {
	t.Helper()
	b.send(t, b.class, queue.ForwardMessage(aws.ToString(s.Msg.Body), s.Job.Type, s.Run, s.Attempt))
}

// assertEmpty checks that a queue holds nothing, visible or in flight.
func (b *bundle) assertEmpty(t *testing.T, url, name string) {
	t.Helper()
	if visible, inFlight := b.sqs.Depth(t, url); visible+inFlight != 0 {
		t.Errorf("%s queue holds %d visible and %d in-flight messages, want none", name, visible, inFlight)
	}
}

// requireJobCgroups fails the test where this host does not let it create
// memory cgroups: the tests that need them run as root on Linux, as the
// end-to-end tier does (docs/testing.md), and are never skipped.
func requireJobCgroups(t *testing.T) {
	t.Helper()
	if err := cgroup.Check(cgroup.DefaultParent()); err != nil {
		t.Fatalf("this test enforces memory limits with a cgroup per job and needs root on Linux with a memory cgroup controller: %v", err)
	}
}

func TestSuccessRecordsPeakAndDeletes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const allocated = 300
	cfg := b.cfg
	cfg.MemoryLimit = 1 << 30
	requireJobCgroups(t)
	cfg.Cgroup = worker.CgroupJob
	job := b.publish(t, &jobfleet.Job{ID: "alloc-1", Features: map[string]float64{"rows": 42}, Params: json.RawMessage(`{"k":"v"}`),
		Labels: map[string]string{"team": "search", "workflow": "nightly"}})

	if err := b.run(t, t.Context(), cfg, "alloc", strconv.Itoa(allocated), "200"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	recs := b.recordsOf(t, 1)
	rec := recs[0]
	if rec.Outcome != jobfleet.OutcomeSucceeded || rec.JobID != job.ID || rec.Attempt != 1 || rec.ExitCode != 0 {
		t.Fatalf("run record = %+v", rec)
	}
	peakMiB := float64(rec.PeakBytes) / mib
	upper := allocated * 1.1
	if peakMiB < allocated*0.9 || peakMiB > upper || rec.PeakSource == worker.SourceRusage {
		t.Errorf("peak = %.1f MiB (%s), want within 10%% of the %d MiB allocated", peakMiB, rec.PeakSource, allocated)
	}
	if rec.Node != "node-a" || rec.CapacityType != jobfleet.CapacitySpot || rec.Features["rows"] != 42 || rec.AllocatedBytes != 1<<30 {
		t.Errorf("run record placement and features = %+v", rec)
	}
	if rec.PredictedBytes != forwardedPrediction {
		t.Errorf("run record's model size %d, want the forwarded message's %d", rec.PredictedBytes, forwardedPrediction)
	}
	if !maps.Equal(rec.Labels, job.Labels) {
		t.Errorf("run record labels %v, want the message's %v", rec.Labels, job.Labels)
	}
	t.Logf("peak %.1f MiB measured by %s", peakMiB, rec.PeakSource)
	b.assertEmpty(t, b.class, "class")
	b.assertEmpty(t, b.intake, "intake")
	b.assertEmpty(t, b.dead, "dead-letter")
}

// TestPeakLeavesOutFileCache runs a job that writes a file twice the
// size of its memory limit and then holds 64 MiB. The kernel reclaims the
// file's page cache to keep it under its limit, so it succeeds; its peak
// is the memory it held, not the limit the page cache filled, or the
// memory model would never size such a job below what it last had.
func TestPeakLeavesOutFileCache(t *testing.T) {
	t.Parallel()
	requireJobCgroups(t)
	b := setup(t)
	cfg := b.cfg
	cfg.MemoryLimit = 256 * mib
	cfg.Cgroup = worker.CgroupJob
	b.publish(t, &jobfleet.Job{ID: "writer"})

	if err := b.run(t, t.Context(), cfg, "write", testenv.DiskDir(t), "512", "64", "500"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	rec := b.recordsOf(t, 1)[0]
	if rec.Outcome != jobfleet.OutcomeSucceeded {
		t.Fatalf("run record = %+v, want a success", rec)
	}
	if rec.PeakSource != worker.SourceCgroupV1 && rec.PeakSource != worker.SourceCgroupV2 {
		t.Fatalf("measured by %q, want the job's cgroup", rec.PeakSource)
	}
	// Above the 64 MiB: the runtime's few, and the file pages the kernel
	// counts as active (tens of MiB when the disk is busy).
	if peak := rec.PeakBytes / mib; peak < 64 || peak > 160 {
		t.Errorf("peak %d MiB, want the 64 MiB the job held and its runtime's few, well below the 256 MiB limit its page cache filled", peak)
	}
	t.Logf("peak %d MiB of a 256 MiB limit, by %s", rec.PeakBytes/mib, rec.PeakSource)
}

// counter describes a run of the count job and reads its log.
type counter struct {
	log string
}

func (c counter) args(target int, step time.Duration) []string {
	return []string{"count", strconv.Itoa(target), strconv.Itoa(int(step / time.Millisecond)), c.log}
}

func (c counter) lines(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(c.log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(data), "\n", "|"))
}

// progress returns the last number the log recorded for a verb.
func (c counter) last(t *testing.T, verb string) (int, bool) {
	t.Helper()
	data, _ := os.ReadFile(c.log)
	value, found := 0, false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == verb {
			value, _ = strconv.Atoi(f[1])
			found = true
		}
	}
	return value, found
}

// checkpointProgress reads the progress file of a run's latest complete
// checkpoint from S3, or -1.
func (b *bundle) checkpointProgress(t *testing.T, jobID, run string) int {
	t.Helper()
	client := testenv.NewS3Client(b.s3.Endpoint)
	prefix := b.store.CheckpointPrefix(jobID, run)
	out, err := client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(prefix + "/manifest.json")})
	if err != nil {
		return -1
	}
	defer out.Body.Close()
	var m struct {
		Files []struct {
			Path   string `json:"path"`
			SHA256 string `json:"sha256"`
		} `json:"files"`
	}
	if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
		t.Fatalf("corrupt manifest: %v", err)
	}
	for _, f := range m.Files {
		if f.Path != "progress" {
			continue
		}
		obj, err := client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(prefix + "/objects/" + f.SHA256)})
		if err != nil {
			t.Fatalf("manifest names a missing object: %v", err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(obj.Body)
		obj.Body.Close()
		n, _ := strconv.Atoi(buf.String())
		return n
	}
	return -1
}

func TestSIGTERMCheckpointsRequeuesAndResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := counter{log: filepath.Join(t.TempDir(), "count.log")}
	cfg := b.cfg
	cfg.CheckpointInterval = time.Second
	job := &jobfleet.Job{ID: "count-1"}
	run := b.publishRun(t, job)
	// The interruption handler annotates the pod before evicting it.
	annotations := contract.AnnotationInterruption + `="spot-interruption"` + "\n" + contract.AnnotationInstanceType + `="c7i.2xlarge"` + "\n" + contract.AnnotationZone + `="us-east-1c"` + "\n"
	if err := os.WriteFile(cfg.ReasonFile, []byte(annotations), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.run(t, ctx, cfg, c.args(100000, 2*time.Millisecond)...) }()
	// Let it run past a periodic checkpoint, then send the stop signal.
	testenv.Eventually(t, 30*time.Second, "a periodic checkpoint", func() bool { return b.checkpointProgress(t, job.ID, run) > 0 })
	stop()
	if err := <-done; err != nil {
		t.Fatalf("worker: %v", err)
	}
	stoppedAt, ok := c.last(t, "stop")
	if !ok {
		t.Fatalf("the job never got SIGTERM; log: %v", c.lines(t))
	}
	if got := b.checkpointProgress(t, job.ID, run); got != stoppedAt {
		t.Errorf("final checkpoint holds progress %d, the job stopped at %d", got, stoppedAt)
	}

	rerun := b.sentIn(t, b.intake, 1)[0]
	if rerun.Job.ID != job.ID || rerun.Run != run || rerun.Attempt != 2 || len(rerun.History) != 1 {
		t.Fatalf("rerun = %+v", rerun)
	}
	h := rerun.History[0]
	if h.Reason != jobfleet.ReasonInterrupted || h.Node != "node-a" || h.InstanceType != "c7i.2xlarge" || h.Zone != "us-east-1c" || h.CapacityType != jobfleet.CapacitySpot || h.Checkpoint == "" {
		t.Errorf("rerun history = %+v", h)
	}
	if rerun.History.RetriesSpent() != 0 {
		t.Errorf("an interrupted attempt spent a retry")
	}
	b.assertEmpty(t, b.class, "class")
	recs := b.recordsOf(t, 1)
	if recs[0].Outcome != jobfleet.OutcomeInterrupted || recs[0].Checkpoints < 2 {
		t.Errorf("run record = %+v, want interrupted with a periodic and a final checkpoint", recs[0])
	}

	// The rerun, dispatched back to a class queue, resumes where it stopped.
	if err := os.Remove(cfg.ReasonFile); err != nil {
		t.Fatal(err)
	}
	target := stoppedAt + 300
	b.forward(t, rerun)
	if err := b.run(t, t.Context(), cfg, c.args(target, time.Millisecond)...); err != nil {
		t.Fatalf("rerun worker: %v", err)
	}
	lines := strings.Join(c.lines(t), " ")
	if want := fmt.Sprintf("start %d true 2", stoppedAt); !strings.Contains(lines, want) {
		t.Errorf("the rerun did not resume from progress %d: log %s", stoppedAt, lines)
	}
	if done, _ := c.last(t, "done"); done != target {
		t.Errorf("the rerun finished at %d, want %d", done, target)
	}
	recs = b.recordsOf(t, 1)
	if recs[0].Outcome != jobfleet.OutcomeSucceeded || !recs[0].Resumed || recs[0].Attempt != 2 {
		t.Errorf("rerun record = %+v", recs[0])
	}
	b.assertEmpty(t, b.class, "class")
	b.assertEmpty(t, b.intake, "intake")
}

func TestLongJobIsNeverReceivedTwice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.VisibilityTimeout = 3 * time.Second
	b.publish(t, &jobfleet.Job{ID: "long-1"})

	// The worker takes the message; then another consumer polls the class
	// queue for the whole time the job runs.
	started := time.Now()
	done := make(chan error, 1)
	go func() {
		done <- b.run(t, t.Context(), cfg, "sleep", strconv.Itoa(int(3*cfg.VisibilityTimeout/time.Millisecond)+500))
	}()
	testenv.Eventually(t, 10*time.Second, "the worker to hold the message", func() bool {
		visible, inFlight := b.sqs.Depth(t, b.class)
		return visible == 0 && inFlight == 1
	})
	ctx, stopPolling := context.WithCancel(t.Context())
	var stolen []string
	var poller sync.WaitGroup
	poller.Go(func() {
		for ctx.Err() == nil {
			out, err := b.sqs.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(b.class), WaitTimeSeconds: 1, VisibilityTimeout: 1})
			if err == nil {
				for _, m := range out.Messages {
					stolen = append(stolen, aws.ToString(m.MessageId))
				}
			}
		}
	})
	err := <-done
	stopPolling()
	poller.Wait()
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	if ran := time.Since(started); ran < 3*cfg.VisibilityTimeout {
		t.Fatalf("the job ran %v, shorter than three visibility timeouts", ran)
	}
	if len(stolen) > 0 {
		t.Fatalf("the message reappeared while the job ran: received again as %v", stolen)
	}
	if recs := b.recordsOf(t, 1); recs[0].Outcome != jobfleet.OutcomeSucceeded {
		t.Errorf("run record = %+v", recs[0])
	}
	b.assertEmpty(t, b.class, "class")
}

func TestOOMRequeuesWithHistory(t *testing.T) {
	t.Parallel()
	requireJobCgroups(t)
	b := setup(t)
	cfg := b.cfg
	cfg.Cgroup = worker.CgroupJob
	cfg.MemoryLimit = 64 * mib
	job := b.publish(t, &jobfleet.Job{ID: "oom-1"})

	if err := b.run(t, t.Context(), cfg, "alloc", "256"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	recs := b.recordsOf(t, 1)
	if recs[0].Outcome != jobfleet.OutcomeOOM || recs[0].ExitCode != 137 {
		t.Fatalf("run record = %+v, want an OOM kill", recs[0])
	}
	rerun := b.sentIn(t, b.intake, 1)[0]
	h := rerun.History
	if rerun.Job.ID != job.ID || len(h) != 1 || h[0].Reason != jobfleet.ReasonOOM || h[0].AllocatedBytes != 64*mib || h[0].PeakBytes < 60*mib {
		t.Fatalf("rerun history = %+v, want one OOM attempt at 64 MiB", h)
	}
	if h.RetriesSpent() != 1 {
		t.Errorf("an OOM attempt spends a retry; spent %d", h.RetriesSpent())
	}
	b.assertEmpty(t, b.class, "class")
	b.assertEmpty(t, b.dead, "dead-letter")
}

func TestRetryBudgetEndsInDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.MaxAttempts = 2
	b.publish(t, &jobfleet.Job{ID: "fail-1"})

	if err := b.run(t, t.Context(), cfg, "fail", "3"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	reruns := b.sentIn(t, b.intake, 1)
	if h := reruns[0].History; len(h) != 1 || h[0].Reason != jobfleet.ReasonFailed || h[0].ExitCode != 3 {
		t.Fatalf("first rerun history = %+v", h)
	}
	b.assertEmpty(t, b.dead, "dead-letter")

	b.forward(t, reruns[0])
	if err := b.run(t, t.Context(), cfg, "fail", "3"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	dead := b.sentIn(t, b.dead, 1)[0]
	if h := dead.History; len(h) != 2 || h[1].Attempt != 2 || h[1].Reason != jobfleet.ReasonFailed {
		t.Fatalf("dead-lettered job history = %+v", h)
	}
	if reason := aws.ToString(dead.Msg.MessageAttributes[jobfleet.AttrError].StringValue); !strings.Contains(reason, "retry budget spent: 2 of 2") {
		t.Errorf("dead letter reason = %q", reason)
	}
	if r, _, err := b.store.ReadRun(t.Context(), dead.Job.ID); err != nil || r.State != contract.RunEnded {
		t.Errorf("the dead-lettered job's run = %+v, %v; want it ended", r, err)
	}
	if recs := b.recordsOf(t, 2); recs[0].Outcome != jobfleet.OutcomeFailed || recs[1].Outcome != jobfleet.OutcomeFailed {
		t.Errorf("run records = %+v", recs)
	}
	b.assertEmpty(t, b.intake, "intake")
	b.assertEmpty(t, b.class, "class")
}

func TestPoisonMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, body := range []string{`{"version":1,"id":"x"`, `{"version":7,"id":"x","type":"test"}`} {
		if _, err := b.sqs.Client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(b.class), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := b.cfg
	cfg.MaxJobs = 2
	if err := b.run(t, t.Context(), cfg, "sleep", "1"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	msgs := b.sqs.Receive(t, b.dead, 2, true)
	reasons := []string{}
	for _, m := range msgs {
		reasons = append(reasons, aws.ToString(m.MessageAttributes[jobfleet.AttrError].StringValue))
	}
	joined := strings.Join(reasons, "|")
	if !strings.Contains(joined, "malformed JSON") || !strings.Contains(joined, "unsupported version") {
		t.Errorf("dead letter reasons = %q", reasons)
	}
	b.assertEmpty(t, b.class, "class")
}

func TestDuplicateAttemptRunsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := counter{log: filepath.Join(t.TempDir(), "count.log")}
	// The dispatcher crashed between sending and deleting: the same attempt
	// of a job arrives twice.
	job := &jobfleet.Job{Version: jobfleet.Version, ID: "dup-1", Type: "test"}
	run := b.publishRun(t, job)
	body, _ := jobfleet.Encode(job)
	b.send(t, b.class, queue.ForwardMessage(string(body), job.Type, run, 1))
	cfg := b.cfg
	cfg.MaxJobs = 2
	if err := b.run(t, t.Context(), cfg, c.args(5, time.Millisecond)...); err != nil {
		t.Fatalf("worker: %v", err)
	}
	starts := 0
	for _, w := range c.lines(t) {
		if strings.HasPrefix(w, "start") {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("the job started %d times, want once; log %v", starts, c.lines(t))
	}
	b.recordsOf(t, 1)
	b.assertEmpty(t, b.records, "records")
	b.assertEmpty(t, b.class, "class")
}

func TestS3OutageLosesNothing(t *testing.T) {
	t.Parallel()
	b := setupOwnS3(t)
	c := counter{log: filepath.Join(t.TempDir(), "count.log")}
	cfg := b.cfg
	cfg.CheckpointInterval = time.Second
	var mu sync.Mutex
	var uploads, failures int
	cfg.Hooks.Checkpointed = func(_ string, uploaded bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		if uploaded {
			uploads++
		}
		if err != nil {
			failures++
		}
	}
	counts := func() (int, int) { mu.Lock(); defer mu.Unlock(); return uploads, failures }
	job := b.publish(t, &jobfleet.Job{ID: "outage-1"})

	done := make(chan error, 1)
	go func() { done <- b.run(t, t.Context(), cfg, c.args(4000, 2*time.Millisecond)...) }()
	testenv.Eventually(t, 30*time.Second, "a first checkpoint", func() bool { u, _ := counts(); return u > 0 })
	b.s3.Server.Stop()
	testenv.Eventually(t, 30*time.Second, "a checkpoint upload to fail", func() bool { _, f := counts(); return f > 0 })
	if err := b.s3.Server.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("worker: %v", err)
	}
	if done, _ := c.last(t, "done"); done != 4000 {
		t.Fatalf("the job did not finish: %v", c.lines(t))
	}
	recs := b.recordsOf(t, 1)
	if recs[0].Outcome != jobfleet.OutcomeSucceeded || recs[0].JobID != job.ID {
		t.Errorf("run record = %+v", recs[0])
	}
	b.assertEmpty(t, b.class, "class")
	b.assertEmpty(t, b.intake, "intake")
	b.assertEmpty(t, b.dead, "dead-letter")
}

func TestIdleWorkerExits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now()
	if err := b.run(t, t.Context(), b.cfg, "sleep", "1"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if waited := time.Since(start); waited < b.cfg.IdleTimeout {
		t.Errorf("an idle worker exited after %v, before its %v idle timeout", waited, b.cfg.IdleTimeout)
	}
	b.assertEmpty(t, b.records, "records")
}

func TestGoHandler(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, &jobfleet.Job{ID: "go-1", Params: json.RawMessage(`{"n":3}`), Features: map[string]float64{"rows": 9}})
	b.publish(t, &jobfleet.Job{ID: "go-2", Params: json.RawMessage(`{"n":-1}`)})
	cfg := b.cfg
	cfg.MaxJobs = 2
	var seen []string
	h := worker.HandlerFunc(func(ctx context.Context, job *worker.Job) error {
		var p struct{ N int }
		data, err := os.ReadFile(job.ParamsFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &p); err != nil {
			return err
		}
		seen = append(seen, fmt.Sprintf("%s:%d:%v", job.Message.ID, p.N, job.Message.Features["rows"]))
		if p.N < 0 {
			return fmt.Errorf("n must not be negative: %w", worker.ErrSkipRetry)
		}
		return os.WriteFile(filepath.Join(job.CheckpointDir, "out"), []byte("ok"), 0o644)
	})
	if err := b.runHandler(t, t.Context(), cfg, h); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if strings.Join(seen, ",") != "go-1:3:9,go-2:-1:0" {
		t.Errorf("handler saw %v", seen)
	}
	dead := b.sentIn(t, b.dead, 1)
	if dead[0].Job.ID != "go-2" || !strings.Contains(aws.ToString(dead[0].Msg.MessageAttributes[jobfleet.AttrError].StringValue), "cannot fix") {
		t.Errorf("dead letter = %+v", dead[0])
	}
	b.assertEmpty(t, b.intake, "intake")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := worker.Config{Cgroup: worker.CgroupJob, VisibilityTimeout: time.Second, QueueURL: "jobfleet-train", MaxRuntime: -time.Hour, IdleTimeout: -time.Second,
		GracePeriod: 30 * time.Second, UploadGrace: time.Minute}.WithDefaults().Validate()
	for _, want := range []string{"IntakeURL (JOBFLEET_INTAKE) is required", "Bucket (JOBFLEET_BUCKET) is required", "VisibilityTimeout (JOBFLEET_VISIBILITY_TIMEOUT) 1s",
		"JOBFLEET_MEMORY", `QueueURL (JOBFLEET_QUEUE) "jobfleet-train" is not a queue URL`, "MaxRuntime (JOBFLEET_MAX_RUNTIME) -1h0m0s: above zero",
		"IdleTimeout (JOBFLEET_IDLE_TIMEOUT) -1s", "UploadGrace (JOBFLEET_UPLOAD_GRACE) 1m0s: above zero and shorter than the grace period (30s)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to report %q", err, want)
		}
	}
}
