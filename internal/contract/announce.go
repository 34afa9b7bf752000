package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/jobfleet/jobfleet"
)

// SNSAPI is the SNS call of publishing completion events.
type SNSAPI interface {
	Publish(ctx context.Context, in *sns.PublishInput, opts ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// SFNAPI is the Step Functions calls of a job that carries a task token.
type SFNAPI interface {
	SendTaskSuccess(ctx context.Context, in *sfn.SendTaskSuccessInput, opts ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error)
	SendTaskFailure(ctx context.Context, in *sfn.SendTaskFailureInput, opts ...func(*sfn.Options)) (*sfn.SendTaskFailureOutput, error)
	SendTaskHeartbeat(ctx context.Context, in *sfn.SendTaskHeartbeatInput, opts ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error)
}

// Announcer tells whoever listens that a job ended: one completion event
// to the events topic, and, for a job whose message carried a Step
// Functions task token, SendTaskSuccess or SendTaskFailure.
type Announcer struct {
	SNS SNSAPI
	// Topic is the events topic's ARN; empty publishes no events.
	Topic string
	// SFN answers task tokens; nil leaves them unanswered.
	SFN SFNAPI
}

// Message attributes of a completion event, for SNS filter policies.
const (
	EventAttrStatus   = "status"
	EventAttrType     = "job_type"
	EventAttrWorkflow = "workflow"
)

// SNS and Step Functions bound what jobfleet sends them.
const (
	// maxEventBytes leaves room for the message attributes in SNS's
	// 256 KiB.
	maxEventBytes      = 250 << 10
	maxTaskOutputBytes = 256 << 10
	maxTaskCauseChars  = 32768
	maxTaskErrorChars  = 256
)

// encodeEvent writes an event as JSON of at most limit bytes: when the
// whole event is larger, without its attempts, and then without its
// outputs too (the state document, at result_uri, has both).
func encodeEvent(e *jobfleet.Event, limit int) ([]byte, error) {
	encode := func(e *jobfleet.Event) ([]byte, error) {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e); err != nil {
			return nil, err
		}
		return bytes.TrimRight(b.Bytes(), "\n"), nil
	}
	data, err := encode(e)
	if err != nil || len(data) <= limit {
		return data, err
	}
	slim := *e
	slim.Attempts = []jobfleet.AttemptState{}
	if data, err = encode(&slim); err != nil || len(data) <= limit {
		return data, err
	}
	slim.Outputs = nil
	if data, err = encode(&slim); err != nil || len(data) <= limit {
		return data, err
	}
	return nil, fmt.Errorf("the event of job %s is larger than %d bytes", e.JobID, limit)
}

// Announce tells that the run of a job ended, once: each of the event and
// the callback is recorded in the run when it was sent, so a repeat (a
// crash between sending and recording) sends it at most once more, with
// the same event id. It does nothing while the run is live, or while the
// attempt a cancel interrupted still runs: its worker announces once the
// attempt ended.
func (s Store) Announce(ctx context.Context, a Announcer, jobID, runID string, now time.Time) error {
	if a.Topic == "" && a.SFN == nil {
		return nil
	}
	cur, _, err := s.ReadRun(ctx, jobID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.Run != runID || cur.State != RunEnded || attemptRunning(cur) {
		return nil
	}
	event := jobfleet.NewEvent(&cur.JobState, s.URI(s.RunKey(jobID)))
	if a.Topic != "" && !cur.EventSent {
		if err := publishEvent(ctx, a, event); err != nil {
			return err
		}
		if err := s.markAnnounced(ctx, jobID, runID, now, func(r *Run) *bool { return &r.EventSent }); err != nil {
			return err
		}
	}
	if a.SFN != nil && cur.TaskToken != "" && !cur.TaskAnswered {
		if err := answerTask(ctx, a.SFN, cur.TaskToken, event); err != nil {
			return err
		}
		return s.markAnnounced(ctx, jobID, runID, now, func(r *Run) *bool { return &r.TaskAnswered })
	}
	return nil
}

// FailTask answers the task token of a message that will not run, and
// whose job's state will not answer it (a duplicate of another job, a
// message of a job cancelled before it was received): SendTaskFailure with
// the status and the reason. An empty token, or no Step Functions client,
// answers nothing.
func (a Announcer) FailTask(ctx context.Context, token, jobID string, status jobfleet.Status, reason string) error {
	if token == "" || a.SFN == nil {
		return nil
	}
	return answerTask(ctx, a.SFN, token, &jobfleet.Event{JobID: jobID, Status: status, Reason: reason})
}

// attemptRunning reports whether the run's last attempt has not ended.
func attemptRunning(r *Run) bool {
	n := len(r.Attempts)
	return n > 0 && r.Attempts[n-1].Outcome == ""
}

func (s Store) markAnnounced(ctx context.Context, jobID, runID string, now time.Time, flag func(*Run) *bool) error {
	_, err := s.updateRun(ctx, jobID, now, func(cur *Run) error {
		if cur.Run != runID || *flag(cur) {
			return errUnchanged
		}
		*flag(cur) = true
		return nil
	})
	return err
}

func publishEvent(ctx context.Context, a Announcer, e *jobfleet.Event) error {
	data, err := encodeEvent(e, maxEventBytes)
	if err != nil {
		return fmt.Errorf("encoding the event of job %s: %w", e.JobID, err)
	}
	attrs := map[string]snstypes.MessageAttributeValue{
		EventAttrStatus: {DataType: aws.String("String"), StringValue: aws.String(string(e.Status))},
	}
	if e.JobType != "" {
		attrs[EventAttrType] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(e.JobType)}
	}
	if w := e.Labels["workflow"]; w != "" {
		attrs[EventAttrWorkflow] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(w)}
	}
	_, err = a.SNS.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(a.Topic), Message: aws.String(string(data)), MessageAttributes: attrs})
	if err != nil {
		return fmt.Errorf("publishing the event of job %s: %w", e.JobID, err)
	}
	return nil
}

// answerTask sends a task token's callback: the event as the output of a
// job that succeeded, the status and reason of one that did not. A token
// Step Functions no longer knows (the execution timed out or was stopped,
// or the callback was sent already) needs no answer.
func answerTask(ctx context.Context, api SFNAPI, token string, e *jobfleet.Event) error {
	var err error
	if e.Status == jobfleet.StatusSucceeded {
		var data []byte
		data, err = encodeEvent(e, maxTaskOutputBytes)
		if err != nil {
			return fmt.Errorf("encoding the result of job %s: %w", e.JobID, err)
		}
		_, err = api.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(token), Output: aws.String(string(data))})
	} else {
		cause := e.Reason
		if cause == "" {
			cause = "job " + e.JobID + " " + string(e.Status)
		}
		_, err = api.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{
			TaskToken: aws.String(token),
			Error:     aws.String(Truncate("jobfleet."+string(e.Status), maxTaskErrorChars)),
			Cause:     aws.String(Truncate(cause, maxTaskCauseChars)),
		})
	}
	if TaskGone(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("answering the task token of job %s: %w", e.JobID, err)
	}
	return nil
}

// TaskGone reports whether Step Functions no longer waits on a task token.
func TaskGone(err error) bool {
	var timedOut *sfntypes.TaskTimedOut
	var gone *sfntypes.TaskDoesNotExist
	var invalid *sfntypes.InvalidToken
	return errors.As(err, &timedOut) || errors.As(err, &gone) || errors.As(err, &invalid)
}

// Truncate cuts s to at most n bytes, on a character boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
