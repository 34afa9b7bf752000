package contract

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/internal/queue"
)

// MaxTotalAttempts bounds the attempts of a run, interrupted ones included,
// so that no job loops forever.
const MaxTotalAttempts = 25

// SQSAPI is the SQS calls of completing an attempt.
type SQSAPI interface {
	queue.SendAPI
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

// Queues are where an ended attempt's results go.
type Queues struct {
	Intake, DeadLetter, Records string
}

// Complete does what an ended claim says follows, and then deletes the
// attempt's message (body is its job message, receipt its receipt handle):
// the run record, then the rerun through intake or the dead letter (and the
// end of the run), or the end of the run of a job that succeeded. Every
// step is safe to repeat, so whoever finds an ended claim whose holder died
// on the way (a worker that receives the message again, or the failure
// sensor) completes it the same way; a crash anywhere leaves the message to
// come back and be completed.
func (s Store) Complete(ctx context.Context, api SQSAPI, q Queues, c *Claim, body, receipt string, now time.Time) error {
	if c.State != ClaimEnded {
		return fmt.Errorf("completing attempt %d of job %s: the claim has not ended", c.Attempt, c.JobID)
	}
	send := func(url string, m queue.Message, what string) error {
		if f := queue.Send(ctx, api, url, []queue.Message{m}, queue.Retry{Attempts: 2}); len(f) > 0 {
			return fmt.Errorf("%s: %w", what, f[0].Err)
		}
		return nil
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
	switch c.Next {
	case NextRerun:
		if err := send(q.Intake, queue.ForwardMessage(body, c.Type, c.Run, c.Attempt+1), "requeueing the job"); err != nil {
			return err
		}
	case NextDeadLetter:
		m := queue.ForwardMessage(body, c.Type, c.Run, c.Attempt)
		m, err := s.FitDeadLetter(ctx, queue.DeadLetter(m.Body, m.Attributes, c.Reason))
		if err != nil {
			return err
		}
		if err := send(q.DeadLetter, m, "dead-lettering the job"); err != nil {
			return err
		}
		if err := s.EndRun(ctx, c.JobID, c.Run, c.Outcome, c.Reason, now); err != nil {
			return err
		}
	case NextDone:
		if err := s.EndRun(ctx, c.JobID, c.Run, c.Outcome, "", now); err != nil {
			return err
		}
	default:
		return fmt.Errorf("completing attempt %d of job %s: unknown next step %q", c.Attempt, c.JobID, c.Next)
	}
	_, err := api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(c.QueueURL), ReceiptHandle: aws.String(receipt)})
	if err != nil {
		return fmt.Errorf("deleting the attempt's message: %w", err)
	}
	return nil
}
