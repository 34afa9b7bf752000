package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/internal/cgroup"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
)

// SQSAPI is the SQS calls the worker makes.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Hooks observe a worker. Each may be nil.
type Hooks struct {
	// Finished is called with the run record of every attempt.
	Finished func(jobfleet.RunRecord)
	// Checkpointed is called after every checkpoint upload attempt.
	Checkpointed func(jobID string, uploaded bool, err error)
	// State is called as an attempt enters each state.
	State func(jobID string, attempt int, state State)
}

// Worker receives jobs from a class queue and runs them with a handler.
type Worker struct {
	cfg     Config
	sqs     SQSAPI
	s3      S3API
	store   contract.Store
	handler Handler
	clock   clock.WithTicker
	log     zerolog.Logger
	jobsRun int
	stop    *stopper
	// announce tells of jobs that ended: events and task token answers.
	announce contract.Announcer
}

// SNSAPI is the SNS call of publishing completion events; *sns.Client
// implements it.
type SNSAPI = contract.SNSAPI

// SFNAPI is the Step Functions calls of answering task tokens; *sfn.Client
// implements it.
type SFNAPI = contract.SFNAPI

// WithAnnouncements publishes a completion event to Config.EventsTopic for
// every job that ends, through sns, and answers the task token of a job
// that carries one, through sfn (heartbeats while it runs, success or
// failure when it ended). Either may be nil.
func WithAnnouncements(sns SNSAPI, sfn SFNAPI) Option {
	return func(w *Worker) { w.announce.SNS, w.announce.SFN = sns, sfn }
}

// Option configures a Worker.
type Option func(*Worker)

// WithClock replaces the real clock, for tests.
func WithClock(c clock.WithTicker) Option { return func(w *Worker) { w.clock = c } }

// WithLogger sets the worker's logger.
func WithLogger(l zerolog.Logger) Option { return func(w *Worker) { w.log = l } }

// New returns a worker. The config is validated with defaults applied.
func New(cfg Config, sqsClient SQSAPI, s3Client S3API, h Handler, opts ...Option) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	w := &Worker{cfg: cfg, sqs: sqsClient, s3: s3Client, handler: h, clock: clock.RealClock{}, log: zerolog.Nop()}
	for _, opt := range opts {
		opt(w)
	}
	w.store = contract.Store{S3: s3Client, Bucket: cfg.Bucket, Prefix: cfg.Prefix}
	w.announce.Topic = cfg.EventsTopic
	if w.announce.Topic != "" && w.announce.SNS == nil {
		return nil, errors.New("worker config: EventsTopic is set but no SNS client was given (WithAnnouncements)")
	}
	if cfg.Cgroup == CgroupJob {
		if err := cgroup.Check(cfg.CgroupParent); err != nil {
			return nil, fmt.Errorf("per-job memory cgroups: %w", err)
		}
	}
	return w, nil
}

// ErrWrapped is returned by Run when the program runs as the command of
// `jobfleet worker --`: the wrapper holds the job, so the program would find
// its queue empty. Give its job type `mode: library` so its pods run it
// directly.
var ErrWrapped = errors.New("this program calls worker.Run, but runs under `jobfleet worker --`; give its job type mode: library")

// Run receives and runs jobs until MaxJobs have run, no message arrived for
// IdleTimeout, or ctx ends. Cancelling ctx is how the worker is told to
// stop (SIGTERM): a running job is stopped, checkpointed and requeued within
// the grace period. Run returns an error when an attempt could not be
// finished (its message then reappears for another worker) or was lost to
// another worker.
func (w *Worker) Run(ctx context.Context) error {
	if os.Getenv(contract.EnvWrapped) != "" {
		return ErrWrapped
	}
	w.stop = newStopper(ctx, w)
	defer w.stop.close()
	for w.jobsRun < w.cfg.MaxJobs {
		msg, err := w.receive(ctx)
		if err != nil || msg == nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := w.process(ctx, msg); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// receive long-polls for one message until IdleTimeout passes.
func (w *Worker) receive(ctx context.Context) (*types.Message, error) {
	deadline := w.clock.Now().Add(w.cfg.IdleTimeout)
	failures := 0
	for {
		wait := deadline.Sub(w.clock.Now())
		if wait <= 0 {
			w.log.Info().Dur("idle", w.cfg.IdleTimeout).Msg("no message arrived; exiting")
			return nil, nil
		}
		out, err := w.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(w.cfg.QueueURL),
			MaxNumberOfMessages:         1,
			WaitTimeSeconds:             int32(min(20, max(1, wait/time.Second))),
			VisibilityTimeout:           int32(w.cfg.VisibilityTimeout / time.Second),
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if ctx.Err() != nil {
			if err == nil && len(out.Messages) > 0 {
				// Received as the stop came: hand it straight back.
				w.release(context.WithoutCancel(ctx), aws.ToString(out.Messages[0].ReceiptHandle))
			}
			return nil, nil
		}
		if err != nil {
			failures++
			w.log.Warn().Err(err).Int("failures", failures).Msg("receiving a message")
			if w.clock.Now().After(deadline) {
				return nil, fmt.Errorf("receiving from %s: %w", w.cfg.QueueURL, err)
			}
			if err := sleep(ctx, w.clock, backoff(failures)); err != nil {
				return nil, nil
			}
			continue
		}
		if len(out.Messages) > 0 {
			return &out.Messages[0], nil
		}
	}
}

// stopper knows when the worker was told to stop and by when everything
// must be done: the grace period after SIGTERM, or the earlier deadline of
// a late interruption notice that the interruption controller left for the
// pod in S3 (or, where S3 cannot be read, in the pod's annotations).
type stopper struct {
	w    *Worker
	done <-chan struct{}

	once     sync.Once
	ready    chan struct{}
	at       time.Time
	deadline time.Time
	notice   *contract.StopNotice
	quit     chan struct{}
}

func newStopper(ctx context.Context, w *Worker) *stopper {
	s := &stopper{w: w, done: ctx.Done(), ready: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		select {
		case <-s.done:
			s.learn()
		case <-s.quit:
		}
	}()
	return s
}

func (s *stopper) close() { close(s.quit) }

// learn fixes the stop time and deadline, once.
func (s *stopper) learn() {
	s.once.Do(func() {
		defer close(s.ready)
		w := s.w
		s.at = w.clock.Now()
		s.deadline = s.at.Add(w.cfg.GracePeriod - stopMargin(w.cfg.GracePeriod))
		s.notice = w.readStopNotice()
		if s.notice != nil && !s.notice.Deadline.IsZero() {
			if d := s.notice.Deadline.Add(-stopMargin(w.cfg.GracePeriod)); d.Before(s.deadline) {
				s.deadline = d
				w.log.Info().Time("deadline", d).Str("kind", s.notice.Kind).Msg("the pod must be gone before its grace period ends; planning the stop for the earlier deadline")
			}
		}
	})
}

// stopping reports whether the stop came, and when everything must be done.
func (s *stopper) stopping() (time.Time, bool) {
	select {
	case <-s.done:
	default:
		return time.Time{}, false
	}
	s.learn()
	return s.deadline, true
}

// stopMargin is kept between the worker finishing and the kubelet's
// SIGKILL.
func stopMargin(grace time.Duration) time.Duration {
	return min(2*time.Second, grace/10)
}

// readStopNotice reads why and until when the pod stops, from the stop
// notice in S3, else from the annotations file. It waits for S3 no longer
// than a tenth of the grace period.
func (w *Worker) readStopNotice() *contract.StopNotice {
	if w.cfg.Pod != "" && w.cfg.PodNamespace != "" {
		ctx, cancel := context.WithTimeout(context.Background(), max(time.Second, w.cfg.GracePeriod/10))
		defer cancel()
		n, err := w.store.ReadStopNotice(ctx, w.cfg.PodNamespace, w.cfg.Pod)
		if err == nil {
			return n
		}
		if !errors.Is(err, contract.ErrNotFound) {
			w.log.Warn().Err(err).Msg("reading the pod's stop notice; using its annotations")
		}
	}
	annotations := readAnnotations(w.cfg.ReasonFile)
	kind := annotations[contract.AnnotationInterruption]
	if kind == "" {
		return nil
	}
	n := &contract.StopNotice{
		Kind: kind, InstanceType: annotations[contract.AnnotationInstanceType],
		Zone: annotations[contract.AnnotationZone], CapacityType: annotations[contract.AnnotationCapacityType],
	}
	if t, err := time.Parse(time.RFC3339, annotations[contract.AnnotationDeadline]); err == nil {
		n.Deadline = t
	}
	return n
}

// bounded returns a context that outlives ctx's cancellation (the stop) by
// the time left until the stop deadline.
func (w *Worker) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-c.Done():
			return
		case <-ctx.Done():
		}
		deadline, _ := w.stop.stopping()
		t := w.clock.NewTimer(deadline.Sub(w.clock.Now()))
		defer t.Stop()
		select {
		case <-c.Done():
		case <-t.C():
			cancel()
		}
	}()
	return c, cancel
}

// retry calls f until it succeeds, ctx ends, or it kept failing for window
// (zero: no limit), backing off with jitter. The SDK retries each call
// already; this covers outages longer than that.
func (w *Worker) retry(ctx context.Context, log zerolog.Logger, what string, window time.Duration, f func(context.Context) error) error {
	start := w.clock.Now()
	for failures := 1; ; failures++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if isPermanent(err) || (window > 0 && w.clock.Since(start) >= window) {
			return fmt.Errorf("%s: %w", what, err)
		}
		log.Warn().Err(err).Int("failures", failures).Msg(what)
		if err := sleep(ctx, w.clock, backoff(failures)); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}

// isPermanent reports errors that retrying cannot fix.
func isPermanent(err error) bool {
	return errors.Is(err, contract.ErrConflict) || errors.Is(err, contract.ErrForged) || errors.Is(err, contract.ErrStale) || errors.Is(err, ErrLostAttempt) || errors.Is(err, ErrOutputs)
}

func (w *Worker) send(ctx context.Context, log zerolog.Logger, url string, msg queue.Message, what string) error {
	return w.retry(ctx, log, what, 0, func(ctx context.Context) error {
		if failures := queue.Send(ctx, w.sqs, url, []queue.Message{msg}, queue.Retry{Attempts: 1}); len(failures) > 0 {
			return failures[0].Err
		}
		return nil
	})
}

func (w *Worker) deleteMessage(ctx context.Context, log zerolog.Logger, receipt string) error {
	return w.retry(ctx, log, "deleting the message", 0, func(ctx context.Context) error {
		_, err := w.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: aws.String(receipt)})
		return err
	})
}

// release makes a message visible again at once, for another worker.
func (w *Worker) release(ctx context.Context, receipt string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := w.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: aws.String(receipt), VisibilityTimeout: 0,
	})
	if err != nil {
		w.log.Warn().Err(err).Msg("releasing the message; it reappears after its visibility timeout")
	}
}

func backoff(failures int) time.Duration {
	d := 200 * time.Millisecond << min(failures, 6)
	return min(d, 10*time.Second)
}

func sleep(ctx context.Context, c clock.Clock, d time.Duration) error {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// readAnnotations reads a downward-API annotations file (lines of
// key="value").
func readAnnotations(file string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(file)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if unquoted, err := strconv.Unquote(value); err == nil {
			value = unquoted
		}
		out[key] = value
	}
	return out
}

// truncate cuts an error text to about n bytes, on a character boundary,
// marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return contract.Truncate(s, n) + "..."
}

// holderID names one hold of one message by this worker.
func holderID(pod string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	if pod == "" {
		pod, _ = os.Hostname()
	}
	return pod + "/" + hex.EncodeToString(b[:])
}

// Run runs a worker with AWS clients from the SDK's default configuration
// (AWS_REGION, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3, ...), until MaxJobs
// jobs ran, the queue stayed idle for IdleTimeout, or ctx ends. Cancel ctx on
// SIGTERM (signal.NotifyContext) so a running job is checkpointed and
// requeued. In a pod of a job type with `mode: library`, take cfg from
// FromEnv.
func Run(ctx context.Context, cfg Config, h Handler, opts ...Option) error {
	if os.Getenv(contract.EnvWrapped) != "" {
		return ErrWrapped
	}
	clients, err := awsclient.Load(ctx, 10)
	if err != nil {
		return err
	}
	opts = append([]Option{WithAnnouncements(clients.SNS, clients.SFN)}, opts...)
	w, err := New(cfg, clients.SQS, clients.S3, h, opts...)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
