package dispatcher

import (
	"context"
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
	"github.com/jobfleet/jobfleet/internal/queue"
)

// IntakeAPI is the SQS calls of the intake pipeline.
type IntakeAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// Message attributes the dispatcher adds to the jobs it forwards.
const (
	AttrMemory    = "jobfleet-memory"
	AttrPredicted = "jobfleet-predicted"
)

// item is one received message on its way to a class queue or the
// dead-letter queue.
type item struct {
	msg      sqstypes.Message
	received time.Time
	target   string
	out      queue.Message
	class    Class
	forward  bool // to a class queue; false: dead-lettered
	priority int
	jobType  string
	reason   string
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

// run receives until ctx ends, then forwards or releases what it holds.
func (in *intake) run(ctx context.Context) {
	var receivers sync.WaitGroup
	for range in.d.cfg.Receivers {
		receivers.Go(func() { in.receive(ctx) })
	}
	lingerDone := make(chan struct{})
	var linger sync.WaitGroup
	linger.Go(func() { in.lingerLoop(lingerDone) })
	receivers.Wait()
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
		for _, m := range out.Messages {
			in.add(ctx, in.route(ctx, m, now))
		}
	}
}

func (in *intake) release(n int) {
	for range n {
		<-in.sem
	}
}

// route decides where a message goes: its class queue, or the dead-letter
// queue with the reason when it cannot run.
func (in *intake) route(ctx context.Context, m sqstypes.Message, now time.Time) *item {
	it := &item{msg: m, received: now}
	job, err := jobfleet.Decode([]byte(aws.ToString(m.Body)))
	if err != nil {
		return in.deadLetter(it, err.Error())
	}
	it.jobType, it.priority = job.Type, job.Priority
	typ, ok := in.d.cfg.Registry.Type(job.Type)
	if !ok {
		return in.deadLetter(it, fmt.Sprintf("unknown job type %q: no such type is registered", job.Type))
	}
	if spent := job.RetriesSpent(); spent >= typ.MaxAttempts {
		return in.deadLetter(it, fmt.Sprintf("retry budget spent: %d of %d attempts failed or ran out of memory", spent, typ.MaxAttempts))
	}
	pool, _ := in.d.cfg.Registry.Pool(typ.Pool)
	decision := in.d.sizing.Decide(job, typ, pool, in.d.model())
	url, err := in.d.classes.ensure(ctx, decision.Class)
	if err != nil {
		it.reason = err.Error()
		return it // target empty: retried later
	}
	it.target, it.class, it.forward = url, decision.Class, true
	it.out = queue.JobMessage([]byte(aws.ToString(m.Body)), job.Type, job.Attempt())
	it.out.Attributes[AttrMemory] = queue.NumberAttribute(decision.Class.Size)
	if decision.Predicted > 0 {
		it.out.Attributes[AttrPredicted] = queue.NumberAttribute(decision.Predicted)
	}
	in.d.metrics.predictedBytes.WithLabelValues(job.Type, string(decision.Source)).Observe(float64(decision.Memory))
	if in.d.onRoute != nil {
		in.d.onRoute(job, decision)
	}
	return it
}

func (in *intake) deadLetter(it *item, reason string) *item {
	it.reason = reason
	it.target = in.d.cfg.DeadLetterURL
	attrs := map[string]sqstypes.MessageAttributeValue{}
	for k, v := range it.msg.MessageAttributes {
		if len(attrs) < 9 && k != queue.AttrError {
			attrs[k] = v
		}
	}
	attrs[queue.AttrError] = queue.StringAttribute(truncate(reason, 1000))
	it.out = queue.Message{Body: aws.ToString(it.msg.Body), Attributes: attrs}
	return it
}

// add buffers a routed message for its target, sending the buffer when it
// is full.
func (in *intake) add(ctx context.Context, it *item) {
	if it.target == "" {
		in.retryLater(ctx, []*item{it}, it.reason)
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
			sent = append(sent, it)
		}
		if len(retry) > 0 {
			in.log.Warn().Err(retryErr).Int("messages", len(retry)).Str("queue", target).Msg("forwarding failed; the messages return to intake")
			in.retryLater(ctx, retry, fmt.Sprint(retryErr))
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

// retryLater returns messages to intake after a short delay, for another
// try, and frees their slots.
func (in *intake) retryLater(ctx context.Context, items []*item, reason string) {
	entries := make([]sqstypes.ChangeMessageVisibilityBatchRequestEntry, len(items))
	for i, it := range items {
		entries[i] = sqstypes.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: it.msg.ReceiptHandle,
			VisibilityTimeout: int32(in.d.cfg.RetryDelay / time.Second),
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func backoff(failures int) time.Duration {
	return min(200*time.Millisecond<<min(failures, 6), 10*time.Second)
}
