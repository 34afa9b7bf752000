// Package loadtest measures a jobfleet dispatcher: it publishes jobs to an
// intake queue, accounts for every one of them in the class queues, and
// reports throughput, intake-to-class-queue latency, SQS calls per job,
// and lost and duplicated jobs, next to the same figures for a plain
// receive-send-delete loop run against the same queue server in the same
// run, as the ceiling.
//
// It consumes the jobs it publishes from their class queues to count them,
// so point it at a dispatcher whose classes no workers serve (the embedded
// stack of `jobfleet loadtest --local`, or a dispatcher with its own class
// prefix and no KEDA).
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/awsclient"
)

// SQSAPI is the SQS calls of a load test.
type SQSAPI interface {
	jobfleet.SendMessageBatchAPI
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ListQueues(ctx context.Context, in *sqs.ListQueuesInput, opts ...func(*sqs.Options)) (*sqs.ListQueuesOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, opts ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	DeleteQueue(ctx context.Context, in *sqs.DeleteQueueInput, opts ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error)
}

// Target is the dispatcher under test.
type Target interface {
	// Start starts the dispatcher, or starts it again after Kill.
	Start(ctx context.Context) error
	// Kill stops it at once, as SIGKILL would, holding whatever it held.
	Kill() error
	// Stop stops it gracefully.
	Stop() error
	// SQSCalls returns how many SQS requests it made so far.
	SQSCalls() (int64, error)
}

// Config configures a load test.
type Config struct {
	// Jobs is how many jobs to publish.
	Jobs int
	// Mix weighs the job types published; each must be registered with
	// the dispatcher.
	Mix map[string]float64
	// Rate limits publishing to jobs per second; zero publishes all jobs
	// before starting the dispatcher, which measures its greatest rate.
	Rate float64
	// Intake is the dispatcher's intake queue URL.
	Intake string
	// ClassPrefix starts the names of the dispatcher's class queues.
	ClassPrefix string
	// Consumers drain the class queues. Default 8.
	Consumers int
	// Chaos kills the dispatcher when a third of the jobs arrived and
	// starts it again.
	Chaos bool
	// Timeout bounds the wait for every job to arrive. Default 10m.
	Timeout time.Duration
	// Progress, when set, receives a progress bar.
	Progress io.Writer
	// SkipCeiling skips the plain loop.
	SkipCeiling bool
}

// Result is what a load test measured.
type Result struct {
	Jobs             int     `json:"jobs"`
	Routed           int     `json:"routed"`
	Lost             int     `json:"lost"`
	Duplicated       int     `json:"duplicated"`
	DispatchedPerSec float64 `json:"dispatched_per_sec"`
	CeilingPerSec    float64 `json:"ceiling_per_sec"`
	SQSCallsPerJob   float64 `json:"sqs_calls_per_job"`
	CeilingCalls     float64 `json:"ceiling_sqs_calls_per_job"`
	P50LatencyMs     float64 `json:"p50_latency_ms"`
	P99LatencyMs     float64 `json:"p99_latency_ms"`
	CeilingP50Ms     float64 `json:"ceiling_p50_latency_ms"`
	CeilingP99Ms     float64 `json:"ceiling_p99_latency_ms"`
	Chaos            bool    `json:"chaos"`
	Restarts         int     `json:"restarts"`
	Seconds          float64 `json:"seconds"`
	// Timeline is jobs arrived per second, for the report.
	Timeline []Point `json:"timeline,omitempty"`
	// Ceiling timeline, the same for the plain loop.
	CeilingTimeline []Point `json:"ceiling_timeline,omitempty"`
}

// Point is one second of a run.
type Point struct {
	Second    int     `json:"second"`
	Jobs      int     `json:"jobs"`
	P50Millis float64 `json:"p50_ms"`
	P99Millis float64 `json:"p99_ms"`
}

// Run measures the plain loop, then the target.
func Run(ctx context.Context, api SQSAPI, target Target, cfg Config) (*Result, error) {
	if cfg.Jobs <= 0 {
		return nil, errors.New("the number of jobs must be positive")
	}
	if len(cfg.Mix) == 0 {
		return nil, errors.New("the job type mix is empty")
	}
	if cfg.Consumers == 0 {
		cfg.Consumers = 8
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	res := &Result{Jobs: cfg.Jobs, Chaos: cfg.Chaos}
	if !cfg.SkipCeiling {
		if err := ceiling(ctx, api, cfg, runID, res); err != nil {
			return nil, fmt.Errorf("measuring the plain loop: %w", err)
		}
	}
	if err := dispatch(ctx, api, target, cfg, runID, res); err != nil {
		return nil, err
	}
	return res, nil
}

// jobs builds the jobs of a run, the types drawn by the mix.
func jobs(cfg Config, runID string) []*jobfleet.Job {
	types := slices.Sorted(func(yield func(string) bool) {
		for t := range cfg.Mix {
			if !yield(t) {
				return
			}
		}
	})
	var total float64
	for _, t := range types {
		total += cfg.Mix[t]
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Jobs), 42))
	out := make([]*jobfleet.Job, cfg.Jobs)
	for i := range out {
		x, typ := rng.Float64()*total, types[len(types)-1]
		for _, t := range types {
			if x < cfg.Mix[t] {
				typ = t
				break
			}
			x -= cfg.Mix[t]
		}
		out[i] = &jobfleet.Job{
			Version: jobfleet.Version, ID: fmt.Sprintf("lt-%s-%06d", runID, i), Type: typ,
			Features: map[string]float64{"rows": float64(rng.IntN(1e7))}, Priority: rng.IntN(10),
		}
	}
	return out
}

// publish sends the jobs, at the rate if one is set, recording when each
// was sent.
func publish(ctx context.Context, api SQSAPI, url string, all []*jobfleet.Job, rate float64, sent *sync.Map, bar *progressBar) error {
	pub := jobfleet.NewPublisher(api, url)
	var batches [][]*jobfleet.Job
	for i := 0; i < len(all); i += 10 {
		batches = append(batches, all[i:min(i+10, len(all))])
	}
	interval := time.Duration(0)
	if rate > 0 {
		interval = time.Duration(float64(10*time.Second) / rate)
	}
	work := make(chan []*jobfleet.Job)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for b := range work {
				now := time.Now()
				if err := pub.Publish(ctx, b...); err != nil {
					errs <- err
					return
				}
				for _, j := range b {
					sent.Store(j.ID, now)
				}
				bar.add(len(b))
			}
		})
	}
	next := time.Now()
	var err error
feed:
	for _, b := range batches {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
		}
		select {
		case work <- b:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// arrivals counts jobs as they arrive in queues and how long each took.
type arrivals struct {
	mu      sync.Mutex
	start   time.Time
	seen    map[string]int
	latency []float64 // ms, per first arrival
	perSec  map[int][]float64
	last    time.Time
}

func newArrivals(start time.Time) *arrivals {
	return &arrivals{start: start, seen: map[string]int{}, perSec: map[int][]float64{}}
}

func (a *arrivals) add(id string, latencyMs float64, at time.Time) (first bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen[id]++
	if a.seen[id] > 1 {
		return false
	}
	a.latency = append(a.latency, latencyMs)
	sec := int(at.Sub(a.start) / time.Second)
	a.perSec[sec] = append(a.perSec[sec], latencyMs)
	if at.After(a.last) {
		a.last = at
	}
	return true
}

func (a *arrivals) timeline() []Point {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Point
	for sec, lats := range a.perSec {
		out = append(out, Point{Second: sec, Jobs: len(lats), P50Millis: percentile(lats, 0.5), P99Millis: percentile(lats, 0.99)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Second < out[j].Second })
	return out
}

func percentile(values []float64, q float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// sentTime reads the SentTimestamp SQS stamps on a message.
func sentTime(m sqstypes.Message) (time.Time, bool) {
	ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// drain receives and deletes from the queues the list function names,
// passing each message to handle, until done is closed. Each consumer
// cycles through all the queues with short polls, so an empty queue never
// holds it up while another has messages; it pauses only after a whole
// pass found nothing.
func drain(ctx context.Context, api SQSAPI, consumers int, queues func() []string, handle func(sqstypes.Message, time.Time), done <-chan struct{}) {
	var wg sync.WaitGroup
	for i := range consumers {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				default:
				}
				qs := queues()
				got := 0
				for k := range qs {
					url := qs[(i+k)%len(qs)]
					out, err := api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
						QueueUrl: aws.String(url), MaxNumberOfMessages: 10,
						MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
					})
					if err != nil || len(out.Messages) == 0 {
						continue
					}
					got += len(out.Messages)
					now := time.Now()
					entries := make([]sqstypes.DeleteMessageBatchRequestEntry, len(out.Messages))
					for n, m := range out.Messages {
						handle(m, now)
						entries[n] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(n)), ReceiptHandle: m.ReceiptHandle}
					}
					_, _ = api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
				}
				if got == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

// dispatch measures the target. Nothing consumes the class queues while
// the dispatcher runs: arrivals are timed by SQS's own SentTimestamp, so
// the queues are drained and every job accounted for afterwards, and the
// dispatcher has the queue server to itself, as the plain loop does.
func dispatch(ctx context.Context, api SQSAPI, target Target, cfg Config, runID string, res *Result) error {
	all := jobs(cfg, runID)
	var sent sync.Map
	if cfg.Rate == 0 {
		bar := newBar(cfg, "publishing")
		err := publish(ctx, api, cfg.Intake, all, 0, &sent, bar)
		bar.finish()
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
	}
	before, err := target.SQSCalls()
	if err != nil {
		return err
	}
	if err := target.Start(ctx); err != nil {
		return fmt.Errorf("starting the dispatcher: %w", err)
	}
	// The clock starts once the dispatcher is ready: a process takes a
	// moment to start, which is not the dispatcher's rate.
	start := time.Now()
	published := make(chan error, 1)
	if cfg.Rate > 0 {
		go func() { published <- publish(ctx, api, cfg.Intake, all, cfg.Rate, &sent, nil) }()
	} else {
		published <- nil
	}
	bar := newBar(cfg, "routed")
	defer bar.finish()
	killed := false
	deadline := time.Now().Add(cfg.Timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		routed, waiting, err := depths(ctx, api, cfg)
		if err == nil {
			bar.set(min(routed, cfg.Jobs))
			if cfg.Chaos && !killed && routed >= cfg.Jobs/3 {
				killed = true
				if err := target.Kill(); err != nil {
					return fmt.Errorf("killing the dispatcher: %w", err)
				}
				if err := target.Start(ctx); err != nil {
					return fmt.Errorf("restarting the dispatcher: %w", err)
				}
				res.Restarts++
			}
			if routed >= cfg.Jobs && waiting == 0 && len(published) > 0 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	calls, err := target.SQSCalls()
	if err != nil {
		return err
	}
	if err := <-published; err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	_ = target.Stop()
	bar.finish()

	// Account for every job.
	arr := newArrivals(start)
	queues, err := classQueues(ctx, api, cfg)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	var drained sync.WaitGroup
	drained.Go(func() {
		drain(ctx, api, cfg.Consumers, func() []string { return queues }, func(m sqstypes.Message, now time.Time) {
			job, err := jobfleet.Decode([]byte(aws.ToString(m.Body)))
			if err != nil || !strings.HasPrefix(job.ID, "lt-"+runID+"-") {
				return
			}
			at, ok := sentTime(m)
			if !ok {
				at = now
			}
			lat := 0.0
			if s, ok := sent.Load(job.ID); ok {
				lat = float64(at.Sub(s.(time.Time))) / float64(time.Millisecond)
			}
			arr.add(job.ID, max(lat, 0), at)
		}, done)
	})
	for ctx.Err() == nil {
		routed, _, err := depths(ctx, api, cfg)
		if err == nil && routed == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	drained.Wait()

	arr.mu.Lock()
	res.Routed = len(arr.seen)
	for _, n := range arr.seen {
		res.Duplicated += n - 1
	}
	last := arr.last
	res.P50LatencyMs, res.P99LatencyMs = percentile(arr.latency, 0.5), percentile(arr.latency, 0.99)
	arr.mu.Unlock()
	res.Lost = cfg.Jobs - res.Routed
	elapsed := last.Sub(start).Seconds()
	res.Seconds = elapsed
	if elapsed > 0 {
		res.DispatchedPerSec = float64(res.Routed) / elapsed
	}
	res.SQSCallsPerJob = float64(calls-before) / float64(cfg.Jobs)
	res.Timeline = arr.timeline()
	return nil
}

// classQueues lists the dispatcher's class queues.
func classQueues(ctx context.Context, api SQSAPI, cfg Config) ([]string, error) {
	out, err := api.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(cfg.ClassPrefix + "-")})
	if err != nil {
		return nil, fmt.Errorf("listing class queues: %w", err)
	}
	return out.QueueUrls, nil
}

// depths returns the messages in the class queues and those still in
// intake, visible or in flight.
func depths(ctx context.Context, api SQSAPI, cfg Config) (routed, waiting int, err error) {
	queues, err := classQueues(ctx, api, cfg)
	if err != nil {
		return 0, 0, err
	}
	count := func(url string) (int, error) {
		out, err := api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{
				sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			},
		})
		if err != nil {
			return 0, err
		}
		n := 0
		for _, v := range out.Attributes {
			k, _ := strconv.Atoi(v)
			n += k
		}
		return n, nil
	}
	for _, q := range queues {
		n, err := count(q)
		if err != nil {
			return 0, 0, err
		}
		routed += n
	}
	waiting, err = count(cfg.Intake)
	return routed, waiting, err
}

// progressBar shows jobs done on Config.Progress; nil shows nothing.
type progressBar struct {
	p    *mpb.Progress
	b    *mpb.Bar
	once sync.Once
}

func newBar(cfg Config, what string) *progressBar {
	if cfg.Progress == nil {
		return nil
	}
	p := mpb.New(mpb.WithOutput(cfg.Progress), mpb.WithWidth(40), mpb.WithRefreshRate(100*time.Millisecond))
	b := p.AddBar(int64(cfg.Jobs),
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-10s", what)), decor.CountersNoUnit(" %d/%d jobs")),
		mpb.AppendDecorators(decor.AverageSpeed(0, " %.0f jobs/s")))
	return &progressBar{p: p, b: b}
}

func (b *progressBar) add(n int) {
	if b != nil {
		b.b.IncrBy(n)
	}
}

func (b *progressBar) set(n int) {
	if b != nil {
		b.b.SetCurrent(int64(n))
	}
}

// finish completes the bar and waits for its last drawing; again, it does
// nothing.
func (b *progressBar) finish() {
	if b == nil {
		return
	}
	b.once.Do(func() {
		b.b.SetTotal(-1, true)
		b.p.Wait()
	})
}

// CountingClient returns an SQS client whose requests are counted.
func CountingClient(base *sqs.Client, calls *awsclient.Calls) *sqs.Client {
	return sqs.New(base.Options(), func(o *sqs.Options) { o.APIOptions = append(o.APIOptions, calls.Middleware) })
}
