package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/queue"
)

// IntakeAPI is the SQS calls of the intake pipeline.
type IntakeAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// Message attributes the dispatcher adds to the jobs it forwards: the
// class's memory and the model's own size (see queue.AttrPredicted).
const (
	AttrMemory    = queue.AttrMemory
	AttrPredicted = queue.AttrPredicted
)

// item is one received message on its way to a class queue or the
// dead-letter queue, or only to be deleted.
type item struct {
	msg      sqstypes.Message
	received time.Time
	target   string // empty: deleted only
	out      queue.Message
	class    Class
	forward  bool // to a class queue
	dead     bool // to the dead-letter queue
	priority int
	jobType  string
	reason   string
	// retry is set when the message could not be routed now and returns
	// to intake after delay.
	retry bool
	delay time.Duration
	// endRun, set on a rerun that is dead-lettered, ends the run once the
	// dead letter is sent.
	endRun *runRef
	// reject, set on a job that cannot run (its type is unknown), records
	// it as dead-lettered once the dead letter is sent, so that whoever
	// waits for it learns why.
	reject *jobfleet.Job
	// failTask, set on a duplicate with a task token of its own, answers
	// that token once the dead letter is sent.
	failTask *jobfleet.Job
	// label is the outcome counted for a message that is only deleted.
	label string
}

// runRef names a run to end with a status.
type runRef struct {
	jobID, run string
	status     jobfleet.Status
}

func (it *item) outcome() string {
	switch {
	case it.forward:
		return "forwarded"
	case it.dead:
		return "dead_lettered"
	}
	return it.label
}

// intake drains the intake queue: several receivers long-poll for batches
// of ten, route every message, and hand it to a per-target buffer; a buffer
// is sent as soon as it holds ten messages, or after a short linger, and
// every forwarded message is deleted from intake in batches of ten. A
// semaphore bounds the messages held at once, so a slow class queue pushes
// back on receiving instead of growing memory.
type intake struct {
	d   *Dispatcher
	log zerolog.Logger
	sem chan struct{}

	mu      sync.Mutex
	buffers map[string][]*item
	deletes []*item
	oldest  map[string]time.Time // when each buffer's first item arrived
	delOld  time.Time
	toRoute chan received
	routing sync.WaitGroup
	sends   sync.WaitGroup
	// sendSem and deleteSem bound the batch calls in flight. They are
	// separate because a send that succeeds queues its deletes while it
	// still holds its slot: with one semaphore, sixteen sends waiting for a
	// delete slot would wait forever.
	sendSem   chan struct{}
	deleteSem chan struct{}
}

func newIntake(d *Dispatcher) *intake {
	return &intake{
		d:         d,
		log:       d.log.With().Str("component", "intake").Logger(),
		sem:       make(chan struct{}, d.cfg.MaxInFlight),
		buffers:   map[string][]*item{},
		oldest:    map[string]time.Time{},
		sendSem:   make(chan struct{}, 16),
		deleteSem: make(chan struct{}, 16),
	}
}

// routers is how many messages are routed at once: routing waits on S3,
// and long-lived routers keep their grown stacks.
const routers = 64

// received is a message on its way to a router.
type received struct {
	msg sqstypes.Message
	at  time.Time
}

// run receives until ctx ends, then forwards or releases what it holds.
func (in *intake) run(ctx context.Context) {
	in.toRoute = make(chan received)
	for range routers {
		in.routing.Go(func() {
			for r := range in.toRoute {
				in.add(ctx, in.route(ctx, r.msg, r.at))
			}
		})
	}
	var receivers sync.WaitGroup
	for range in.d.cfg.Receivers {
		receivers.Go(func() { in.receive(ctx) })
	}
	lingerDone := make(chan struct{})
	var linger sync.WaitGroup
	linger.Go(func() { in.lingerLoop(lingerDone) })
	receivers.Wait()
	close(in.toRoute)
	in.routing.Wait()
	close(lingerDone)
	linger.Wait()

	// Drain: send what is buffered and delete what was sent.
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.d.cfg.DrainTimeout)
	defer cancel()
	in.flush(drain, true)
	in.sends.Wait()
	in.flushDeletes(drain, true)
	in.sends.Wait()
}

func (in *intake) receive(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		// Take ten slots before receiving ten messages.
		taken := 0
		for taken < queue.MaxBatchEntries {
			select {
			case in.sem <- struct{}{}:
				taken++
			case <-ctx.Done():
				in.release(taken)
				return
			}
		}
		out, err := in.d.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(in.d.cfg.IntakeURL),
			MaxNumberOfMessages:         queue.MaxBatchEntries,
			WaitTimeSeconds:             20,
			VisibilityTimeout:           int32(in.d.cfg.IntakeVisibility / time.Second),
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
		})
		if err != nil {
			in.release(taken)
			if ctx.Err() != nil {
				return
			}
			failures++
			in.log.Warn().Err(err).Int("failures", failures).Msg("receiving from intake")
			in.d.sleep(ctx, backoff(failures))
			continue
		}
		failures = 0
		in.release(taken - len(out.Messages))
		now := in.d.clock.Now()
		// Routing waits on S3 (the job's run): the routers route the batch
		// while this receiver receives the next; the semaphore bounds the
		// messages held.
		for _, m := range out.Messages {
			in.toRoute <- received{msg: m, at: now}
		}
	}
}

func (in *intake) release(n int) {
	for range n {
		<-in.sem
	}
}

// route decides where a message goes: its class queue, the dead-letter
// queue with the reason when it cannot run, nowhere (deleted) when it is a
// leftover of a run that ended, or back to intake for another try when S3
// or the class is not available now.
//
// A producer's message starts a run of its job, recorded in S3; a rerun
// carries its run and attempt, which must match what jobfleet recorded
// (the previous attempt ended in a rerun), and its history comes from that
// record. Nothing a message says about earlier attempts is believed.
func (in *intake) route(ctx context.Context, m sqstypes.Message, now time.Time) *item {
	// A message is decided well before its visibility timeout, or it goes
	// back for another try: one stuck S3 request must not hold a router,
	// and with it the receivers, forever.
	ctx, cancel := context.WithTimeout(ctx, in.d.cfg.IntakeVisibility/2)
	defer cancel()
	it := &item{msg: m, received: now}
	body := aws.ToString(m.Body)
	job, err := jobfleet.Decode([]byte(body))
	if err != nil {
		return in.deadLetter(ctx, it, err.Error())
	}
	it.jobType, it.priority = job.Type, job.Priority
	typ, ok := in.d.cfg.Registry.Type(job.Type)
	if !ok {
		it.reject = job
		return in.deadLetter(ctx, it, fmt.Sprintf("unknown job type %q: no such type is registered", job.Type))
	}
	run, attempt, isRerun, err := queue.RunAttempt(m.MessageAttributes)
	if err != nil {
		return in.deadLetter(ctx, it, err.Error())
	}
	// A rerun's history comes from jobfleet's records; a new job has none.
	var history jobfleet.History
	if isRerun {
		history, err = in.d.store.VerifyRun(ctx, job.ID, body, run, attempt)
		switch {
		case errors.Is(err, contract.ErrForged):
			return in.deadLetter(ctx, it, err.Error())
		case errors.Is(err, contract.ErrStale):
			in.log.Info().Str("job_id", job.ID).Str("run", run).Int("attempt", attempt).Msg("a rerun of a run that ended (done, dead-lettered or cancelled); deleting it")
			return in.dropEnded(ctx, it, job.ID, run, "stale")
		case err != nil:
			return in.retryLater(it, fmt.Sprintf("checking the rerun of job %s: %v", job.ID, err), in.d.cfg.RetryDelay)
		}
		if spent := history.RetriesSpent(); spent >= typ.MaxAttempts {
			it.endRun = &runRef{jobID: job.ID, run: run, status: jobfleet.StatusFailed}
			return in.deadLetter(ctx, it, fmt.Sprintf("retry budget spent: %d of %d attempts failed or ran out of memory", spent, typ.MaxAttempts))
		}
	}
	pool, _ := in.d.cfg.Registry.Pool(typ.Pool)
	decision := in.d.sizing.Decide(job, history, typ, pool, in.d.model())
	url, ensureErr := in.d.classes.ensure(ctx, decision.Class)
	var size *contract.Sizing
	if ensureErr == nil {
		size = &contract.Sizing{Class: decision.Class.Name(in.d.classes.prefix()), Memory: decision.Class.Size, By: decision.SizedBy()}
	}
	// The job's state says it is sized before it is forwarded: for a new
	// job in the same write that starts its run.
	needSized := size != nil
	if !isRerun {
		run, attempt = aws.ToString(m.MessageId), 1
		start, cur, err := in.d.store.StartRun(ctx, job, body, run, sentAt(m), now, size)
		switch {
		case err != nil:
			return in.retryLater(it, fmt.Sprintf("recording the run of job %s: %v", job.ID, err), in.d.cfg.RetryDelay)
		case start == contract.Duplicate:
			reason := fmt.Sprintf("duplicate: job %s is already queued or running (run %s, started %s) with another message; a job id runs once at a time", job.ID, cur.Run, cur.CreatedAt.Format(time.RFC3339))
			if cur.TaskToken != job.TaskToken {
				it.failTask = job
			}
			return in.deadLetter(ctx, it, reason)
		case start == contract.Repeated:
			it.label = "repeated"
			in.log.Warn().Str("job_id", job.ID).Str("run", cur.Run).Str("status", string(cur.Status)).Msg("the same job was published again before its run ended; deleting the repeat")
			return it
		case start == contract.Finished:
			in.log.Info().Str("job_id", job.ID).Str("run", run).Msg("this message's run ended already; deleting it again")
			return in.dropEnded(ctx, it, job.ID, run, "duplicate")
		case start == contract.Cancelled:
			in.log.Info().Str("job_id", job.ID).Time("cancelled_at", cur.CancelledAt).Msg("the job was cancelled after this message was sent; deleting it unrun")
			if cur.TaskToken != job.TaskToken {
				// The cancel came before this message: the state does not
				// know its token.
				if err := in.d.announce.FailTask(ctx, job.TaskToken, job.ID, jobfleet.StatusCancelled, cur.Reason); err != nil {
					in.d.metrics.announceFailures.Inc()
					in.log.Error().Err(err).Str("job_id", job.ID).Msg("answering the task token of a cancelled job; Step Functions waits for its timeout")
				}
			}
			return in.dropEnded(ctx, it, job.ID, cur.Run, "cancelled")
		}
		// A redelivered message finds its run written before, maybe
		// still queued.
		needSized = size != nil && (cur.Status == jobfleet.StatusQueued || cur.Class != size.Class || cur.SizedBy == nil || *cur.SizedBy != *size.By)
	}
	if errors.Is(ensureErr, errClassPending) {
		return in.retryLater(it, ensureErr.Error(), 2*in.d.cfg.ClassPoll)
	}
	if ensureErr != nil {
		return in.retryLater(it, ensureErr.Error(), in.d.cfg.RetryDelay)
	}
	if needSized {
		err = in.d.store.Sized(ctx, job.ID, run, attempt, *size, now)
		switch {
		case errors.Is(err, contract.ErrStale):
			in.log.Info().Str("job_id", job.ID).Str("run", run).Msg("the job was cancelled while it was sized; deleting it unrun")
			return in.dropEnded(ctx, it, job.ID, run, "cancelled")
		case err != nil:
			return in.retryLater(it, fmt.Sprintf("recording the size of job %s: %v", job.ID, err), in.d.cfg.RetryDelay)
		}
	}
	it.target, it.class, it.forward = url, decision.Class, true
	it.out = queue.ForwardMessage(body, job.Type, run, attempt)
	it.out.Attributes[AttrMemory] = queue.NumberAttribute(decision.Class.Size)
	if decision.Alone > 0 {
		it.out.Attributes[AttrPredicted] = queue.NumberAttribute(decision.Alone)
	}
	if queue.Size(it.out) > queue.MaxMessageBytes {
		// Decode bounds bodies to leave room for these attributes; this
		// only guards against that changing.
		it.forward = false
		it.endRun = &runRef{jobID: job.ID, run: run, status: jobfleet.StatusDeadLettered}
		return in.deadLetter(ctx, it, fmt.Sprintf("the job does not fit in one SQS message with jobfleet's attributes (%d bytes)", queue.Size(it.out)))
	}
	in.d.metrics.predictedBytes.WithLabelValues(job.Type, string(decision.Source)).Observe(float64(decision.Memory))
	if in.d.onRoute != nil {
		in.d.onRoute(job, decision)
	}
	return it
}

// dropEnded marks the message of a run that ended (a cancelled job, a
// leftover rerun) to be deleted, after announcing the end: a cancelled
// job's end is announced by whoever drops its message.
func (in *intake) dropEnded(ctx context.Context, it *item, jobID, run, label string) *item {
	in.announce(ctx, jobID, run)
	it.label = label
	return it
}

// announce announces the end of a run once (contract.Store.Announce). A
// failure is logged and counted, not retried: the message is dropped, or
// dead-lettered, all the same.
func (in *intake) announce(ctx context.Context, jobID, run string) {
	if err := in.d.store.Announce(ctx, in.d.announce, jobID, run, in.d.clock.Now()); err != nil {
		in.d.metrics.announceFailures.Inc()
		in.log.Error().Err(err).Str("job_id", jobID).Str("run", run).Msg("announcing the end of a job; its completion event or task token callback is not sent")
	}
}

// deadLetter routes a message to the dead-letter queue with the reason; one
// too large to dead-letter whole goes by reference, its body in S3.
func (in *intake) deadLetter(ctx context.Context, it *item, reason string) *item {
	it.reason, it.target, it.dead = reason, in.d.cfg.DeadLetterURL, true
	out, err := in.d.store.FitDeadLetter(ctx, queue.DeadLetter(aws.ToString(it.msg.Body), it.msg.MessageAttributes, reason))
	if err != nil {
		it.dead, it.target = false, ""
		return in.retryLater(it, err.Error(), in.d.cfg.RetryDelay)
	}
	it.out = out
	return it
}

// retryLater marks a message to return to intake after delay.
func (in *intake) retryLater(it *item, reason string, delay time.Duration) *item {
	it.retry, it.reason, it.delay = true, reason, delay
	return it
}

// add buffers a routed message for its target, sending the buffer when it
// is full.
func (in *intake) add(ctx context.Context, it *item) {
	switch {
	case it.retry:
		in.giveBack(ctx, []*item{it}, it.reason)
		return
	case it.target == "":
		in.addDeletes(ctx, []*item{it})
		return
	}
	in.mu.Lock()
	buf := append(in.buffers[it.target], it)
	if len(buf) == 1 {
		in.oldest[it.target] = in.d.clock.Now()
	}
	var batch []*item
	if len(buf) >= queue.MaxBatchEntries {
		batch, buf = takeBatch(buf)
		in.oldest[it.target] = in.d.clock.Now()
	}
	in.buffers[it.target] = buf
	in.mu.Unlock()
	if batch != nil {
		in.send(ctx, it.target, batch)
	}
}

// takeBatch takes the ten highest-priority messages of a buffer.
func takeBatch(buf []*item) (batch, rest []*item) {
	slices.SortStableFunc(buf, func(a, b *item) int { return b.priority - a.priority })
	n := min(len(buf), queue.MaxBatchEntries)
	return slices.Clone(buf[:n]), slices.Clone(buf[n:])
}

// lingerLoop sends buffers and deletes that waited longer than the linger.
func (in *intake) lingerLoop(done <-chan struct{}) {
	ticker := in.d.clock.NewTicker(in.d.cfg.Linger)
	defer ticker.Stop()
	ctx := context.Background()
	for {
		select {
		case <-done:
			return
		case <-ticker.C():
		}
		in.flush(ctx, false)
		in.flushDeletes(ctx, false)
	}
}

// flush sends buffers older than the linger, or all of them.
func (in *intake) flush(ctx context.Context, all bool) {
	now := in.d.clock.Now()
	type out struct {
		target string
		batch  []*item
	}
	var outs []out
	in.mu.Lock()
	for target, buf := range in.buffers {
		for len(buf) > 0 && (all || now.Sub(in.oldest[target]) >= in.d.cfg.Linger) {
			var batch []*item
			batch, buf = takeBatch(buf)
			outs = append(outs, out{target, batch})
			in.oldest[target] = now
		}
		in.buffers[target] = buf
	}
	in.mu.Unlock()
	for _, o := range outs {
		in.send(ctx, o.target, o.batch)
	}
}

// send forwards a batch in the background; sent messages queue for
// deletion, the others are retried later.
func (in *intake) send(ctx context.Context, target string, batch []*item) {
	in.sendSem <- struct{}{}
	in.sends.Go(func() {
		defer func() { <-in.sendSem }()
		// A class confirmed too long ago may be being collected since:
		// its jobs go back to intake and are routed afresh.
		var stale []*item
		keep := batch[:0]
		for _, it := range batch {
			if it.forward && !in.d.classes.fresh(it.class) {
				it.delay = time.Second
				stale = append(stale, it)
				continue
			}
			keep = append(keep, it)
		}
		batch = keep
		if len(stale) > 0 {
			in.giveBack(ctx, stale, "the class's confirmation expired before the send")
		}
		if len(batch) == 0 {
			return
		}
		msgs := make([]queue.Message, len(batch))
		for i, it := range batch {
			msgs[i] = it.out
		}
		failures := queue.Send(ctx, in.d.sqs, target, msgs, queue.Retry{Attempts: 3})
		failed := map[int]error{}
		for _, f := range failures {
			failed[f.Index] = f.Err
		}
		var sent, retry []*item
		var retryErr error
		for i, it := range batch {
			if err, ok := failed[i]; ok {
				retry, retryErr = append(retry, it), err
				if it.forward && isQueueMissing(err) {
					in.d.classes.forget(it.class)
				}
				continue
			}
			// Once the dead letter is sent, the job's state records why and
			// the end is announced; a crash in between sends the dead
			// letter again. An announcement that fails is logged, not
			// retried: retrying would send the dead letter again.
			var err error
			switch {
			case it.endRun != nil:
				err = in.d.store.EndRun(ctx, it.endRun.jobID, it.endRun.run, contract.End{Status: it.endRun.status, Reason: it.reason}, in.d.clock.Now())
				if err == nil {
					in.announce(ctx, it.endRun.jobID, it.endRun.run)
				}
			case it.reject != nil:
				err = in.d.store.Reject(ctx, it.reject, aws.ToString(it.msg.Body), aws.ToString(it.msg.MessageId), it.reason, in.d.clock.Now())
				if err == nil {
					in.announce(ctx, it.reject.ID, aws.ToString(it.msg.MessageId))
				}
			case it.failTask != nil:
				if ferr := in.d.announce.FailTask(ctx, it.failTask.TaskToken, it.failTask.ID, jobfleet.StatusDeadLettered, it.reason); ferr != nil {
					in.d.metrics.announceFailures.Inc()
					in.log.Error().Err(ferr).Str("job_id", it.failTask.ID).Msg("answering the task token of a duplicate; Step Functions waits for its timeout")
				}
			}
			if err != nil {
				retry, retryErr = append(retry, it), err
				continue
			}
			sent = append(sent, it)
		}
		if len(retry) > 0 {
			in.log.Warn().Err(retryErr).Int("messages", len(retry)).Str("queue", target).Msg("forwarding failed; the messages return to intake")
			in.giveBack(ctx, retry, fmt.Sprint(retryErr))
		}
		if len(sent) > 0 {
			in.addDeletes(ctx, sent)
		}
	})
}

func (in *intake) addDeletes(ctx context.Context, items []*item) {
	in.mu.Lock()
	if len(in.deletes) == 0 {
		in.delOld = in.d.clock.Now()
	}
	in.deletes = append(in.deletes, items...)
	var batches [][]*item
	for len(in.deletes) >= queue.MaxBatchEntries {
		batches = append(batches, slices.Clone(in.deletes[:queue.MaxBatchEntries]))
		in.deletes = in.deletes[queue.MaxBatchEntries:]
		in.delOld = in.d.clock.Now()
	}
	in.mu.Unlock()
	for _, b := range batches {
		in.deleteBatch(ctx, b)
	}
}

func (in *intake) flushDeletes(ctx context.Context, all bool) {
	in.mu.Lock()
	var batches [][]*item
	if len(in.deletes) > 0 && (all || in.d.clock.Now().Sub(in.delOld) >= in.d.cfg.Linger) {
		for len(in.deletes) > 0 {
			n := min(len(in.deletes), queue.MaxBatchEntries)
			batches = append(batches, slices.Clone(in.deletes[:n]))
			in.deletes = in.deletes[n:]
		}
	}
	in.mu.Unlock()
	for _, b := range batches {
		in.deleteBatch(ctx, b)
	}
}

// deleteBatch deletes forwarded messages from intake and frees their
// slots. A message whose delete fails reappears and is forwarded again;
// the worker's claim makes the duplicate harmless.
func (in *intake) deleteBatch(ctx context.Context, batch []*item) {
	in.deleteSem <- struct{}{}
	in.sends.Go(func() {
		defer func() { <-in.deleteSem }()
		receipts := make([]string, len(batch))
		for i, it := range batch {
			receipts[i] = aws.ToString(it.msg.ReceiptHandle)
		}
		failures := queue.Delete(ctx, in.d.sqs, in.d.cfg.IntakeURL, receipts, queue.Retry{Attempts: 3})
		failed := map[int]bool{}
		for _, f := range failures {
			failed[f.Index] = true
			in.log.Warn().Err(f.Err).Msg("deleting a forwarded message from intake; it will be forwarded again")
		}
		now := in.d.clock.Now()
		for i, it := range batch {
			in.d.observe(it, now, failed[i])
		}
		in.release(len(batch))
	})
}

// giveBack returns messages to intake after a short delay, for another
// try, and frees their slots.
func (in *intake) giveBack(ctx context.Context, items []*item, reason string) {
	entries := make([]sqstypes.ChangeMessageVisibilityBatchRequestEntry, len(items))
	for i, it := range items {
		delay := it.delay
		if delay == 0 {
			delay = in.d.cfg.RetryDelay
		}
		entries[i] = sqstypes.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: it.msg.ReceiptHandle,
			VisibilityTimeout: int32(max(delay, time.Second) / time.Second),
		}
		in.d.metrics.jobs.WithLabelValues(it.jobType, "retried").Inc()
	}
	for start := 0; start < len(entries); start += queue.MaxBatchEntries {
		end := min(start+queue.MaxBatchEntries, len(entries))
		_, err := in.d.sqs.ChangeMessageVisibilityBatch(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityBatchInput{
			QueueUrl: aws.String(in.d.cfg.IntakeURL), Entries: entries[start:end],
		})
		if err != nil {
			in.log.Warn().Err(err).Msg("returning messages to intake early; they return after the visibility timeout")
		}
	}
	in.log.Debug().Int("messages", len(items)).Str("reason", reason).Msg("messages returned to intake for another try")
	in.release(len(items))
}

func backoff(failures int) time.Duration {
	return min(200*time.Millisecond<<min(failures, 6), 10*time.Second)
}

// sentAt is when a message was sent to intake, by SQS's clock; zero when
// SQS did not say.
func sentAt(m sqstypes.Message) time.Time {
	ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
