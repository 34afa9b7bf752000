package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/dispatcher/interruption"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/online"
	"github.com/jobfleet/jobfleet/predictor"
)

// SQSAPI is every SQS call the dispatcher makes.
type SQSAPI interface {
	IntakeAPI
	QueueAPI
	// DeleteMessage deletes the class message of a dead pod's attempt.
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

// ModelSource supplies the current memory model; nil until one loaded.
type ModelSource interface {
	Model() *predictor.Model
}

// AvoidSource supplies the capacity that reruns of interrupted jobs keep
// away from, as the cluster records it (interruption.AvoidConfigMap), and
// says when it changes.
type AvoidSource interface {
	Pairs() []interruption.Pair
	Changed() <-chan struct{}
}

// Dispatcher drains the intake queue, sizes every job, and routes it to its
// class queue. Its elected leader keeps each class's queue and KEDA
// ScaledJob.
type Dispatcher struct {
	cfg   Config
	sqs   SQSAPI
	s3    S3API
	store contract.Store
	// announce tells of jobs that end in the dispatcher's hands.
	announce contract.Announcer
	kube     dynamic.Interface
	classes  *classes
	sizing   Sizing
	models   ModelSource
	raiser   *online.Raiser // nil: sized by the model alone
	// raises, when set, is how the leader publishes the raise, and jobs
	// are sized so that workers can send them back when it rose
	// (Decision.ResizeAbove).
	raises  *raisePublisher
	metrics *metrics
	clock   clock.WithTicker
	log     zerolog.Logger
	ready   atomic.Bool

	// Fleet-wide duties, run by the elected leader when a typed client is
	// given, else by this replica.
	kubeClient kubernetes.Interface
	leader     *LeaderConfig
	sensor     *sensor
	records    *recordSink
	retraining RetrainConfig
	interrupt  *interruption.Controller
	avoid      AvoidSource
	onRoute    func(job *jobfleet.Job, d Decision)
	// raiseLateness and raiseMaxFile replace raiseLateness and
	// maxRecordsFile, for tests.
	raiseLateness time.Duration
	raiseMaxFile  int64
}

// WithRouteHook calls f with every job routed to a class and how it was
// sized.
func WithRouteHook(f func(job *jobfleet.Job, d Decision)) Option {
	return func(d *Dispatcher) { d.onRoute = f }
}

// WithInterruptions runs the interruption controller on this replica (every
// replica may: SQS hands each notice to one), and steers reruns of
// interrupted jobs away from the capacity avoid records.
func WithInterruptions(c *interruption.Controller, avoid AvoidSource) Option {
	return func(d *Dispatcher) {
		d.interrupt, d.avoid = c, avoid
		if avoid != nil {
			d.cfg.Template.Avoid = avoid.Pairs
		}
	}
}

// WithRecords consumes the workers' run records into S3, counts how many
// fit their allocation, and, when retrain.Every is set, has the leader
// retrain the model from them on that schedule.
func WithRecords(s3 RecordsS3API, cfg RecordsConfig, retrain RetrainConfig) Option {
	return func(d *Dispatcher) {
		d.records = &recordSink{d: d, s3: s3, cfg: cfg, attributes: map[string]bool{}, counted: newAttempts()}
		d.retraining = retrain
	}
}

// WithKubernetes gives the dispatcher a typed client for the fleet-wide
// duties: collecting idle classes (which checks their Jobs) and the failure
// sensor. With a LeaderConfig, only the elected replica runs them and
// changes classes; without one, this replica always does.
func WithKubernetes(kube kubernetes.Interface, leader *LeaderConfig) Option {
	return func(d *Dispatcher) { d.kubeClient, d.leader = kube, leader }
}

// WithSensor enables the failure sensor, which reads the workers' claims
// from S3.
func WithSensor(cfg SensorConfig) Option {
	return func(d *Dispatcher) {
		d.sensor = &sensor{d: d, cfg: cfg, done: map[types.UID]bool{}, placed: map[types.UID]bool{}}
	}
}

// SNSAPI is the SNS call of publishing completion events; *sns.Client
// implements it.
type SNSAPI = contract.SNSAPI

// SFNAPI is the Step Functions calls of answering task tokens; *sfn.Client
// implements it.
type SFNAPI = contract.SFNAPI

// WithAnnouncements publishes a completion event to Template.EventsTopic
// for every job that ends in the dispatcher's hands (a job it cannot run,
// a cancelled job it drops), through sns, and answers such a job's task
// token through sfn. Either may be nil.
func WithAnnouncements(sns SNSAPI, sfn SFNAPI) Option {
	return func(d *Dispatcher) { d.announce.SNS, d.announce.SFN = sns, sfn }
}

// Option configures a Dispatcher.
type Option func(*Dispatcher)

// WithModels sets where the memory model comes from; without one every
// job gets its type's default memory.
func WithModels(m ModelSource) Option { return func(d *Dispatcher) { d.models = m } }

// WithClock replaces the real clock, for tests.
func WithClock(c clock.WithTicker) Option { return func(d *Dispatcher) { d.clock = c } }

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(d *Dispatcher) { d.log = l } }

// WithRegisterer registers the metrics there instead of the default
// registry.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(d *Dispatcher) { d.metrics = newMetrics(r) }
}

// New returns a dispatcher. The config is validated with defaults applied.
// s3Client holds the runs of jobs, the wanted classes and dead letters too
// large for SQS, in cfg.Bucket. kube may be nil: the dispatcher then only
// routes jobs to class queues, without ScaledJobs, for running jobs outside
// Kubernetes (jobfleet local).
func New(cfg Config, sqsClient SQSAPI, s3Client S3API, kube dynamic.Interface, opts ...Option) (*Dispatcher, error) {
	cfg = cfg.WithDefaults()
	err := cfg.Validate()
	if kube != nil && cfg.Template.Namespace == "" {
		err = errors.Join(err, errors.New("the namespace of the ScaledJobs is required"))
	}
	if s3Client == nil {
		err = errors.Join(err, errors.New("an S3 client is required"))
	}
	if err != nil {
		return nil, fmt.Errorf("dispatcher config: %w", err)
	}
	d := &Dispatcher{cfg: cfg, sqs: sqsClient, s3: s3Client, kube: kube, sizing: cfg.Sizing, clock: clock.RealClock{}, log: zerolog.Nop()}
	for _, opt := range opts {
		opt(d)
	}
	d.store = contract.Store{S3: s3Client, Bucket: cfg.Bucket, Prefix: cfg.Prefix}
	d.announce.Topic = cfg.Template.EventsTopic
	if d.announce.Topic != "" && d.announce.SNS == nil {
		return nil, errors.New("dispatcher config: an events topic is set but no SNS client was given (WithAnnouncements)")
	}
	if d.metrics == nil {
		d.metrics = newMetrics(prometheus.DefaultRegisterer)
	}
	if cfg.Sizing.OnlineRate >= 0 {
		d.raiser = online.New(cfg.Sizing.OnlineRate, d.classMemory)
		d.metrics.raiser.Store(d.raiser)
		if cfg.RaisesInterval > 0 {
			d.raises = &raisePublisher{d: d}
		}
	}
	d.classes = &classes{
		sqs: sqsClient, kube: kube, registry: cfg.Registry, tmpl: d.cfg.Template,
		markers:     newMarkers(s3Client, cfg.Bucket, cfg.Prefix),
		maxReceives: cfg.ClassMaxReceives, ttl: cfg.ClassIdleTTL, freshFor: cfg.ClassFresh, clock: d.clock,
		log: d.log.With().Str("component", "classes").Logger(), ready: map[Class]*classState{},
		wake: make(chan struct{}, 1),
	}
	return d, nil
}

// ObserveSQSCall counts one SQS request in jobfleet_dispatcher_sqs_calls_total.
// Attach it to the dispatcher's SQS client with awsclient.Calls, so that
// every request, retries included, is counted where it is sent.
func (d *Dispatcher) ObserveSQSCall(operation string) {
	d.metrics.sqsCalls.WithLabelValues(operation).Inc()
}

// ObserveModelReload counts one check for a new memory model in
// jobfleet_dispatcher_model_reloads_total, by result: loaded, unchanged or
// rejected. Give it to the model's reloader (predictor.Reloader.OnReload).
func (d *Dispatcher) ObserveModelReload(changed bool, err error) {
	result := "unchanged"
	switch {
	case err != nil:
		result = "rejected"
	case changed:
		result = "loaded"
	}
	d.metrics.modelReloads.WithLabelValues(result).Inc()
}

// ClassQueues returns the queue URL of every class this replica routed to.
func (d *Dispatcher) ClassQueues() map[Class]string { return d.classes.urls() }

// Ready reports whether the dispatcher is receiving from intake.
func (d *Dispatcher) Ready() bool { return d.ready.Load() }

// Leading reports whether this replica runs the fleet-wide duties.
func (d *Dispatcher) Leading() bool { return d.classes.leading.Load() }

// Run dispatches until ctx ends, then forwards or returns to intake what it
// holds, and returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	out, err := d.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(d.cfg.DeadLetterURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return fmt.Errorf("reading the dead-letter queue's ARN: %w", err)
	}
	d.classes.deadARN = out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]

	var wg sync.WaitGroup
	var raise *raiseReader
	if d.interrupt != nil {
		wg.Go(func() {
			if err := d.interrupt.Run(ctx); err != nil {
				d.log.Error().Err(err).Msg("the interruption controller stopped")
			}
		})
	}
	if d.records != nil {
		if d.raiser != nil && d.models != nil {
			raise = newRaiseReader(d, d.records.s3, d.records.cfg)
			raise.log = d.log.With().Str("component", "raise").Logger()
			wg.Go(func() { raise.run(ctx) })
		}
		d.records.log = d.log.With().Str("component", "records").Logger()
		wg.Go(func() { d.records.run(ctx) })
	}
	duties := func(ctx context.Context) {
		d.classes.leading.Store(true)
		defer d.classes.leading.Store(false)
		var duty sync.WaitGroup
		duty.Go(func() { d.serveRequests(ctx) })
		duty.Go(func() { d.every(ctx, d.cfg.ReconcileInterval, "reconciling ScaledJobs", d.reconcile) })
		if d.avoid != nil {
			// Re-apply the classes of reruns when the capacity to avoid
			// changes.
			duty.Go(func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-d.avoid.Changed():
					}
					if err := d.reconcile(ctx); err != nil && ctx.Err() == nil {
						d.log.Warn().Err(err).Msg("re-applying ScaledJobs after an interruption")
					}
				}
			})
		}
		duty.Go(func() {
			d.every(ctx, d.cfg.CollectInterval, "collecting idle classes", func(ctx context.Context) error { return d.collect(ctx, d.kubeClient) })
		})
		if d.sensor != nil && d.kubeClient != nil {
			d.sensor.kube, d.sensor.log = d.kubeClient, d.log.With().Str("component", "sensor").Logger()
			duty.Go(func() { d.sensor.run(ctx) })
		}
		if d.raises != nil && d.models != nil {
			duty.Go(func() {
				d.raises.forget() // another leader may have published since
				d.every(ctx, d.cfg.RaisesInterval, "publishing the raise after misses", d.raises.publish)
			})
		}
		if d.records != nil && d.retraining.Every > 0 && d.retraining.Model != "" {
			duty.Go(func() {
				d.every(ctx, d.retraining.Every, "retraining the memory model", func(ctx context.Context) error {
					return d.retrain(ctx, d.records.s3, d.records.cfg, d.retraining)
				})
			})
		}
		duty.Wait()
	}
	if d.leader != nil && d.kubeClient != nil {
		wg.Go(func() { runLeader(ctx, d.kubeClient, d.cfg.Template.Namespace, *d.leader, d.log, duties) })
	} else {
		wg.Go(func() { duties(ctx) })
	}
	if raise != nil {
		// Size jobs with the raise the other replicas have, once the
		// records of this model's period are read, if that is soon.
		t := d.clock.NewTimer(raiseStartWait)
		select {
		case <-raise.caughtUp:
		case <-t.C():
			d.log.Warn().Dur("waited", raiseStartWait).Msg("dispatching before the raise after misses has read the stored run records; jobs are sized with what it has read so far")
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			wg.Wait()
			d.log.Info().Msg("dispatcher stopped")
			return nil
		}
	}
	in := newIntake(d)
	d.ready.Store(true)
	d.log.Info().Str("intake", d.cfg.IntakeURL).Int("receivers", d.cfg.Receivers).Msg("dispatching")
	in.run(ctx)
	d.ready.Store(false)
	wg.Wait()
	d.log.Info().Msg("dispatcher stopped")
	return nil
}

// every runs f each interval until ctx ends, logging failures.
func (d *Dispatcher) every(ctx context.Context, interval time.Duration, what string, f func(context.Context) error) {
	ticker := d.clock.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
		if err := f(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg(what)
		}
	}
}

// model returns the current model as a sizing Model, raised by group
// after recent misses; nil without one.
func (d *Dispatcher) model() Model {
	if d.models == nil {
		return nil
	}
	m := d.models.Model()
	switch {
	case m == nil:
		return nil
	case d.raiser == nil:
		return m
	}
	return raisedModel{model: m, raiser: d.raiser, published: d.raises != nil}
}

// raisedModel sizes with a model, raised by group after recent misses.
// With published, the leader publishes the raise for workers, which send
// back the jobs whose group's raise rose enough while they waited.
type raisedModel struct {
	model     *predictor.Model
	raiser    *online.Raiser
	published bool
}

func (r raisedModel) Predict(job predictor.Job) predictor.Prediction {
	return r.raiser.Predict(r.model, job)
}

// ID names the model for the jobs it sizes (jobfleet.SizedBy.Model), ""
// when the raise is not published.
func (r raisedModel) ID() string {
	if !r.published {
		return ""
	}
	return modelID(r.model)
}

// modelID names a model: when it was trained.
func modelID(m *predictor.Model) string { return m.TrainedAt().UTC().Format(time.RFC3339Nano) }

// classMemory is the class memory the model's size memory gives a job,
// as Decide gives it without a floor, raise or OOM history; 0 for a type not
// registered.
func (d *Dispatcher) classMemory(job predictor.Job, memory float64) float64 {
	t, ok := d.cfg.Registry.Type(job.Type)
	if !ok {
		return 0
	}
	pool, ok := d.cfg.Registry.Pool(t.Pool)
	if !ok {
		return 0
	}
	return float64(classSize(t, pool, int64(math.Ceil(memory))))
}

// observeRun tells the raiser how a first-sized run fared: an OOM kill, or
// a success that fit its allocation or not. Runs the model did not size
// (no predicted_bytes: a default, or a rerun sized by its OOM history)
// and runs that ended otherwise tell nothing of the model's sizes.
func (d *Dispatcher) observeRun(m *predictor.Model, rec *jobfleet.RunRecord) {
	if d.raiser == nil {
		return
	}
	if run, ok := d.raiseRun(rec); ok {
		d.raiser.Observe(m, run.Job, run.Alone, run.Missed)
	}
}

// raiseRun is how a run record tells the raise of a run, and false for
// one that tells nothing.
func (d *Dispatcher) raiseRun(rec *jobfleet.RunRecord) (online.Run, bool) {
	if rec.PredictedBytes <= 0 || rec.AllocatedBytes <= 0 {
		return online.Run{}, false
	}
	t, ok := d.cfg.Registry.Type(rec.Type)
	if !ok {
		return online.Run{}, false
	}
	// A run sized again when it was about to start tells whether the
	// size the raise gave it first would have held: the raise learns from
	// the sizes it gives, and sizing again only adds to them.
	given := rec.AllocatedBytes
	if rec.ResizedFromBytes > 0 {
		given = rec.ResizedFromBytes
	}
	var missed bool
	switch {
	case rec.Outcome == jobfleet.OutcomeOOM:
		missed = true
	case rec.Outcome == jobfleet.OutcomeSucceeded && rec.PeakBytes > 0:
		missed = rec.PeakBytes > given
	default:
		return online.Run{}, false
	}
	job := predictor.Job{Type: t.Name, Pool: t.Pool, Labels: rec.Labels, Features: rec.Features}
	return online.Run{Job: job, Ended: rec.EndedAt, Alone: float64(rec.PredictedBytes), Missed: missed}, true
}

// raiseRuns are the runs of ds, read from run records, that prev sized,
// as the raise was told of them (raiseRun).
func (d *Dispatcher) raiseRuns(prev *predictor.Model, ds *predictor.Dataset) []online.Run {
	after := float64(online.SizedAfter(prev).UnixMilli()) / 1e3
	var runs []online.Run
	for _, s := range ds.Samples {
		if s.End() <= after {
			continue
		}
		// The record the sample was read from, as far as the raise
		// reads it (predictor.LoadRecords keeps successes with a peak
		// and OOM kills with an allocation).
		rec := jobfleet.RunRecord{
			Type: s.Type, Labels: s.Labels, Features: map[string]float64{}, PredictedBytes: int64(s.Predicted), PeakBytes: int64(s.Peak),
			EndedAt: time.UnixMilli(int64(math.Round(s.End() * 1e3))), Outcome: jobfleet.OutcomeSucceeded,
			ResizedFromBytes: int64(s.ResizedFrom),
		}
		if !math.IsNaN(s.Allocated) {
			rec.AllocatedBytes = int64(s.Allocated)
		}
		if s.Missed {
			rec.Outcome = jobfleet.OutcomeOOM
		}
		for i, name := range ds.Features {
			if !math.IsNaN(s.Features[i]) {
				rec.Features[name] = s.Features[i]
			}
		}
		if run, ok := d.raiseRun(&rec); ok {
			runs = append(runs, run)
		}
	}
	return runs
}

// observe records a job that left intake.
func (d *Dispatcher) observe(it *item, now time.Time, deleteFailed bool) {
	outcome := it.outcome()
	if outcome == "dead_lettered" {
		d.log.Warn().Str("message_id", aws.ToString(it.msg.MessageId)).Str("type", it.jobType).Str("reason", it.reason).Msg("dead-lettered a job")
	}
	if deleteFailed {
		outcome += "_undeleted"
	}
	d.metrics.jobs.WithLabelValues(it.jobType, outcome).Inc()
	d.metrics.handling.WithLabelValues(it.jobType).Observe(now.Sub(it.received).Seconds())
	if sent, ok := it.msg.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)]; ok {
		if ms, err := strconv.ParseInt(sent, 10, 64); err == nil {
			d.metrics.queueAge.WithLabelValues(it.jobType).Observe(now.Sub(time.UnixMilli(ms)).Seconds())
		}
	}
}

func (d *Dispatcher) sleep(ctx context.Context, dur time.Duration) {
	t := d.clock.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C():
	}
}
