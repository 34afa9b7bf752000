package contract_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/localstack"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

// announcer starts local SNS and Step Functions servers.
func announcer(t *testing.T) (contract.Announcer, *localstack.SNSServer, *localstack.SFNServer) {
	t.Helper()
	snsServer, err := localstack.StartSNS(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(snsServer.Stop)
	sfnServer, err := localstack.StartSFN(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sfnServer.Stop)
	cfg := testenv.AWSConfig()
	return contract.Announcer{
		SNS:   sns.NewFromConfig(cfg, func(o *sns.Options) { o.BaseEndpoint = aws.String(snsServer.Endpoint) }),
		Topic: snsServer.CreateTopic("events"),
		SFN:   sfn.NewFromConfig(cfg, func(o *sfn.Options) { o.BaseEndpoint = aws.String(sfnServer.Endpoint) }),
	}, snsServer, sfnServer
}

func TestAnnounceOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a, snsServer, sfnServer := announcer(t)
	ctx, now := t.Context(), time.Now()
	withToken := *job
	withToken.TaskToken = "tok-1"
	withToken.Labels = map[string]string{"workflow": "nightly"}
	sfnServer.Issue("tok-1")
	if _, _, err := s.StartRun(ctx, &withToken, body, "m-1", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	// A live run is not announced.
	if err := s.Announce(ctx, a, job.ID, "m-1", now); err != nil {
		t.Fatal(err)
	}
	if n := len(snsServer.Published(a.Topic)); n != 0 {
		t.Fatalf("a live run was announced %d times", n)
	}
	zero := 0
	end := contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded, Outputs: map[string]string{"auc": "0.9"},
		Attempt: &jobfleet.AttemptState{Attempt: 1, Outcome: jobfleet.OutcomeSucceeded, ExitCode: &zero, StartedAt: now, EndedAt: now.Add(time.Minute)}}
	if err := s.EndRun(ctx, job.ID, "m-1", end, now); err != nil {
		t.Fatal(err)
	}
	// Announced three times over (as by a worker that repeats Complete):
	// one event, one callback.
	for range 3 {
		if err := s.Announce(ctx, a, job.ID, "m-1", now); err != nil {
			t.Fatal(err)
		}
	}
	events := snsServer.Published(a.Topic)
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	var e jobfleet.Event
	if err := json.Unmarshal([]byte(events[0].Message), &e); err != nil || e.Status != jobfleet.StatusSucceeded || e.Outputs["auc"] != "0.9" || e.ResultURI != s.URI(s.RunKey(job.ID)) {
		t.Errorf("event %+v, %v", e, err)
	}
	if events[0].Attributes["status"] != "succeeded" || events[0].Attributes["job_type"] != "train" || events[0].Attributes["workflow"] != "nightly" {
		t.Errorf("attributes %v", events[0].Attributes)
	}
	calls := sfnServer.Calls("tok-1")
	if len(calls) != 1 || calls[0].Action != "SendTaskSuccess" || !calls[0].Accepted {
		t.Errorf("callbacks %+v", calls)
	}

	// Both are recorded in the run, which is what keeps a repeat quiet.
	cur, _, _ := s.ReadRun(ctx, job.ID)
	if !cur.EventSent || !cur.TaskAnswered {
		t.Fatalf("not recorded: %+v", cur)
	}
}

func TestAnnounceWaitsForTheCancelledAttempt(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a, snsServer, _ := announcer(t)
	ctx, now := t.Context(), time.Now()
	if _, _, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Running(ctx, job.ID, "m-1", jobfleet.AttemptState{Attempt: 1, StartedAt: now}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, job.ID, "stop", now); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(ctx, a, job.ID, "m-1", now); err != nil {
		t.Fatal(err)
	}
	if n := len(snsServer.Published(a.Topic)); n != 0 {
		t.Fatalf("announced while the cancelled attempt still ran (%d events)", n)
	}
	att := jobfleet.AttemptState{Attempt: 1, Outcome: jobfleet.OutcomeCancelled, EndedAt: now}
	if err := s.EndRun(ctx, job.ID, "m-1", contract.End{Status: jobfleet.StatusCancelled, Outcome: jobfleet.OutcomeCancelled, Attempt: &att}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(ctx, a, job.ID, "m-1", now); err != nil {
		t.Fatal(err)
	}
	events := snsServer.Published(a.Topic)
	var e jobfleet.Event
	if len(events) != 1 || json.Unmarshal([]byte(events[0].Message), &e) != nil || e.Status != jobfleet.StatusCancelled || len(e.Attempts) != 1 {
		t.Fatalf("events %+v", events)
	}
}

// TestAnnounceLargeOutputs: the largest outputs a worker takes (64 KiB of
// characters JSON would escape) still make an event SNS accepts.
func TestAnnounceLargeOutputs(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a, snsServer, _ := announcer(t)
	ctx, now := t.Context(), time.Now()
	if _, _, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{}
	for i := range 63 {
		outputs[fmt.Sprintf("k%d", i)] = strings.Repeat("<&>", 330)
	}
	if err := s.EndRun(ctx, job.ID, "m-1", contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded, Outputs: outputs}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(ctx, a, job.ID, "m-1", now); err != nil {
		t.Fatal(err)
	}
	events := snsServer.Published(a.Topic)
	var e jobfleet.Event
	if len(events) != 1 || json.Unmarshal([]byte(events[0].Message), &e) != nil || len(e.Outputs) != 63 {
		t.Fatalf("%d events", len(events))
	}
	if n := len(events[0].Message); n > 256<<10 {
		t.Errorf("the event is %d bytes, more than SNS takes", n)
	}
}
