package worker

import (
	"context"
	"encoding/json"
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
}

// Worker receives jobs from a class queue and runs them with a handler.
type Worker struct {
	cfg     Config
	sqs     SQSAPI
	s3      S3API
	handler Handler
	clock   clock.WithTicker
	log     zerolog.Logger
	claims  *claims
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
	w.claims = &claims{s3: s3Client, bucket: cfg.Bucket, prefix: cfg.Prefix}
	if cfg.Cgroup == CgroupJob {
		if err := CheckJobCgroups(cfg.CgroupParent); err != nil {
			return nil, fmt.Errorf("per-job memory cgroups: %w", err)
		}
	}
	return w, nil
}

// Run receives and runs jobs until MaxJobs have run, no message arrived for
// IdleTimeout, or ctx ends. Cancelling ctx is how the worker is told to
// stop (SIGTERM): a running job is stopped, checkpointed and requeued within
// the grace period. Run returns an error only when the outcome of a job
// could not be recorded; its message then reappears for another worker.
func (w *Worker) Run(ctx context.Context) error {
	for done := 0; done < w.cfg.MaxJobs; done++ {
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
			return nil, nil
		}
		if err != nil {
			failures++
			w.log.Warn().Err(err).Int("failures", failures).Msg("receiving a message")
			if failures >= 5 {
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

// attempt is the state of one job attempt while the worker holds it.
type attempt struct {
	msg       *types.Message
	job       *jobfleet.Job
	log       zerolog.Logger
	started   time.Time
	store     *checkpointStore
	claim     *Claim
	resumed   bool
	uploads   int
	stoppedAt time.Time // when SIGTERM arrived, zero if it did not
	placement Placement // where the attempt ran
}

// process runs one message to an outcome.
func (w *Worker) process(ctx context.Context, msg *types.Message) error {
	log := w.log.With().Str("message_id", aws.ToString(msg.MessageId)).Logger()
	// Work that records outcomes must survive the stop signal; it is
	// bounded by the grace period instead.
	bg := context.WithoutCancel(ctx)

	job, err := jobfleet.Decode([]byte(aws.ToString(msg.Body)))
	if err != nil {
		log.Error().Err(err).Msg("poison message: dead-lettering it")
		return w.deadLetterRaw(bg, msg, err.Error())
	}
	if w.cfg.JobType != "" && job.Type != w.cfg.JobType {
		reason := fmt.Sprintf("job type %q arrived on the class queue of type %q", job.Type, w.cfg.JobType)
		log.Error().Str("job_id", job.ID).Msg(reason)
		return w.deadLetterRaw(bg, msg, reason)
	}
	log = log.With().Str("job_id", job.ID).Str("type", job.Type).Int("attempt", job.Attempt()).Logger()
	a := &attempt{msg: msg, job: job, log: log, started: w.clock.Now(), placement: w.cfg.Placement}
	a.claim = &Claim{
		JobID: job.ID, Type: job.Type, Attempt: job.Attempt(), MessageID: aws.ToString(msg.MessageId),
		QueueURL: w.cfg.QueueURL, ReceiptHandle: aws.ToString(msg.ReceiptHandle),
		Pod: w.cfg.Pod, Node: w.cfg.Placement.Node, State: ClaimRunning, ClaimedAt: a.started.UTC(),
	}
	var result claimResult
	err = w.retry(bg, log, "claiming the attempt", func(ctx context.Context) error {
		result, err = w.claims.claim(ctx, a.claim)
		return err
	})
	if err != nil {
		w.release(bg, msg)
		return err
	}
	switch result {
	case claimDuplicate:
		log.Warn().Msg("another message owns this attempt; deleting the duplicate without running it")
		return w.deleteMessage(bg, log, msg)
	case claimDone:
		log.Warn().Msg("this attempt already finished; deleting its leftover message")
		return w.deleteMessage(bg, log, msg)
	}

	lease := w.holdMessage(bg, log, msg)
	defer lease.stop()

	if w.cfg.Pod != "" {
		// Tell the failure sensor which job this pod runs.
		index := *a.claim
		index.Namespace, index.Job = w.cfg.PodNamespace, json.RawMessage(aws.ToString(msg.Body))
		err := w.retry(bg, log, "recording the pod's job", func(ctx context.Context) error {
			return w.claims.write(ctx, PodKey(w.cfg.Prefix, w.cfg.PodNamespace, w.cfg.Pod), &index)
		})
		if err != nil {
			w.release(bg, msg)
			return err
		}
	}

	if ctx.Err() != nil {
		// Stopped before the job started: hand the message straight back.
		// The claim names this message, so its redelivery takes it over.
		w.release(bg, msg)
		return nil
	}

	a.store = newCheckpointStore(w.s3, w.cfg.Bucket, w.cfg.Prefix, job.ID, w.cfg.CheckpointDir)
	if err := w.restore(ctx, a); err != nil {
		w.release(bg, msg)
		return err
	}

	outcome, peak, runErr := w.runJob(ctx, a)
	return w.finish(bg, a, outcome, runErr, peak)
}

// restore prepares the checkpoint directory from the job's last checkpoint.
func (w *Worker) restore(ctx context.Context, a *attempt) error {
	if err := os.RemoveAll(w.cfg.CheckpointDir); err != nil {
		return fmt.Errorf("clearing the checkpoint directory: %w", err)
	}
	if err := os.MkdirAll(w.cfg.CheckpointDir, 0o755); err != nil {
		return fmt.Errorf("creating the checkpoint directory: %w", err)
	}
	err := w.retry(ctx, a.log, "restoring the checkpoint", func(ctx context.Context) error {
		var err error
		a.resumed, err = a.store.restore(ctx)
		if errors.Is(err, errCorruptCheckpoint) {
			return nil // handled below
		}
		return err
	})
	if err != nil {
		return err
	}
	if a.store.last == nil && a.resumed {
		a.resumed = false
	}
	if !a.resumed {
		// A corrupt or partial restore leaves nothing behind: the job
		// starts over rather than from half a checkpoint.
		_ = os.RemoveAll(w.cfg.CheckpointDir)
		_ = os.MkdirAll(w.cfg.CheckpointDir, 0o755)
		if a.job.Checkpoint != "" {
			a.log.Warn().Str("checkpoint", a.job.Checkpoint).Msg("the job's checkpoint could not be restored; starting over")
		}
		return nil
	}
	a.log.Info().Int("generation", a.store.last.Generation).Int("files", len(a.store.last.Files)).Msg("restored checkpoint")
	return nil
}

// runJob runs the handler and classifies how it ended.
func (w *Worker) runJob(ctx context.Context, a *attempt) (jobfleet.Outcome, peakReading, error) {
	job := &Job{
		Message:       a.job,
		CheckpointDir: w.cfg.CheckpointDir,
		Resumed:       a.resumed,
		MemoryLimit:   w.cfg.MemoryLimit,
		stopGrace:     max(time.Second, w.cfg.GracePeriod-w.cfg.UploadGrace),
		stdout:        w.cfg.Stdout,
		stderr:        w.cfg.Stderr,
	}
	paramsFile, err := w.writeParams(a.job)
	if err != nil {
		return jobfleet.OutcomeFailed, peakReading{}, err
	}
	defer os.Remove(paramsFile)
	job.ParamsFile = paramsFile
	features, _ := json.Marshal(a.job.Features)
	job.env = []string{
		EnvJobID + "=" + a.job.ID,
		EnvJobType + "=" + a.job.Type,
		EnvAttempt + "=" + strconv.Itoa(a.job.Attempt()),
		EnvParamsFile + "=" + paramsFile,
		EnvFeatures + "=" + string(features),
		EnvCheckpointDir + "=" + w.cfg.CheckpointDir,
		EnvResumed + "=" + strconv.FormatBool(a.resumed),
		EnvMemoryLimit + "=" + formatInt(w.cfg.MemoryLimit),
	}

	meter, err := w.openMeter(a)
	if err != nil {
		return jobfleet.OutcomeFailed, peakReading{}, err
	}
	defer meter.close(a.log)
	job.cgroup = meter.jobCgroup()

	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	finished := make(chan struct{})
	var watch sync.WaitGroup
	var stoppedAt time.Time
	watch.Go(func() {
		limit := w.clock.NewTimer(w.cfg.MaxRuntime)
		defer limit.Stop()
		select {
		case <-finished:
		case <-ctx.Done():
			stoppedAt = w.clock.Now()
			a.log.Info().Msg("stop requested: stopping the job to checkpoint and requeue it")
			cancel(ErrStopping)
		case <-limit.C():
			a.log.Warn().Dur("max_runtime", w.cfg.MaxRuntime).Msg("the job ran too long; stopping it")
			cancel(ErrMaxRuntime)
		}
	})
	syncer := w.startCheckpointing(ctx, a)

	a.log.Info().Bool("resumed", a.resumed).Int64("memory_limit", w.cfg.MemoryLimit).Msg("running job")
	runErr := w.handler.Work(runCtx, job)
	close(finished)
	watch.Wait()
	syncer.stop()
	a.stoppedAt = stoppedAt

	peak := meter.peak(job)
	cause := context.Cause(runCtx)
	switch {
	case runErr == nil:
		return jobfleet.OutcomeSucceeded, peak, nil
	case errors.Is(cause, ErrStopping):
		return w.stopOutcome(a), peak, runErr
	case meter.oomKilled(job, peak):
		return jobfleet.OutcomeOOM, peak, runErr
	case errors.Is(cause, ErrMaxRuntime):
		return jobfleet.OutcomeFailed, peak, fmt.Errorf("%w: %w", ErrMaxRuntime, runErr)
	}
	return jobfleet.OutcomeFailed, peak, runErr
}

// stopOutcome tells a spot interruption from other evictions by the pod
// annotations the dispatcher's interruption handler sets, which also say
// where the pod ran.
func (w *Worker) stopOutcome(a *attempt) jobfleet.Outcome {
	annotations := readAnnotations(w.cfg.ReasonFile)
	reason := annotations[AnnotationInterruption]
	if reason == "" {
		return jobfleet.OutcomeEvicted
	}
	for key, field := range map[string]*string{
		AnnotationInstanceType: &a.placement.InstanceType,
		AnnotationZone:         &a.placement.Zone,
		AnnotationCapacityType: &a.placement.CapacityType,
	} {
		if v := annotations[key]; v != "" {
			*field = v
		}
	}
	a.log.Info().Str("reason", reason).Str("instance_type", a.placement.InstanceType).Str("zone", a.placement.Zone).Msg("the node is being interrupted")
	return jobfleet.OutcomeInterrupted
}

func (w *Worker) writeParams(job *jobfleet.Job) (string, error) {
	params := job.Params
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	f, err := os.CreateTemp(w.cfg.WorkDir, "jobfleet-params-*.json")
	if err != nil {
		return "", fmt.Errorf("writing the params file: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(params); err != nil {
		return "", fmt.Errorf("writing the params file: %w", err)
	}
	return f.Name(), nil
}

// finish records the attempt's outcome: the final checkpoint, the run
// record, the rerun or dead letter, the claim, and last the delete of the
// message. The message is deleted only when everything before succeeded.
func (w *Worker) finish(ctx context.Context, a *attempt, outcome jobfleet.Outcome, runErr error, peak peakReading) error {
	ended := w.clock.Now()
	if !a.stoppedAt.IsZero() {
		// Everything must be done before the kubelet's SIGKILL.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, a.stoppedAt.Add(w.cfg.GracePeriod-time.Second))
		defer cancel()
	}
	log := a.log.With().Str("outcome", string(outcome)).Logger()

	if outcome != jobfleet.OutcomeSucceeded {
		// The final checkpoint, so the rerun resumes from the latest work.
		uploadCtx := ctx
		if !a.stoppedAt.IsZero() {
			var cancel context.CancelFunc
			uploadCtx, cancel = context.WithDeadline(ctx, a.stoppedAt.Add(w.cfg.GracePeriod-w.cfg.UploadGrace/4))
			defer cancel()
		}
		err := w.retry(uploadCtx, log, "uploading the final checkpoint", func(ctx context.Context) error {
			uploaded, err := a.store.upload(ctx, a.job.ID, a.job.Attempt(), w.clock.Now())
			if uploaded {
				a.uploads++
			}
			return err
		})
		if err != nil {
			log.Error().Err(err).Msg("the final checkpoint was not uploaded; the rerun resumes from the previous one")
		}
	}

	errText := ""
	if runErr != nil {
		errText = runErr.Error()
	}
	record := jobfleet.RunRecord{
		JobID: a.job.ID, Type: a.job.Type, Features: a.job.Features, Attempt: a.job.Attempt(),
		Outcome: outcome, Error: errText, ExitCode: exitCode(runErr),
		AllocatedBytes: w.cfg.MemoryLimit, PeakBytes: peak.bytes, PeakSource: peak.source,
		Resumed: a.resumed, Checkpoints: a.uploads,
		StartedAt: a.started.UTC(), EndedAt: ended.UTC(), DurationSecs: ended.Sub(a.started).Seconds(),
		Node: a.placement.Node, InstanceType: a.placement.InstanceType, CapacityType: a.placement.CapacityType,
		Zone: a.placement.Zone, Arch: a.placement.Arch, Pool: a.placement.Pool, Size: a.placement.Size,
	}
	recordBody, err := json.Marshal(record)
	if err != nil {
		return fmt.Errorf("encoding the run record: %w", err)
	}
	if err := w.send(ctx, log, w.cfg.RecordsURL, queue.Message{Body: string(recordBody)}, "sending the run record"); err != nil {
		return err
	}

	if outcome != jobfleet.OutcomeSucceeded {
		if err := w.requeue(ctx, log, a, outcome, runErr, peak, ended); err != nil {
			return err
		}
	}

	a.claim.State, a.claim.Outcome, a.claim.FinishedAt = ClaimFinished, outcome, ended.UTC()
	if err := w.retry(ctx, log, "finishing the claim", func(ctx context.Context) error { return w.claims.finish(ctx, a.claim) }); err != nil {
		return err
	}
	if err := w.deleteMessage(ctx, log, a.msg); err != nil {
		return err
	}
	log.Info().Int64("peak_bytes", peak.bytes).Str("peak_source", peak.source).Float64("duration_seconds", record.DurationSecs).Msg("job attempt finished")
	if w.cfg.Hooks.Finished != nil {
		w.cfg.Hooks.Finished(record)
	}
	return nil
}

// requeue publishes the rerun of an unsuccessful attempt to intake, or the
// job to the dead-letter queue when its budget is spent.
func (w *Worker) requeue(ctx context.Context, log zerolog.Logger, a *attempt, outcome jobfleet.Outcome, runErr error, peak peakReading, ended time.Time) error {
	att := jobfleet.Attempt{
		Reason: outcome.Reason(), ExitCode: exitCode(runErr),
		Node: a.placement.Node, InstanceType: a.placement.InstanceType,
		CapacityType: a.placement.CapacityType, Zone: a.placement.Zone,
		AllocatedBytes: w.cfg.MemoryLimit, PeakBytes: peak.bytes,
		StartedAt: a.started.UTC(), EndedAt: ended.UTC(),
	}
	if runErr != nil {
		att.Error = truncate(runErr.Error(), 500)
	}
	if a.store.last != nil {
		att.Checkpoint = a.store.URI()
	}
	next := a.job.Rerun(att)

	deadReason := ""
	switch {
	case errors.Is(runErr, ErrSkipRetry):
		deadReason = "the job failed in a way a rerun cannot fix: " + att.Error
	case outcome.Reason().SpendsRetry() && next.RetriesSpent() >= w.cfg.MaxAttempts:
		deadReason = fmt.Sprintf("retry budget spent: %d of %d attempts %s; last: %s", next.RetriesSpent(), w.cfg.MaxAttempts, "failed or ran out of memory", att.Error)
	case len(next.History) >= w.cfg.MaxTotalAttempts:
		deadReason = fmt.Sprintf("%d attempts, the most any job gets", len(next.History))
	}
	body, err := jobfleet.Encode(next)
	if err != nil {
		return fmt.Errorf("encoding the rerun: %w", err)
	}
	if deadReason != "" {
		log.Warn().Str("reason", deadReason).Msg("dead-lettering the job")
		msg := queue.JobMessage(body, next.Type, next.Attempt())
		msg.Attributes[queue.AttrError] = queue.StringAttribute(truncate(deadReason, 1000))
		return w.send(ctx, log, w.cfg.DeadLetterURL, msg, "dead-lettering the job")
	}
	log.Info().Str("reason", string(att.Reason)).Bool("checkpoint", att.Checkpoint != "").Msg("requeueing the job for a rerun")
	return w.send(ctx, log, w.cfg.IntakeURL, queue.JobMessage(body, next.Type, next.Attempt()), "requeueing the job")
}

// deadLetterRaw moves a message that is not a runnable job to the
// dead-letter queue, as it arrived, with the reason attached.
func (w *Worker) deadLetterRaw(ctx context.Context, msg *types.Message, reason string) error {
	log := w.log.With().Str("message_id", aws.ToString(msg.MessageId)).Logger()
	dead := queue.Message{Body: aws.ToString(msg.Body), Attributes: map[string]types.MessageAttributeValue{}}
	for k, v := range msg.MessageAttributes {
		if len(dead.Attributes) < 9 {
			dead.Attributes[k] = v
		}
	}
	dead.Attributes[queue.AttrError] = queue.StringAttribute(truncate(reason, 1000))
	if err := w.send(ctx, log, w.cfg.DeadLetterURL, dead, "dead-lettering a message"); err != nil {
		return err
	}
	return w.deleteMessage(ctx, log, msg)
}

func (w *Worker) send(ctx context.Context, log zerolog.Logger, url string, msg queue.Message, what string) error {
	return w.retry(ctx, log, what, func(ctx context.Context) error {
		if failures := queue.Send(ctx, w.sqs, url, []queue.Message{msg}, queue.Retry{Attempts: 1}); len(failures) > 0 {
			return failures[0].Err
		}
		return nil
	})
}

func (w *Worker) deleteMessage(ctx context.Context, log zerolog.Logger, msg *types.Message) error {
	return w.retry(ctx, log, "deleting the message", func(ctx context.Context) error {
		_, err := w.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: msg.ReceiptHandle})
		return err
	})
}

// release makes a message visible again at once, for another worker.
func (w *Worker) release(ctx context.Context, msg *types.Message) {
	_, err := w.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: msg.ReceiptHandle, VisibilityTimeout: 0,
	})
	if err != nil {
		w.log.Warn().Err(err).Msg("releasing the message; it reappears after its visibility timeout")
	}
}

// retry calls f until it succeeds or ctx ends, backing off with jitter.
// The SDK retries each call already; this covers outages longer than that.
func (w *Worker) retry(ctx context.Context, log zerolog.Logger, what string, f func(context.Context) error) error {
	for failures := 0; ; failures++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		log.Warn().Err(err).Int("failures", failures+1).Msg(what)
		if err := sleep(ctx, w.clock, backoff(failures+1)); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
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

// Pod annotations the interruption handler sets before evicting a pod: the
// kind of interruption, and where the pod ran.
const (
	AnnotationInterruption = "jobfleet.io/interruption"
	AnnotationInstanceType = "jobfleet.io/instance-type"
	AnnotationZone         = "jobfleet.io/zone"
	AnnotationCapacityType = "jobfleet.io/capacity-type"
)

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Run runs a worker with AWS clients from the SDK's default configuration
// (AWS_REGION, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3, ...), until MaxJobs
// jobs ran, the queue stayed idle for IdleTimeout, or ctx ends. Cancel ctx on
// SIGTERM (signal.NotifyContext) so a running job is checkpointed and
// requeued.
func Run(ctx context.Context, cfg Config, h Handler, opts ...Option) error {
	clients, err := awsclient.Load(ctx, 10)
	if err != nil {
		return err
	}
	w, err := New(cfg, clients.SQS, clients.S3, h, opts...)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
