package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
)

// State is where an attempt is in its lifecycle. Every state has a
// deadline: before the job runs, each step gives up when it kept failing
// for a visibility timeout (the message is handed back for another
// worker); after it ran, each step retries for as long as the worker holds
// the attempt, or, once SIGTERM came, until the stop deadline. SIGTERM is
// honoured in every state.
type State string

// States of an attempt, in order. An attempt that succeeded skips
// uploaded and requeued; one that is lost to another worker stops where it
// is.
const (
	StateClaimed  State = "claimed"  // the attempt is ours
	StateRestored State = "restored" // the run's checkpoint is in place
	StateRunning  State = "running"  // the job runs
	StateStopping State = "stopping" // SIGTERM came: the job is being stopped
	StateUploaded State = "uploaded" // the final checkpoint is stored
	StateRecorded State = "recorded" // the outcome and what follows are in the claim
	StateRequeued State = "requeued" // the rerun (or dead letter) is sent
	StateFinished State = "finished" // the message is deleted
)

// attempt is the state of one job attempt while the worker holds it.
type attempt struct {
	msg       *types.Message
	hold      *hold
	job       *jobfleet.Job
	run       string
	number    int
	history   jobfleet.History
	log       zerolog.Logger
	started   time.Time
	store     *checkpointStore
	claim     *contract.Claim
	resumed   bool
	uploads   int
	stoppedAt time.Time // when SIGTERM arrived, zero if it did not
	placement Placement // where the attempt ran
	outputs   *outputs
}

func (w *Worker) enter(a *attempt, s State) {
	a.log.Info().Str("state", string(s)).Msg("attempt " + string(s))
	if w.cfg.Hooks.State != nil {
		w.cfg.Hooks.State(a.job.ID, a.number, s)
	}
}

// process runs one message to an outcome.
func (w *Worker) process(ctx context.Context, msg *types.Message) error {
	log := w.log.With().Str("message_id", aws.ToString(msg.MessageId)).Logger()
	h := w.holdMessage(ctx, log, msg)
	defer h.stop()
	// Work after the stop is bounded by the stop deadline.
	fin, cancel := w.bounded(ctx)
	defer cancel()

	job, err := jobfleet.Decode([]byte(aws.ToString(msg.Body)))
	if err != nil {
		log.Error().Err(err).Msg("poison message: dead-lettering it")
		return w.deadLetterRaw(fin, h, msg, err.Error())
	}
	if w.cfg.JobType != "" && job.Type != w.cfg.JobType {
		reason := fmt.Sprintf("job type %q arrived on the class queue of type %q", job.Type, w.cfg.JobType)
		log.Error().Str("job_id", job.ID).Msg(reason)
		return w.deadLetterRaw(fin, h, msg, reason)
	}
	run, number, ok, err := queue.RunAttempt(msg.MessageAttributes)
	if err == nil && !ok {
		err = errors.New("the message carries no run and attempt: only jobfleet's dispatcher forwards jobs to class queues")
	}
	if err != nil {
		log.Error().Err(err).Str("job_id", job.ID).Msg("dead-lettering a message jobfleet did not forward")
		return w.deadLetterRaw(fin, h, msg, err.Error())
	}
	log = log.With().Str("job_id", job.ID).Str("type", job.Type).Str("run", run).Int("attempt", number).Logger()
	a := &attempt{msg: msg, hold: h, job: job, run: run, number: number, log: log, started: w.clock.Now(), placement: w.cfg.Placement}

	// The run and its history come from jobfleet's records, never from the
	// message.
	var verified contract.Verified
	err = w.retry(ctx, log, "checking the run", w.cfg.VisibilityTimeout, func(ctx context.Context) error {
		verified, err = w.store.VerifyAttempt(ctx, job.ID, aws.ToString(msg.Body), run, number)
		return err
	})
	a.history = verified.History
	switch {
	case errors.Is(err, contract.ErrForged):
		log.Error().Err(err).Msg("dead-lettering a message whose run jobfleet's records do not show")
		return w.deadLetterRaw(fin, h, msg, err.Error())
	case errors.Is(err, contract.ErrStale):
		log.Warn().Err(err).Msg("deleting a leftover message of a run that ended (done, dead-lettered or cancelled)")
		// A job cancelled while its message waited is announced by
		// whoever drops the message; a run that ended otherwise was
		// announced already, and this does nothing.
		w.announceEnd(fin, log, job.ID, run)
		return w.deleteMessage(fin, log, h.receiptHandle())
	case err != nil:
		return w.abandon(ctx, a, err)
	}

	claim := &contract.Claim{
		JobID: job.ID, Type: job.Type, Run: run, Attempt: number, Holder: holderID(w.cfg.Pod),
		MessageID: aws.ToString(msg.MessageId), QueueURL: w.cfg.QueueURL, ReceiptHandle: h.receiptHandle(),
		Pod: w.cfg.Pod, Namespace: w.cfg.PodNamespace, Node: w.cfg.Placement.Node, ClaimedAt: a.started.UTC(),
		History: a.history, PredictedBytes: queue.Predicted(msg.MessageAttributes),
	}
	var result contract.Claimed
	var etag string
	var found *contract.Claim
	err = w.retry(ctx, log, "claiming the attempt", w.cfg.VisibilityTimeout, func(ctx context.Context) error {
		result, found, etag, err = w.store.Claim(ctx, claim, w.clock.Now(), w.leaseTimeout())
		return err
	})
	if err != nil {
		return w.abandon(ctx, a, err)
	}
	switch result {
	case contract.HeldByOther:
		log.Warn().Str("holder", found.MessageID).Msg("another message holds this attempt; deleting the duplicate without running it")
		return w.deleteMessage(fin, log, h.receiptHandle())
	case contract.HeldAlive:
		// Our message came back while its holder still runs the job: the
		// holder lost touch with SQS. Give it the new receipt handle and
		// keep the message hidden; the holder extends and deletes it.
		found.ReceiptHandle = h.receiptHandle()
		if _, err := w.store.Update(fin, found, etag); err != nil {
			log.Warn().Err(err).Msg("handing the new receipt handle to the attempt's holder")
		}
		log.Warn().Str("holder", found.Holder).Msg("this message's attempt is running elsewhere; handed the message over to it")
		return nil
	case contract.Ended:
		if found.MessageID != claim.MessageID {
			// A duplicate of an attempt that ended: its holder's own
			// message, if it comes back, finishes what is left.
			log.Warn().Msg("this attempt ended already; deleting a duplicate of its message")
			return w.deleteMessage(fin, log, h.receiptHandle())
		}
		log.Warn().Str("next", string(found.Next)).Msg("this attempt ended already; finishing what its holder left undone")
		a.claim = found
		return w.complete(fin, a)
	}
	a.claim = found
	h.own(found, etag)
	w.enter(a, StateClaimed)
	if w.outgrown(ctx, a, verified) {
		return w.finish(fin, a, jobfleet.OutcomeResized, nil, peakReading{})
	}

	if w.cfg.Pod != "" {
		index := &contract.PodIndex{
			Namespace: w.cfg.PodNamespace, Pod: w.cfg.Pod, JobID: job.ID, Type: job.Type, Run: run, Attempt: number,
			MessageID: claim.MessageID, Body: aws.ToString(msg.Body), ClaimedAt: claim.ClaimedAt,
		}
		err := w.retry(ctx, log, "recording the pod's job", w.cfg.VisibilityTimeout, func(ctx context.Context) error {
			return w.store.WritePodIndex(ctx, index)
		})
		if err != nil {
			return w.abandon(ctx, a, err)
		}
	}
	a.store = newCheckpointStore(w.s3, w.cfg.Bucket, w.store.CheckpointPrefix(job.ID, run), w.cfg.CheckpointDir)
	a.store.fence = h.err
	if err := w.restore(ctx, a); err != nil {
		return w.abandon(ctx, a, err)
	}
	w.enter(a, StateRestored)
	if ctx.Err() != nil {
		return w.abandon(ctx, a, nil)
	}
	running := jobfleet.AttemptState{
		Attempt: number, Pod: w.cfg.Pod, Node: a.placement.Node, CapacityType: a.placement.CapacityType,
		InstanceType: a.placement.InstanceType, Zone: a.placement.Zone, AllocatedBytes: w.cfg.MemoryLimit,
		Resumed: a.resumed, GPUs: a.placement.GPUs, StartedAt: a.started.UTC(),
	}
	err = w.retry(ctx, log, "recording that the job runs", w.cfg.VisibilityTimeout, func(ctx context.Context) error {
		return w.store.Running(ctx, job.ID, run, running, w.clock.Now())
	})
	switch {
	case errors.Is(err, contract.ErrStale) || errors.Is(err, contract.ErrForged):
		log.Info().Err(err).Msg("the job was cancelled before it started")
		return w.finish(fin, a, jobfleet.OutcomeCancelled, ErrCancelled, peakReading{})
	case err != nil:
		return w.abandon(ctx, a, err)
	}

	outcome, peak, runErr := w.runJob(ctx, a)
	w.jobsRun++
	if errors.Is(runErr, ErrLostAttempt) {
		if a.outputs != nil {
			a.outputs.remove()
		}
		return fmt.Errorf("job %s attempt %d: %w: %w", job.ID, number, ErrLostAttempt, h.err())
	}
	return w.finish(fin, a, outcome, runErr, peak)
}

// leaseTimeout is how long after a holder's last renewal its attempt may
// be taken over: a visibility timeout, plus the tick by which a holder may
// notice late that it lost its hold, plus the second it takes to stop.
func (w *Worker) leaseTimeout() time.Duration {
	return w.cfg.VisibilityTimeout + w.cfg.VisibilityTimeout/3 + 2*time.Second
}

// abandon hands an attempt that could not start back: the claim's lease is
// given up, so the message's next receiver takes the attempt over at once,
// and the message is made visible. It returns err, or nil when the worker
// was stopped.
func (w *Worker) abandon(ctx context.Context, a *attempt, err error) error {
	bg := context.WithoutCancel(ctx)
	c, etag, receipt := a.hold.current()
	// Stop extending first, or an extension could hide the message again.
	a.hold.stop()
	if c != nil {
		c.RenewedAt = time.Time{}
		sctx, cancel := context.WithTimeout(bg, 5*time.Second)
		if _, uerr := w.store.Update(sctx, c, etag); uerr != nil {
			a.log.Warn().Err(uerr).Msg("giving up the claim's lease; the next receiver waits for it to expire")
		}
		cancel()
	}
	if w.cfg.Pod != "" {
		// The attempt did not run: the failure sensor must not end it.
		sctx, cancel := context.WithTimeout(bg, 5*time.Second)
		if derr := w.store.DeletePodIndex(sctx, w.cfg.PodNamespace, w.cfg.Pod); derr != nil {
			a.log.Warn().Err(derr).Msg("deleting the pod index of an attempt that did not start")
		}
		cancel()
	}
	w.release(bg, receipt)
	if ctx.Err() != nil {
		a.log.Info().Msg("stopped before the job started; its message is handed back")
		return nil
	}
	a.log.Error().Err(err).Msg("the attempt could not start; its message is handed back")
	return fmt.Errorf("job %s attempt %d: %w", a.job.ID, a.number, err)
}

// restore prepares the checkpoint directory from the run's last complete
// checkpoint: empty for a new run, the latest work for a rerun or for an
// attempt taken over from a worker that died.
func (w *Worker) restore(ctx context.Context, a *attempt) error {
	if err := emptyDir(w.cfg.CheckpointDir); err != nil {
		return err
	}
	err := w.retry(ctx, a.log, "restoring the checkpoint", w.cfg.VisibilityTimeout, func(ctx context.Context) error {
		var err error
		a.resumed, err = a.store.restore(ctx)
		if errors.Is(err, errCorruptCheckpoint) {
			a.log.Warn().Err(err).Msg("the run's checkpoint cannot be used; starting over")
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if !a.resumed || a.store.last == nil {
		// A corrupt or partial restore leaves nothing behind: the job
		// starts over rather than from half a checkpoint.
		a.resumed = false
		return emptyDir(w.cfg.CheckpointDir)
	}
	a.log.Info().Int("generation", a.store.last.Generation).Int("files", len(a.store.last.Files)).Msg("restored checkpoint")
	return nil
}

// emptyDir makes dir an empty directory. It removes what is inside, not
// dir itself: in a pod, dir is a volume's mount point, which cannot be
// removed.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the checkpoint directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clearing the checkpoint directory: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("clearing the checkpoint directory: %w", err)
		}
	}
	return nil
}

// runJob runs the handler and classifies how it ended.
func (w *Worker) runJob(ctx context.Context, a *attempt) (jobfleet.Outcome, peakReading, error) {
	job := &Job{
		Message:       a.job,
		Run:           a.run,
		Attempt:       a.number,
		CheckpointDir: w.cfg.CheckpointDir,
		Resumed:       a.resumed,
		MemoryLimit:   w.cfg.MemoryLimit,
		stopGrace: func() time.Duration {
			if a.hold.err() != nil {
				// Another worker may take the attempt over: stop now.
				return time.Second
			}
			return w.stopGrace()
		},
		stdout: w.cfg.Stdout,
		stderr: w.cfg.Stderr,
	}
	paramsFile, err := w.writeParams(a.job)
	if err != nil {
		return jobfleet.OutcomeFailed, peakReading{}, err
	}
	defer os.Remove(paramsFile)
	job.ParamsFile = paramsFile
	if a.outputs, err = newOutputs(w.cfg.WorkDir); err != nil {
		return jobfleet.OutcomeFailed, peakReading{}, err
	}
	job.OutputsDir, job.OutputsFile = a.outputs.dir, a.outputs.file
	features, _ := json.Marshal(a.job.Features)
	job.env = []string{
		EnvJobID + "=" + a.job.ID,
		EnvJobType + "=" + a.job.Type,
		EnvRun + "=" + a.run,
		EnvAttempt + "=" + strconv.Itoa(a.number),
		EnvParamsFile + "=" + paramsFile,
		EnvFeatures + "=" + string(features),
		EnvCheckpointDir + "=" + w.cfg.CheckpointDir,
		EnvResumed + "=" + strconv.FormatBool(a.resumed),
		EnvMemoryLimit + "=" + formatInt(w.cfg.MemoryLimit),
		EnvOutputsDir + "=" + a.outputs.dir,
		EnvOutputsFile + "=" + a.outputs.file,
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
	cancelled := w.watchCancel(runCtx, a)
	w.heartbeat(runCtx, a)
	var watch sync.WaitGroup
	var stoppedAt time.Time
	watch.Go(func() {
		limit := w.clock.NewTimer(w.cfg.MaxRuntime)
		defer limit.Stop()
		select {
		case <-finished:
		case <-ctx.Done():
			stoppedAt = w.clock.Now()
			w.enter(a, StateStopping)
			cancel(ErrStopping)
		case <-a.hold.lostCh():
			cancel(ErrLostAttempt)
		case <-cancelled:
			a.log.Info().Msg("the job was cancelled; stopping it")
			cancel(ErrCancelled)
		case <-limit.C():
			a.log.Warn().Dur("max_runtime", w.cfg.MaxRuntime).Msg("the job ran too long; stopping it")
			cancel(ErrMaxRuntime)
		}
	})
	syncer := w.startCheckpointing(runCtx, a)

	w.enter(a, StateRunning)
	a.log.Info().Bool("resumed", a.resumed).Int64("memory_limit", w.cfg.MemoryLimit).Msg("running job")
	stopSampling := meter.sample()
	defer stopSampling()
	runErr := work(runCtx, w.handler, job)
	stopSampling()
	close(finished)
	watch.Wait()
	syncer.stop()
	a.stoppedAt = stoppedAt

	peak := meter.peak(job)
	cause := context.Cause(runCtx)
	var panicErr *PanicError
	switch {
	case errors.Is(cause, ErrLostAttempt):
		return jobfleet.OutcomeFailed, peak, ErrLostAttempt
	case runErr == nil:
		return jobfleet.OutcomeSucceeded, peak, nil
	case errors.Is(cause, ErrCancelled):
		return jobfleet.OutcomeCancelled, peak, fmt.Errorf("%w: %w", ErrCancelled, runErr)
	case errors.As(runErr, &panicErr):
		a.log.Error().Str("panic", fmt.Sprint(panicErr.Value)).Str("stack", string(panicErr.Stack)).Msg("the handler panicked")
		return jobfleet.OutcomeFailed, peak, runErr
	case errors.Is(cause, ErrStopping):
		return w.stopOutcome(a), peak, runErr
	case meter.oomKilled(job, peak):
		return jobfleet.OutcomeOOM, peak, runErr
	case errors.Is(cause, ErrMaxRuntime):
		return jobfleet.OutcomeFailed, peak, fmt.Errorf("%w: %w", ErrMaxRuntime, runErr)
	}
	return jobfleet.OutcomeFailed, peak, runErr
}

// PanicError is the error of an attempt whose handler panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// work runs the handler, turning a panic into a failed attempt.
func work(ctx context.Context, h Handler, job *Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return h.Work(ctx, job)
}

// stopGrace is how long a stopping command gets between SIGTERM and
// SIGKILL: its share of the time left until the stop deadline (the grace
// period less the upload grace, scaled down when the deadline came early).
func (w *Worker) stopGrace() time.Duration {
	share := float64(w.cfg.GracePeriod-w.cfg.UploadGrace) / float64(w.cfg.GracePeriod)
	deadline, stopping := w.stop.stopping()
	if !stopping {
		return w.cfg.GracePeriod - w.cfg.UploadGrace
	}
	return max(500*time.Millisecond, time.Duration(float64(deadline.Sub(w.clock.Now()))*share))
}

// stopOutcome tells a spot interruption from other evictions by the stop
// notice the interruption controller leaves, which also says where the pod
// ran.
func (w *Worker) stopOutcome(a *attempt) jobfleet.Outcome {
	w.stop.learn()
	n := w.stop.notice
	if n == nil || n.Kind == "" {
		return jobfleet.OutcomeEvicted
	}
	for _, f := range []struct {
		from string
		to   *string
	}{{n.InstanceType, &a.placement.InstanceType}, {n.Zone, &a.placement.Zone}, {n.CapacityType, &a.placement.CapacityType}} {
		if f.from != "" {
			*f.to = f.from
		}
	}
	a.log.Info().Str("reason", n.Kind).Str("instance_type", a.placement.InstanceType).Str("zone", a.placement.Zone).Msg("the node is being interrupted")
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

// finish ends the attempt: the final checkpoint, then the outcome with
// what follows written into the claim, then the rest (complete). Until the
// claim says how the attempt ended, nothing is sent: a worker that cannot
// record the outcome leaves the message to come back, and the attempt is
// taken over as if it had never ended, so a job never both reruns and
// carries on.
func (w *Worker) finish(ctx context.Context, a *attempt, outcome jobfleet.Outcome, runErr error, peak peakReading) error {
	ended := w.clock.Now()
	// Retries end when the hold is lost (SQS unreachable for most of a
	// visibility timeout): the message comes back to another worker.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.hold.lostCh():
			cancel()
		case <-ctx.Done():
		}
	}()
	log := a.log.With().Str("outcome", string(outcome)).Logger()
	deadline, stopping := w.stop.stopping()
	if a.outputs != nil {
		defer a.outputs.remove()
	}

	var values map[string]string
	var outputsURI string
	if outcome == jobfleet.OutcomeSucceeded && a.outputs != nil {
		var err error
		values, outputsURI, err = w.collectOutputs(ctx, log, a)
		if err != nil {
			if !errors.Is(err, ErrOutputs) {
				log.Error().Err(err).Msg("the outputs were not stored; the attempt will be taken over")
				return fmt.Errorf("job %s attempt %d: %w", a.job.ID, a.number, err)
			}
			outcome, runErr = jobfleet.OutcomeFailed, fmt.Errorf("%w: %w", ErrSkipRetry, err)
			log = a.log.With().Str("outcome", string(outcome)).Logger()
		}
	}
	if outcome != jobfleet.OutcomeSucceeded && outcome != jobfleet.OutcomeCancelled && outcome != jobfleet.OutcomeResized {
		// The final checkpoint, so the rerun resumes from the latest work;
		// when stopping, leave time to record and requeue afterwards.
		uploadCtx, cancel := ctx, context.CancelFunc(func() {})
		if stopping {
			// Keep a quarter of the upload grace, at most 10s, for what
			// follows the upload; less when the deadline came early.
			reserve := min(w.cfg.UploadGrace/4, 10*time.Second, deadline.Sub(w.clock.Now())/4)
			uploadCtx, cancel = context.WithDeadline(ctx, deadline.Add(-reserve))
		}
		err := w.retry(uploadCtx, log, "uploading the final checkpoint", 0, func(ctx context.Context) error {
			uploaded, err := a.store.upload(ctx, a.job.ID, a.run, a.number, w.clock.Now())
			if uploaded {
				a.uploads++
			}
			return err
		})
		cancel()
		if err != nil {
			log.Error().Err(err).Msg("the final checkpoint was not uploaded; the rerun resumes from the previous one")
		} else {
			w.enter(a, StateUploaded)
		}
	}

	errText := ""
	if runErr != nil {
		errText = runErr.Error()
	}
	record := &jobfleet.RunRecord{
		JobID: a.job.ID, Type: a.job.Type, Run: a.run, Features: a.job.Features, Labels: a.job.Labels, Attempt: a.number,
		Outcome: outcome, Error: errText, ExitCode: exitCode(runErr),
		AllocatedBytes: w.cfg.MemoryLimit, PeakBytes: peak.bytes, PeakSource: peak.source,
		PredictedBytes: a.claim.PredictedBytes, ResizedFromBytes: contract.ResizedFrom(a.history), Resumed: a.resumed, Checkpoints: a.uploads,
		StartedAt: a.started.UTC(), EndedAt: ended.UTC(), DurationSecs: ended.Sub(a.started).Seconds(),
		Node: a.placement.Node, InstanceType: a.placement.InstanceType, CapacityType: a.placement.CapacityType,
		Zone: a.placement.Zone, Arch: a.placement.Arch, Pool: a.placement.Pool, Size: a.placement.Size,
		GPUs: a.placement.GPUs,
	}
	if a.store != nil && a.store.last != nil {
		record.LastCheckpointAt = a.store.last.CreatedAt
	}
	c, etag, _ := a.hold.current()
	c.State, c.EndedAt, c.Outcome, c.Record, c.History = contract.ClaimEnded, ended.UTC(), outcome, record, a.history
	c.Next, c.Outputs, c.OutputsURI = contract.NextDone, values, outputsURI
	if outcome == jobfleet.OutcomeResized {
		c.Record = nil // it did not run
	}
	if outcome != jobfleet.OutcomeSucceeded {
		att := jobfleet.Attempt{
			Attempt: a.number, Reason: outcome.Reason(), ExitCode: exitCode(runErr),
			Node: a.placement.Node, InstanceType: a.placement.InstanceType,
			CapacityType: a.placement.CapacityType, Zone: a.placement.Zone,
			AllocatedBytes: w.cfg.MemoryLimit, PeakBytes: peak.bytes,
			StartedAt: a.started.UTC(), EndedAt: ended.UTC(),
		}
		if runErr != nil {
			att.Error = truncate(runErr.Error(), 500)
		}
		if a.store != nil && a.store.last != nil {
			att.Checkpoint = a.store.URI()
		}
		c.History = append(append(jobfleet.History(nil), a.history...), att)
		c.Next, c.Reason = w.next(c.History, runErr, att)
		if outcome == jobfleet.OutcomeCancelled || (c.Next == contract.NextDeadLetter && w.cancelled(ctx, a)) {
			// Nothing follows a cancel, even an attempt that failed before
			// the worker noticed it (intake drops the rerun of a run that
			// ended; a dead letter it would not).
			c.Next, c.Reason = contract.NextDone, "cancelled while attempt "+strconv.Itoa(a.number)+" ran"
		}
	}
	err := w.retry(ctx, log, "recording the outcome in the claim", 0, func(ctx context.Context) error {
		newETag, err := w.store.Update(ctx, c, etag)
		if errors.Is(err, contract.ErrConflict) {
			// Still ours if another receiver of our message only handed
			// us its receipt handle: write again over its version.
			cur, curETag, rerr := a.hold.reread(ctx, c)
			if rerr != nil {
				return rerr
			}
			c.ReceiptHandle, c.Seq, etag = cur.ReceiptHandle, cur.Seq, curETag
			return errors.New("the claim changed under us; writing again")
		}
		if err == nil {
			a.hold.wrote(c, newETag)
		}
		return err
	})
	if errors.Is(err, ErrLostAttempt) || errors.Is(err, contract.ErrConflict) {
		return fmt.Errorf("job %s attempt %d: %w", a.job.ID, a.number, err)
	}
	if err != nil {
		// Not recorded: nothing may follow. The message comes back and the
		// attempt is taken over from its last checkpoint.
		log.Error().Err(err).Msg("the outcome could not be recorded; the attempt will be taken over")
		return fmt.Errorf("job %s attempt %d: %w", a.job.ID, a.number, err)
	}
	a.claim = c
	w.enter(a, StateRecorded)
	return w.complete(ctx, a)
}

// next decides what follows an unsuccessful attempt: a rerun, or the dead
// letter with the reason when a rerun cannot help or the budget is spent.
func (w *Worker) next(history jobfleet.History, runErr error, att jobfleet.Attempt) (contract.Next, string) {
	switch {
	case errors.Is(runErr, ErrSkipRetry):
		return contract.NextDeadLetter, "the job failed in a way a rerun cannot fix: " + att.Error
	case att.Reason.SpendsRetry() && history.RetriesSpent() >= w.cfg.MaxAttempts:
		return contract.NextDeadLetter, fmt.Sprintf("retry budget spent: %d of %d attempts failed or ran out of memory; last: %s", history.RetriesSpent(), w.cfg.MaxAttempts, att.Error)
	case contract.CountedAttempts(history) >= w.cfg.MaxTotalAttempts:
		return contract.NextDeadLetter, fmt.Sprintf("%d attempts, the most any job gets", contract.CountedAttempts(history))
	}
	return contract.NextRerun, ""
}

// complete does what an ended claim says follows, then deletes the
// message (contract.Store.Complete), retrying for as long as the worker
// may: each step is safe to repeat.
func (w *Worker) complete(ctx context.Context, a *attempt) error {
	c := a.claim
	log := a.log.With().Str("outcome", string(c.Outcome)).Str("next", string(c.Next)).Logger()
	switch c.Next {
	case contract.NextRerun:
		last, _ := c.History.Last()
		log.Info().Str("reason", string(last.Reason)).Bool("checkpoint", last.Checkpoint != "").Msg("requeueing the job for a rerun")
	case contract.NextDeadLetter:
		log.Warn().Str("reason", c.Reason).Msg("dead-lettering the job")
	}
	queues := contract.Queues{Intake: w.cfg.IntakeURL, DeadLetter: w.cfg.DeadLetterURL, Records: w.cfg.RecordsURL, Announcer: w.announce}
	retry := func(what string, step func(context.Context) error) error {
		window := time.Duration(0) // as long as the worker holds the attempt
		if what == contract.StepAnnounce {
			window = w.cfg.VisibilityTimeout
		}
		return w.retry(ctx, log, what, window, step)
	}
	err := w.store.Complete(ctx, w.sqs, queues, c, aws.ToString(a.msg.Body), w.cfg.QueueURL, a.hold.receiptHandle(), w.clock.Now(), retry)
	if errors.Is(err, contract.ErrNotAnnounced) {
		log.Error().Err(err).Msg("the job's end is recorded, but its completion event or task token callback could not be sent")
		err = nil
	}
	if err != nil {
		return err
	}
	if c.Next != contract.NextDone {
		w.enter(a, StateRequeued)
	}
	if w.cfg.Pod != "" {
		if err := w.store.DeletePodIndex(ctx, w.cfg.PodNamespace, w.cfg.Pod); err != nil {
			log.Warn().Err(err).Msg("deleting the pod index; the failure sensor will find the attempt ended")
		}
	}
	w.enter(a, StateFinished)
	if c.Record != nil {
		log.Info().Int64("peak_bytes", c.Record.PeakBytes).Str("peak_source", c.Record.PeakSource).Float64("duration_seconds", c.Record.DurationSecs).Msg("job attempt finished")
		if w.cfg.Hooks.Finished != nil {
			w.cfg.Hooks.Finished(*c.Record)
		}
	}
	return nil
}

// deadLetterRaw moves a message that is not a runnable job to the
// dead-letter queue, as it arrived, with the reason attached. When it is
// the genuine message of a live run (a worker too old to read it, a type
// sent to the wrong class), the run ends with it, so its job id is not
// blocked.
func (w *Worker) deadLetterRaw(ctx context.Context, h *hold, msg *types.Message, reason string) error {
	log := w.log.With().Str("message_id", aws.ToString(msg.MessageId)).Logger()
	dead := queue.DeadLetter(aws.ToString(msg.Body), msg.MessageAttributes, reason)
	err := w.retry(ctx, log, "storing a large dead letter's body", 0, func(ctx context.Context) error {
		var err error
		dead, err = w.store.FitDeadLetter(ctx, dead)
		return err
	})
	if err != nil {
		return err
	}
	if err := w.send(ctx, log, w.cfg.DeadLetterURL, dead, "dead-lettering a message"); err != nil {
		return err
	}
	if jobID, run, ok := w.genuineRun(ctx, msg); ok {
		err := w.retry(ctx, log, "ending the run of a dead-lettered message", 0, func(ctx context.Context) error {
			return w.store.EndRun(ctx, jobID, run, contract.End{Status: jobfleet.StatusDeadLettered, Reason: reason}, w.clock.Now())
		})
		if err != nil {
			return err
		}
		w.announceEnd(ctx, log, jobID, run)
	}
	return w.deleteMessage(ctx, log, h.receiptHandle())
}

// genuineRun returns the job id and run of a message that jobfleet's
// records show as the message of a live run, whatever its body holds
// otherwise: the run keeps the hash of the body that started it.
func (w *Worker) genuineRun(ctx context.Context, msg *types.Message) (string, string, bool) {
	run, attempt, ok, err := queue.RunAttempt(msg.MessageAttributes)
	if !ok || err != nil {
		return "", "", false
	}
	var head struct {
		ID string `json:"id"`
	}
	body := aws.ToString(msg.Body)
	if json.Unmarshal([]byte(body), &head) != nil || head.ID == "" || len(head.ID) > 128 || strings.ContainsAny(head.ID, "/\\") {
		return "", "", false
	}
	if _, err := w.store.VerifyRun(ctx, head.ID, body, run, attempt); err != nil {
		return "", "", false
	}
	return head.ID, run, true
}

// collectOutputs reads the key/value outputs of a job that succeeded and
// stores its output files, retrying the upload for as long as the worker
// holds the attempt. It returns ErrOutputs when the job left outputs that
// jobfleet cannot take.
func (w *Worker) collectOutputs(ctx context.Context, log zerolog.Logger, a *attempt) (map[string]string, string, error) {
	values, err := a.outputs.values()
	if err != nil {
		return nil, "", err
	}
	prefix := w.store.OutputsPrefix(a.job.ID, a.run)
	var files int
	err = w.retry(ctx, log, "uploading the outputs", 0, func(ctx context.Context) error {
		files, err = a.outputs.upload(ctx, w.s3, w.cfg.Bucket, prefix)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if files == 0 {
		return values, "", nil
	}
	log.Info().Int("files", files).Msg("stored the job's outputs")
	return values, w.store.URI(prefix) + "/", nil
}

// watchCancel checks, every CancelPoll while the job runs, whether the job
// was cancelled, and closes the returned channel when it was.
func (w *Worker) watchCancel(ctx context.Context, a *attempt) <-chan struct{} {
	cancelled := make(chan struct{})
	go func() {
		ticker := w.clock.NewTicker(w.cfg.CancelPoll)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
			}
			c, cancel := context.WithTimeout(ctx, w.cfg.CancelPoll)
			cur, _, err := w.store.ReadRun(c, a.job.ID)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					a.log.Debug().Err(err).Msg("checking whether the job was cancelled")
				}
				continue
			}
			if cur.Run != a.run || (cur.State == contract.RunEnded && cur.Status == jobfleet.StatusCancelled) {
				close(cancelled)
				return
			}
		}
	}()
	return cancelled
}

// heartbeat tells Step Functions that the job of a message with a task
// token runs: at once, then every third of the visibility timeout until
// ctx ends.
func (w *Worker) heartbeat(ctx context.Context, a *attempt) {
	if a.job.TaskToken == "" || w.announce.SFN == nil {
		return
	}
	go func() {
		ticker := w.clock.NewTicker(w.cfg.VisibilityTimeout / 3)
		defer ticker.Stop()
		for {
			c, cancel := context.WithTimeout(ctx, w.cfg.VisibilityTimeout/3)
			_, err := w.announce.SFN.SendTaskHeartbeat(c, &sfn.SendTaskHeartbeatInput{TaskToken: aws.String(a.job.TaskToken)})
			cancel()
			switch {
			case contract.TaskGone(err):
				a.log.Warn().Err(err).Msg("Step Functions no longer waits for this job; it runs on")
				return
			case err != nil && ctx.Err() == nil:
				a.log.Warn().Err(err).Msg("sending a task heartbeat")
			}
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
			}
		}
	}()
}

// announceEnd announces the end of a run, retrying for at most a
// visibility timeout: a failure is logged, and what follows goes on.
func (w *Worker) announceEnd(ctx context.Context, log zerolog.Logger, jobID, run string) {
	err := w.retry(ctx, log, contract.StepAnnounce, w.cfg.VisibilityTimeout, func(ctx context.Context) error {
		return w.store.Announce(ctx, w.announce, jobID, run, w.clock.Now())
	})
	if err != nil {
		log.Error().Err(err).Str("job_id", jobID).Msg("the job's completion event or task token callback could not be sent")
	}
}

// cancelled reports whether the job of an attempt that did not succeed was
// cancelled meanwhile, so that it is neither rerun nor dead-lettered. When
// S3 cannot say, it is not.
func (w *Worker) cancelled(ctx context.Context, a *attempt) bool {
	// Briefly: a stopping worker needs its time to record the attempt.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cur, _, err := w.store.ReadRun(ctx, a.job.ID)
	return err == nil && cur.Run == a.run && cur.State == contract.RunEnded && cur.Status == jobfleet.StatusCancelled
}
