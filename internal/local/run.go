// Package local runs the whole of jobfleet on one machine: the SQS
// emulator and an S3 server, the dispatcher with the predictor, the
// interruption controller, and an executor that runs `jobfleet worker`
// processes in place of KEDA and Kubernetes.
package local

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/dispatcher/interruption"
	"github.com/jobfleet/jobfleet/internal/cgroup"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/demo"
	"github.com/jobfleet/jobfleet/internal/localstack"
	"github.com/jobfleet/jobfleet/jobtype"
	"github.com/jobfleet/jobfleet/predictor"
)

//go:embed spot-interruption.json
var spotInterruption string

// Options configure a local run.
type Options struct {
	// Jobs is how many demo jobs to publish; zero publishes none.
	Jobs int
	// Serve keeps everything running after the demo, for jobs published
	// by hand, until ctx ends.
	Serve bool
	// Interrupt simulates a spot interruption halfway through the demo.
	Interrupt bool
	// Concurrency bounds the worker processes. Default 3.
	Concurrency int
	// SQSPort and S3Port are the local servers' ports; zero picks free ones.
	SQSPort, S3Port int
	// Binary is the jobfleet binary workers run as.
	Binary string
	// Out receives the progress and the summary; Log the logs.
	Out io.Writer
	Log zerolog.Logger
	// Timeout bounds the demo. Default 10m.
	Timeout time.Duration
	// Progress shows live progress bars on Out.
	Progress bool
	// OnServe, with Serve, is called once everything runs, with where.
	OnServe func(Endpoints)
}

// Endpoints say where a serving local run is: the environment for AWS
// clients (AWS_ENDPOINT_URL_SQS and the rest), its intake queue, its
// bucket, the queue subscribed to its events topic, and its Step Functions
// endpoint.
type Endpoints struct {
	Env       []string
	IntakeURL string
	Bucket    string
	EventsURL string
	SFN       *localstack.SFNServer
}

// Summary is what a demo run did.
type Summary struct {
	Submitted, Succeeded, DeadLettered, Lost, Resumed int
	// EpochsComputed and EpochsRedone measure the training work redone
	// after interruptions.
	EpochsComputed, EpochsRedone int
	Interrupted                  int
	Types                        []TypeSummary
	CgroupNote                   string
	// Status is one demo job's state, a resumed one when there is one, as
	// `jobfleet status` shows it; Workflow the two-step workflow run after
	// the demo.
	Status   *jobfleet.JobState
	Workflow []WorkflowStep
	// Records are the run records the workers stored, as
	// `jobfleet predict train` and `jobfleet simulate` read them.
	Records []jobfleet.RunRecord
}

// TypeSummary is one job type's results.
type TypeSummary struct {
	Type                         string
	Jobs, Succeeded, Reruns      int
	Resumed                      int
	MeanPredicted, MeanAlloc     float64
	MeanPeak                     float64
	Covered, CoverageDenominator int
}

// state collects what the run observes.
type state struct {
	mu         sync.Mutex
	submitted  map[string]string // job id -> type
	succeeded  map[string]bool
	dead       map[string]bool
	predicted  map[string]int64 // first attempt's prediction, by job id
	records    []jobfleet.RunRecord
	interrupts int
}

// Run runs the demo and returns its summary.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if opts.Concurrency == 0 {
		opts.Concurrency = 3
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	work, err := os.MkdirTemp("", "jobfleet-local-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	sum := &Summary{}
	cgroupMode := "job"
	if err := cgroup.Check(cgroup.DefaultParent()); err != nil {
		cgroupMode = "off"
		sum.CgroupNote = fmt.Sprintf("memory limits are not enforced and peaks come from rusage: %v (run as root on Linux with a cgroup v1 or v2 memory controller to enforce them)", err)
		fmt.Fprintf(opts.Out, "note: %s\n", sum.CgroupNote)
	}

	// The stack.
	sqsServer, err := localstack.StartSQS(ctx, localstack.SQSOptions{Port: opts.SQSPort, Log: io.Discard})
	if err != nil {
		return nil, err
	}
	defer sqsServer.Stop()
	s3Server, err := localstack.StartS3(opts.S3Port)
	if err != nil {
		return nil, err
	}
	defer s3Server.Stop()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	sqsClient := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(sqsServer.Endpoint) })
	s3Client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(s3Server.Endpoint)
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	queues := map[string]string{}
	for _, name := range []string{"jobfleet-intake", "jobfleet-dead-letter", "jobfleet-records", "jobfleet-interruptions", "jobfleet-events"} {
		out, err := sqsClient.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			return nil, fmt.Errorf("creating queue %s: %w", name, err)
		}
		queues[name] = aws.ToString(out.QueueUrl)
	}
	// Completion events go to an SNS topic whose subscription delivers them
	// to the jobfleet-events queue; task tokens are answered to a local
	// Step Functions endpoint.
	snsServer, err := localstack.StartSNS(0, sqsClient)
	if err != nil {
		return nil, err
	}
	defer snsServer.Stop()
	topic := snsServer.CreateTopic("jobfleet-events")
	snsServer.Subscribe(topic, queues["jobfleet-events"])
	sfnServer, err := localstack.StartSFN(0)
	if err != nil {
		return nil, err
	}
	defer sfnServer.Stop()
	snsClient := sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(snsServer.Endpoint) })
	sfnClient := sfn.NewFromConfig(cfg, func(o *sfn.Options) { o.BaseEndpoint = aws.String(sfnServer.Endpoint) })
	const bucket = "jobfleet"
	if _, err := s3Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return nil, fmt.Errorf("creating bucket: %w", err)
	}
	reg, err := Registry(opts.Binary)
	if err != nil {
		return nil, err
	}
	model, err := predictor.Train(ctx, bootstrap(time.Now()), predictor.Options{})
	if err != nil {
		return nil, fmt.Errorf("training the bootstrap model: %w", err)
	}

	st := &state{submitted: map[string]string{}, succeeded: map[string]bool{}, dead: map[string]bool{}, predicted: map[string]int64{}}
	exec := newExecutor()
	exec.sqs, exec.binary, exec.registry, exec.concurrency, exec.dir, exec.log = sqsClient, opts.Binary, reg, opts.Concurrency, work, opts.Log
	awsEnv := []string{
		"AWS_ENDPOINT_URL_SQS=" + sqsServer.Endpoint, "AWS_ENDPOINT_URL_S3=" + s3Server.Endpoint,
		"AWS_ENDPOINT_URL_SNS=" + snsServer.Endpoint, "AWS_ENDPOINT_URL_SFN=" + sfnServer.Endpoint,
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local",
	}
	exec.env = append(slices.Clone(awsEnv), demo.EnvLog+"="+filepath.Join(work, "progress"))
	if err := os.MkdirAll(filepath.Join(work, "progress"), 0o755); err != nil {
		return nil, err
	}
	// The same environment a pod template gives a worker.
	exec.workerEnv = func(p *pod, url string, n *node) contract.WorkerEnv {
		typ, _ := reg.Type(p.class.Type)
		return contract.WorkerEnv{
			Queue: url, Intake: queues["jobfleet-intake"], DeadLetter: queues["jobfleet-dead-letter"],
			Records: queues["jobfleet-records"], EventsTopic: topic, Bucket: bucket, JobType: typ.Name, MaxAttempts: typ.MaxAttempts,
			CheckpointDir: filepath.Join(p.dir, "checkpoint"), CheckpointInterval: typ.Checkpoint.Interval,
			GracePeriod: typ.Checkpoint.GracePeriod(), UploadGrace: typ.Checkpoint.UploadGrace, MaxRuntime: typ.MaxRuntime,
			VisibilityTimeout: 30 * time.Second, IdleTimeout: 3 * time.Second, Memory: p.class.Size, Cgroup: cgroupMode,
			ReasonFile: filepath.Join(p.dir, "annotations"), Pod: p.name, PodNamespace: "local", Node: n.Name,
			InstanceType: n.InstanceType, CapacityType: n.CapacityType, Zone: n.Zone,
			Pool: p.class.Pool, Size: jobtype.SizeName(p.class.Size),
		}
	}

	store := contract.Store{S3: s3Client, Bucket: bucket}
	avoid := interruption.NewAvoid(time.Hour, clock.RealClock{})
	ctrl := interruption.New(interruption.Config{QueueURL: queues["jobfleet-interruptions"], Namespace: "local", Margin: 2 * time.Second},
		exec, sqsClient, avoid, store, interruption.NewMetrics(prometheus.NewRegistry()), opts.Log.With().Str("component", "interruption").Logger(), nil)
	d, err := dispatcher.New(dispatcher.Config{
		IntakeURL: queues["jobfleet-intake"], DeadLetterURL: queues["jobfleet-dead-letter"], Registry: reg,
		Bucket: bucket, Template: dispatcher.Template{Prefix: "jobfleet", EventsTopic: topic}, IntakeVisibility: 30 * time.Second, RetryDelay: time.Second,
		ClassPoll: 500 * time.Millisecond,
	}, sqsClient, s3Client, nil,
		dispatcher.WithLogger(opts.Log.With().Str("component", "dispatcher").Logger()),
		dispatcher.WithRegisterer(prometheus.NewRegistry()),
		dispatcher.WithAnnouncements(snsClient, sfnClient),
		dispatcher.WithModels(staticModel{model}),
		dispatcher.WithInterruptions(ctrl, avoid),
		dispatcher.WithRouteHook(func(job *jobfleet.Job, dec dispatcher.Decision) {
			st.mu.Lock()
			defer st.mu.Unlock()
			if _, ok := st.predicted[job.ID]; !ok && dec.Predicted > 0 {
				st.predicted[job.ID] = dec.Predicted
			}
		}),
		dispatcher.WithRecords(s3Client, dispatcher.RecordsConfig{
			URL: queues["jobfleet-records"], Bucket: bucket, Prefix: "jobfleet", FlushSize: 50, FlushEvery: 5 * time.Second,
			OnRecord: func(r jobfleet.RunRecord) {
				st.mu.Lock()
				defer st.mu.Unlock()
				st.records = append(st.records, r)
				if r.Outcome == jobfleet.OutcomeSucceeded {
					st.succeeded[r.JobID] = true
				}
			},
		}, dispatcher.RetrainConfig{}),
	)
	if err != nil {
		return nil, err
	}
	exec.classes, exec.avoid = d.ClassQueues, avoid.Pairs

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := d.Run(runCtx); err != nil {
			opts.Log.Error().Err(err).Msg("dispatcher")
		}
	})
	wg.Go(func() { exec.run(runCtx) })
	wg.Go(func() { drainDeadLetters(runCtx, sqsClient, queues["jobfleet-dead-letter"], st) })
	defer func() {
		stop()
		wg.Wait()
	}()

	if opts.Jobs > 0 {
		if err := publishDemo(ctx, sqsClient, queues["jobfleet-intake"], opts.Jobs, st); err != nil {
			return nil, err
		}
		if err := watch(ctx, opts, exec, sqsClient, queues["jobfleet-interruptions"], st); err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
		summarize(st, work, sum)
		if sum.Status, err = shownJob(ctx, store, st); err != nil {
			return nil, err
		}
		if sum.Workflow, err = runWorkflow(ctx, sqsClient, queues["jobfleet-intake"], store, exec); err != nil {
			return nil, err
		}
	}
	if opts.Serve {
		fmt.Fprintf(opts.Out, `
jobfleet local is serving; Ctrl-C stops it.

  SQS emulator  %s   intake queue %s
  S3 server     %s   bucket %s
  job types     export (features rows), aggregate (entities, density), train (model_params, epochs)

In another terminal:

  export AWS_ENDPOINT_URL_SQS=%s AWS_ENDPOINT_URL_S3=%s
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  jobfleet publish --queue jobfleet-intake --type aggregate --feature entities=100000,density=8 --print-ids
`, sqsServer.Endpoint, queues["jobfleet-intake"], s3Server.Endpoint, bucket, sqsServer.Endpoint, s3Server.Endpoint)
		if opts.OnServe != nil {
			opts.OnServe(Endpoints{Env: awsEnv, IntakeURL: queues["jobfleet-intake"], Bucket: bucket, EventsURL: queues["jobfleet-events"], SFN: sfnServer})
		}
		<-ctx.Done()
	}
	return sum, nil
}

type staticModel struct{ m *predictor.Model }

func (s staticModel) Model() *predictor.Model { return s.m }

// publishDemo publishes the demo workload: a mix of the three job types.
func publishDemo(ctx context.Context, api *sqs.Client, intake string, n int, st *state) error {
	rng := rand.New(rand.NewPCG(uint64(n), 2026))
	kinds := []string{demo.Export, demo.Aggregate, demo.Train}
	var jobs []*jobfleet.Job
	for i := range n {
		kind := kinds[i%len(kinds)]
		job := &jobfleet.Job{Version: jobfleet.Version, ID: fmt.Sprintf("demo-%s-%03d", kind, i), Type: kind, Features: features(rng, kind), Priority: rng.IntN(10)}
		jobs = append(jobs, job)
		st.submitted[job.ID] = kind
	}
	if err := jobfleet.NewPublisher(api, intake).Publish(ctx, jobs...); err != nil {
		return fmt.Errorf("publishing the demo jobs: %w", err)
	}
	return nil
}

// drainDeadLetters records which jobs reached the dead-letter queue.
func drainDeadLetters(ctx context.Context, api *sqs.Client, url string, st *state) {
	for ctx.Err() == nil {
		out, err := api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 2})
		if err != nil {
			continue
		}
		for _, m := range out.Messages {
			if job, err := jobfleet.Decode([]byte(aws.ToString(m.Body))); err == nil {
				st.mu.Lock()
				st.dead[job.ID] = true
				st.mu.Unlock()
			}
			_, _ = api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
		}
	}
}

// watch shows progress until every job succeeded or was dead-lettered,
// sending a spot interruption for a busy node halfway.
func watch(ctx context.Context, opts Options, exec *executor, api *sqs.Client, interruptions string, st *state) error {
	types := []string{demo.Export, demo.Aggregate, demo.Train}
	total := map[string]int{}
	for _, t := range st.submitted {
		total[t]++
	}
	var progress *mpb.Progress
	bars := map[string]*mpb.Bar{}
	status := map[string]string{}
	var statusMu sync.Mutex
	if opts.Progress {
		progress = mpb.NewWithContext(ctx, mpb.WithOutput(opts.Out), mpb.WithWidth(32), mpb.WithRefreshRate(200*time.Millisecond))
		for _, t := range types {
			typ := t
			bars[t] = progress.AddBar(int64(total[t]),
				mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-9s", t)), decor.CountersNoUnit(" %3d/%3d done")),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
					statusMu.Lock()
					defer statusMu.Unlock()
					return status[typ]
				})))
		}
	}
	deadline := time.Now().Add(opts.Timeout)
	interrupted := !opts.Interrupt
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
		st.mu.Lock()
		done := map[string]int{}
		reruns := map[string]int{}
		for id := range st.succeeded {
			done[st.submitted[id]]++
		}
		for _, r := range st.records {
			if r.Outcome != jobfleet.OutcomeSucceeded {
				reruns[r.Type]++
			}
		}
		finished := len(st.succeeded) + len(st.dead)
		trainDone := done[demo.Train]
		st.mu.Unlock()
		running := exec.Running()
		statusMu.Lock()
		for _, t := range types {
			queued := max(0, total[t]-done[t]-running[t])
			status[t] = fmt.Sprintf("queued %3d  running %2d  rerun %2d", queued, running[t], reruns[t])
		}
		statusMu.Unlock()
		for _, t := range types {
			if b := bars[t]; b != nil {
				b.SetCurrent(int64(done[t]))
			}
		}
		// A third of the way through, reclaim the spot node running the
		// most training jobs that have progress to lose: the same event
		// JSON and code path as production.
		if !interrupted && finished >= len(st.submitted)/3 && trainDone < total[demo.Train] {
			if instance, n := exec.SpotInstance(demo.Train, 3*time.Second); instance != "" && n > 0 {
				event := strings.ReplaceAll(spotInterruption, "INSTANCE_ID", instance)
				event = strings.ReplaceAll(event, "EVENT_TIME", time.Now().UTC().Format(time.RFC3339))
				if _, err := api.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(interruptions), MessageBody: aws.String(event)}); err == nil {
					interrupted = true
					st.mu.Lock()
					st.interrupts = n
					st.mu.Unlock()
					if progress == nil {
						fmt.Fprintf(opts.Out, "spot interruption sent for %s (%d training jobs on it)\n", instance, n)
					}
				}
			}
		}
		if finished >= len(st.submitted) || time.Now().After(deadline) {
			for _, b := range bars {
				b.Abort(false)
			}
			if progress != nil {
				progress.Wait()
			}
			return nil
		}
	}
}

// summarize computes the summary from what the run observed.
func summarize(st *state, work string, sum *Summary) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sum.Submitted, sum.Succeeded, sum.DeadLettered = len(st.submitted), len(st.succeeded), len(st.dead)
	accounted := map[string]bool{}
	for id := range st.succeeded {
		accounted[id] = true
	}
	for id := range st.dead {
		accounted[id] = true
	}
	for id := range st.submitted {
		if !accounted[id] {
			sum.Lost++
		}
	}
	sum.Interrupted = st.interrupts
	sum.Records = slices.Clone(st.records)
	sum.EpochsComputed, sum.EpochsRedone, _ = demo.Redone(filepath.Join(work, "progress"))
	byType := map[string]*TypeSummary{}
	get := func(t string) *TypeSummary {
		if byType[t] == nil {
			byType[t] = &TypeSummary{Type: t}
		}
		return byType[t]
	}
	for id, t := range st.submitted {
		ts := get(t)
		ts.Jobs++
		if p, ok := st.predicted[id]; ok {
			ts.MeanPredicted += float64(p)
		}
	}
	resumed := map[string]bool{}
	for _, r := range st.records {
		ts := get(r.Type)
		if r.Outcome != jobfleet.OutcomeSucceeded {
			ts.Reruns++
			continue
		}
		ts.Succeeded++
		ts.MeanAlloc += float64(r.AllocatedBytes)
		ts.MeanPeak += float64(r.PeakBytes)
		if r.AllocatedBytes > 0 {
			ts.CoverageDenominator++
			if r.PeakBytes <= r.AllocatedBytes {
				ts.Covered++
			}
		}
		if r.Resumed && !resumed[r.JobID] {
			resumed[r.JobID] = true
			ts.Resumed++
			sum.Resumed++
		}
	}
	for _, ts := range byType {
		if ts.Jobs > 0 {
			ts.MeanPredicted /= float64(ts.Jobs)
		}
		if ts.Succeeded > 0 {
			ts.MeanAlloc /= float64(ts.Succeeded)
			ts.MeanPeak /= float64(ts.Succeeded)
		}
		sum.Types = append(sum.Types, *ts)
	}
	sort.Slice(sum.Types, func(i, j int) bool { return sum.Types[i].Type < sum.Types[j].Type })
}

// Print writes the summary, ending with the one-line result.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tjobs\tsucceeded\tpredicted MiB\tallocated MiB\tpeak MiB\tcoverage\treruns\tresumed\t")
	for _, t := range s.Types {
		coverage := "-"
		if t.CoverageDenominator > 0 {
			coverage = fmt.Sprintf("%.2f", float64(t.Covered)/float64(t.CoverageDenominator))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%s\t%d\t%d\t\n", t.Type, t.Jobs, t.Succeeded, t.MeanPredicted/(1<<20), t.MeanAlloc/(1<<20), t.MeanPeak/(1<<20), coverage, t.Reruns, t.Resumed)
	}
	_ = tw.Flush()
	if s.Interrupted > 0 {
		fmt.Fprintf(w, "\nspot interruption: %d training jobs were checkpointed and requeued; %d epochs computed, %d of them redone after resuming.\n",
			s.Interrupted, s.EpochsComputed, s.EpochsRedone)
	}
	if s.CgroupNote != "" {
		fmt.Fprintf(w, "\nnote: %s\n", s.CgroupNote)
	}
	if s.Status != nil {
		printStatus(w, s.Status)
	}
	if len(s.Workflow) > 0 {
		printWorkflow(w, s.Workflow)
	}
	fmt.Fprintf(w, "\njobfleet local: %d submitted, %d succeeded, %d dead-lettered, %d lost, %d resumed from checkpoint\n",
		s.Submitted, s.Succeeded, s.DeadLettered, s.Lost, s.Resumed)
}

// shownJob picks the demo job whose state the summary shows: a training
// job that resumed from its checkpoint when there is one, else any that
// succeeded.
func shownJob(ctx context.Context, store contract.Store, st *state) (*jobfleet.JobState, error) {
	st.mu.Lock()
	var id string
	for _, r := range st.records {
		if r.Outcome == jobfleet.OutcomeSucceeded && (id == "" || r.Resumed) {
			id = r.JobID
			if r.Resumed {
				break
			}
		}
	}
	st.mu.Unlock()
	if id == "" {
		return nil, nil
	}
	cur, _, err := store.ReadRun(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("reading the state of job %s: %w", id, err)
	}
	return &cur.JobState, nil
}
