package contract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet"

	"github.com/jobfleet/jobfleet/internal/queue"
)

// MaxTotalAttempts bounds the attempts of a run, interrupted ones included
// (not one sent back to be sized again: CountedAttempts),
// so that no job loops forever.
const MaxTotalAttempts = 25

// SQSAPI is the SQS calls of completing an attempt.
type SQSAPI interface {
	queue.SendAPI
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

// Queues are where an ended attempt's results go, and who is told when
// the job ended.
type Queues struct {
	Intake, DeadLetter, Records string
	Announcer                   Announcer
}

// Retry runs one step of Complete, trying again as the caller sees fit.
type Retry func(what string, step func(context.Context) error) error

// Once runs a step once.
func Once(ctx context.Context) Retry {
	return func(_ string, step func(context.Context) error) error { return step(ctx) }
}

// Complete does what an ended claim says follows, and then deletes the
// attempt's message from queueURL with receipt (the receiver's own): the
// run record, then the rerun through intake or the dead letter (and the end
// of the run), or the end of the run of a job that succeeded. Each step is
// retried on its own (retry), so a failed delete does not send the rerun
// again. A crash anywhere leaves the message to come back to a worker,
// whose claim finds the attempt ended and completes it the same way: the
// rerun is then sent twice at worst, and its claim runs it once.
func (s Store) Complete(ctx context.Context, api SQSAPI, q Queues, c *Claim, body, queueURL, receipt string, now time.Time, retry Retry) error {
	if c.State != ClaimEnded {
		return fmt.Errorf("completing attempt %d of job %s: the claim has not ended", c.Attempt, c.JobID)
	}
	send := func(url string, m queue.Message, what string) error {
		return retry(what, func(ctx context.Context) error {
			if f := queue.Send(ctx, api, url, []queue.Message{m}, queue.Retry{Attempts: 2}); len(f) > 0 {
				return fmt.Errorf("%s: %w", what, f[0].Err)
			}
			return nil
		})
	}
	if c.Record != nil && q.Records != "" {
		data, err := json.Marshal(c.Record)
		if err != nil {
			return fmt.Errorf("encoding the run record: %w", err)
		}
		if err := send(q.Records, queue.Message{Body: string(data)}, "sending the run record"); err != nil {
			return err
		}
	}
	attempt := c.attemptState()
	var notAnnounced error
	endRun := func(end End) error {
		end.Outcome, end.Attempt = c.Outcome, &attempt
		if err := retry("ending the run", func(ctx context.Context) error {
			return s.EndRun(ctx, c.JobID, c.Run, end, now)
		}); err != nil {
			return err
		}
		// An announcement that keeps failing (no permission to publish,
		// SNS down for long) must not hold the attempt's message and pod:
		// the caller bounds StepAnnounce, and the end is recorded.
		if err := retry(StepAnnounce, func(ctx context.Context) error {
			return s.Announce(ctx, q.Announcer, c.JobID, c.Run, now)
		}); err != nil {
			notAnnounced = err
		}
		return nil
	}
	switch c.Next {
	case NextRerun:
		if err := retry("recording the requeue", func(ctx context.Context) error {
			return s.Requeued(ctx, c.JobID, c.Run, attempt, now)
		}); err != nil {
			return err
		}
		if err := send(q.Intake, queue.ForwardMessage(body, c.Type, c.Run, c.Attempt+1), "requeueing the job"); err != nil {
			return err
		}
	case NextDeadLetter:
		m := queue.ForwardMessage(body, c.Type, c.Run, c.Attempt)
		m = queue.DeadLetter(m.Body, m.Attributes, c.Reason)
		if err := retry("storing a large dead letter's body", func(ctx context.Context) error {
			var err error
			m, err = s.FitDeadLetter(ctx, m)
			return err
		}); err != nil {
			return err
		}
		if err := send(q.DeadLetter, m, "dead-lettering the job"); err != nil {
			return err
		}
		if err := endRun(End{Status: jobfleet.StatusFailed, Reason: c.Reason}); err != nil {
			return err
		}
	case NextDone:
		end := End{Status: jobfleet.StatusSucceeded, Outputs: c.Outputs, OutputsURI: c.OutputsURI}
		if c.Outcome != jobfleet.OutcomeSucceeded {
			// Done without success: the job was cancelled.
			end = End{Status: jobfleet.StatusCancelled, Reason: c.Reason}
		}
		if err := endRun(end); err != nil {
			return err
		}
	default:
		return fmt.Errorf("completing attempt %d of job %s: unknown next step %q", c.Attempt, c.JobID, c.Next)
	}
	err := retry("deleting the message", func(ctx context.Context) error {
		_, err := api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: aws.String(receipt)})
		if err != nil {
			return fmt.Errorf("deleting the attempt's message: %w", err)
		}
		return nil
	})
	if err == nil && notAnnounced != nil {
		return fmt.Errorf("%w: %w", ErrNotAnnounced, notAnnounced)
	}
	return err
}

// StepAnnounce names Complete's announcing step to its Retry, which should
// bound it.
const StepAnnounce = "announcing the end of the job"

// ErrNotAnnounced: Complete did everything but announce the end of the
// job (its completion event or task token callback).
var ErrNotAnnounced = errors.New("the end of the job was not announced")

// attemptState is the ended attempt as the job's state shows it.
func (c *Claim) attemptState() jobfleet.AttemptState {
	var a jobfleet.AttemptState
	if c.Record != nil {
		a = jobfleet.AttemptOf(c.Record)
	} else {
		a = jobfleet.AttemptState{Attempt: c.Attempt, Outcome: c.Outcome, Node: c.Node, StartedAt: c.ClaimedAt, EndedAt: c.EndedAt}
		if last, ok := c.History.Last(); ok && last.Attempt == c.Attempt {
			// An attempt that ran nothing (sent back to be sized again)
			// still had its class's memory.
			a.AllocatedBytes = last.AllocatedBytes
		}
	}
	a.Pod = c.Pod
	return a
}
