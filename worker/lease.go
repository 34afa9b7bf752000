package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/internal/contract"
)

// hold keeps the worker's hold on a message and, once it claimed the
// attempt, on the attempt: every third of the visibility timeout it extends
// the message's visibility and renews the claim's lease. KEDA counts
// in-flight messages, so a held message keeps exactly one Job accounted for.
//
// Either renewal alone keeps the attempt safe: while the message is
// invisible nobody else receives it, and while the lease is fresh nobody
// else takes the claim over. When neither succeeded for most of a
// visibility timeout, or another worker took the claim over, the hold is
// lost: the worker must stop the job, because another may start it.
type hold struct {
	w   *Worker
	log zerolog.Logger

	// renewMu is held for a whole renewal, so that the claim's writer
	// (current) waits for one in progress and gets its ETag.
	renewMu  sync.Mutex
	mu       sync.Mutex
	receipt  string
	claim    *contract.Claim // nil until claimed, and after the attempt ended
	etag     string
	lastSQS  time.Time
	lastS3   time.Time
	lostErr  error
	lost     chan struct{} // closed when the hold is lost
	renewing bool          // the claim's lease is renewed

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// holdMessage starts extending a received message's visibility.
func (w *Worker) holdMessage(ctx context.Context, log zerolog.Logger, msg *types.Message) *hold {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	now := w.clock.Now()
	h := &hold{w: w, log: log, receipt: aws.ToString(msg.ReceiptHandle), lastSQS: now, lastS3: now, lost: make(chan struct{}), cancel: cancel}
	h.wg.Go(func() { h.run(ctx) })
	return h
}

func (h *hold) run(ctx context.Context) {
	vt := h.w.cfg.VisibilityTimeout
	tick := vt / 3
	ticker := h.w.clock.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
		// Both renewals at once, each bounded by a tick, so a slow one
		// (the SDK retrying an unreachable endpoint) cannot starve the
		// other.
		var both sync.WaitGroup
		both.Go(func() {
			c, cancel := context.WithTimeout(ctx, tick)
			defer cancel()
			h.extend(c)
		})
		both.Go(func() {
			c, cancel := context.WithTimeout(ctx, tick)
			defer cancel()
			h.renew(c)
		})
		both.Wait()
		h.mu.Lock()
		now := h.w.clock.Now()
		// Checked every tick: give up once neither renewal succeeded for
		// two ticks, before the next tick could find the timeout passed,
		// so the job is gone before anyone else may take the attempt.
		if h.lostErr == nil && now.Sub(h.lastSQS) >= vt-tick && (!h.renewing || now.Sub(h.lastS3) >= vt-tick) {
			h.loseLocked(errors.New("neither the message's visibility nor the claim could be renewed for most of a visibility timeout"))
		}
		h.mu.Unlock()
	}
}

// extend pushes the message's visibility timeout out by another timeout.
func (h *hold) extend(ctx context.Context) {
	h.mu.Lock()
	receipt := h.receipt
	h.mu.Unlock()
	_, err := h.w.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(h.w.cfg.QueueURL),
		ReceiptHandle:     aws.String(receipt),
		VisibilityTimeout: int32(h.w.cfg.VisibilityTimeout / time.Second),
	})
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn().Err(err).Msg("extending the message's visibility")
		}
		return
	}
	h.mu.Lock()
	h.lastSQS = h.w.clock.Now()
	h.mu.Unlock()
}

// renew renews the claim's lease. A worker that received this message again
// while we held it writes its receipt handle into the claim: we adopt it.
// Anyone else's write means the attempt was taken from us.
func (h *hold) renew(ctx context.Context) {
	h.renewMu.Lock()
	defer h.renewMu.Unlock()
	h.mu.Lock()
	if !h.renewing || h.lostErr != nil {
		h.mu.Unlock()
		return
	}
	c := *h.claim
	etag := h.etag
	h.mu.Unlock()
	c.RenewedAt = h.w.clock.Now().UTC()
	newETag, err := h.w.store.Update(ctx, &c, etag)
	if errors.Is(err, contract.ErrConflict) {
		cur, curETag, rerr := h.w.store.ReadClaim(ctx, c.JobID, c.Run, c.Attempt)
		h.mu.Lock()
		defer h.mu.Unlock()
		switch {
		case rerr != nil:
			h.log.Warn().Err(rerr).Msg("reading the claim after a conflicting write")
		case cur.State == contract.ClaimRunning && cur.Holder == c.Holder:
			h.receipt, h.claim, h.etag = cur.ReceiptHandle, cur, curETag
			h.log.Info().Msg("the message was received again while held; continuing with its new receipt handle")
		default:
			h.loseLocked(errors.New("another worker took the attempt over"))
		}
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn().Err(err).Msg("renewing the claim")
		}
		return
	}
	h.mu.Lock()
	if h.renewing && h.lostErr == nil {
		h.claim, h.etag, h.lastS3 = &c, newETag, h.w.clock.Now()
	}
	h.mu.Unlock()
}

func (h *hold) loseLocked(err error) {
	h.lostErr = err
	close(h.lost)
	h.log.Error().Err(err).Msg("lost the hold on the attempt; stopping the job")
}

// own starts renewing the lease of a claim just taken.
func (h *hold) own(c *contract.Claim, etag string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claim, h.etag, h.renewing, h.lastS3 = c, etag, true, h.w.clock.Now()
}

// current returns the held claim, its ETag and the message's receipt
// handle, and stops renewing the lease: the caller writes the claim next.
// It waits for a renewal in progress.
func (h *hold) current() (*contract.Claim, string, string) {
	h.renewMu.Lock()
	defer h.renewMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.renewing = false
	if h.claim == nil {
		return nil, "", h.receipt
	}
	c := *h.claim
	return &c, h.etag, h.receipt
}

// wrote records the claim's new ETag after the caller wrote it.
func (h *hold) wrote(c *contract.Claim, etag string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claim, h.etag = c, etag
}

// reread takes the claim as it is now after a conflicting write: it is
// still ours when it runs under our holder id (another receiver of our
// message wrote its receipt handle into it); then the caller may write it
// again with the returned ETag.
func (h *hold) reread(ctx context.Context, c *contract.Claim) (*contract.Claim, string, error) {
	cur, etag, err := h.w.store.ReadClaim(ctx, c.JobID, c.Run, c.Attempt)
	if err != nil {
		return nil, "", err
	}
	if cur.State != contract.ClaimRunning || cur.Holder != c.Holder {
		return nil, "", fmt.Errorf("%w: the claim is now %s by %s", ErrLostAttempt, cur.State, cur.Holder)
	}
	h.mu.Lock()
	h.receipt, h.claim, h.etag = cur.ReceiptHandle, cur, etag
	h.mu.Unlock()
	return cur, etag, nil
}

// receiptHandle is the message's current receipt handle.
func (h *hold) receiptHandle() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.receipt
}

// Lost returns a channel closed when the hold is lost, and why.
func (h *hold) lostCh() <-chan struct{} { return h.lost }

func (h *hold) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lostErr
}

func (h *hold) stop() {
	h.cancel()
	h.wg.Wait()
}
