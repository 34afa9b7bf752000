package contract_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T) contract.Store {
	t.Helper()
	s3 := testenv.StartS3(t)
	return contract.Store{S3: testenv.NewS3Client(s3.Endpoint), Bucket: s3.CreateBucket(t), Prefix: "jf"}
}

var job = &jobfleet.Job{Version: 1, ID: "job-1", Type: "train"}

const body = `{"version":1,"id":"job-1","type":"train"}`

func TestStartRun(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	start, run, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil)
	if err != nil || start != contract.Started || run.Run != "m-1" {
		t.Fatalf("first message: %v %+v %v", start, run, err)
	}
	// The same message again (a redelivery) continues its run.
	if start, _, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil); err != nil || start != contract.Started {
		t.Fatalf("redelivery: %v %v", start, err)
	}
	// The same job published again while the run is live is a repeat,
	// dropped; another job with the id is a duplicate.
	if start, cur, err := s.StartRun(ctx, job, body, "m-2", time.Time{}, now, nil); err != nil || start != contract.Repeated || cur.Run != "m-1" {
		t.Fatalf("repeat: %v %+v %v", start, cur, err)
	}
	other := `{"version":1,"id":"job-1","type":"train","params":{"x":1}}`
	if start, cur, err := s.StartRun(ctx, job, other, "m-2", time.Time{}, now, nil); err != nil || start != contract.Duplicate || cur.Run != "m-1" {
		t.Fatalf("duplicate: %v %+v %v", start, cur, err)
	}
	if err := s.EndRun(ctx, job.ID, "m-1", contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded}, now); err != nil {
		t.Fatal(err)
	}
	// The first message once more, after its run ended: its delete was
	// lost, it must not start again.
	if start, _, err := s.StartRun(ctx, job, body, "m-1", time.Time{}, now, nil); err != nil || start != contract.Finished {
		t.Fatalf("the ended run's own message: %v %v", start, err)
	}
	// The same job sent before the run ended (a retried submit whose
	// message came late) does not run again.
	if start, _, err := s.StartRun(ctx, job, body, "m-4", now.Add(-time.Second), now, nil); err != nil || start != contract.Repeated {
		t.Fatalf("a repeat sent before the run ended: %v %v", start, err)
	}
	// A later message reuses the id: a new run, from nothing.
	start, run, err = s.StartRun(ctx, job, body, "m-3", now.Add(time.Second), now, nil)
	if err != nil || start != contract.Started || run.Run != "m-3" || run.State != contract.RunLive {
		t.Fatalf("reuse after the run ended: %v %+v %v", start, run, err)
	}
	if s.CheckpointPrefix(job.ID, "m-3") == s.CheckpointPrefix(job.ID, "m-1") {
		t.Error("a new run shares the old run's checkpoint")
	}
}

// TestStartRunRace starts the same job from many messages at once: one run
// starts, every other message is a repeat of it.
func TestStartRunRace(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[contract.Start]int{}
	for i := range 16 {
		wg.Go(func() {
			start, _, err := s.StartRun(t.Context(), job, body, "m-"+string(rune('a'+i)), time.Time{}, time.Now(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			results[start]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if results[contract.Started] != 1 || results[contract.Repeated] != 15 {
		t.Errorf("results = %v, want one started and 15 repeats", results)
	}
}

func claim(run, msg, holder string) *contract.Claim {
	return &contract.Claim{JobID: job.ID, Type: job.Type, Run: run, Attempt: 1, Holder: holder, MessageID: msg, ReceiptHandle: "r-" + holder}
}

func TestClaimRules(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now, lease := t.Context(), time.Now(), time.Minute
	got, _, etag, err := s.Claim(ctx, claim("r", "msg-1", "w1"), now, lease)
	if err != nil || got != contract.Owned {
		t.Fatalf("first claim: %v %v", got, err)
	}
	if got, _, _, _ := s.Claim(ctx, claim("r", "msg-2", "w2"), now, lease); got != contract.HeldByOther {
		t.Errorf("another message's claim = %v, want HeldByOther", got)
	}
	if got, _, _, _ := s.Claim(ctx, claim("r", "msg-1", "w3"), now.Add(lease/2), lease); got != contract.HeldAlive {
		t.Errorf("the same message while the lease is fresh = %v, want HeldAlive", got)
	}
	got, _, _, err = s.Claim(ctx, claim("r", "msg-1", "w4"), now.Add(2*lease), lease)
	if err != nil || got != contract.Owned {
		t.Fatalf("the same message after the lease expired = %v %v, want Owned", got, err)
	}
	// The first holder lost the attempt: its write conflicts.
	c := claim("r", "msg-1", "w1")
	if _, err := s.Update(ctx, c, etag); !errors.Is(err, contract.ErrConflict) {
		t.Errorf("the old holder's write = %v, want ErrConflict", err)
	}
	// The new holder ends it; any later claim finds it ended.
	cur, curETag, err := s.ReadClaim(ctx, job.ID, "r", 1)
	if err != nil || cur.Holder != "w4" {
		t.Fatalf("claim after takeover = %+v %v", cur, err)
	}
	cur.State, cur.Next, cur.Outcome = contract.ClaimEnded, contract.NextDone, jobfleet.OutcomeSucceeded
	if _, err := s.Update(ctx, cur, curETag); err != nil {
		t.Fatal(err)
	}
	if got, ended, _, _ := s.Claim(ctx, claim("r", "msg-9", "w5"), now.Add(3*lease), lease); got != contract.Ended || ended.Next != contract.NextDone {
		t.Errorf("a claim of an ended attempt = %v %+v, want Ended", got, ended)
	}
}

// TestClaimTakeoverRace lets many receivers of the same message whose
// holder died take the attempt over at once: exactly one owns it.
func TestClaimTakeoverRace(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now, lease := t.Context(), time.Now(), time.Minute
	if _, _, _, err := s.Claim(ctx, claim("r", "msg-1", "dead"), now.Add(-time.Hour), lease); err != nil {
		t.Fatal(err)
	}
	var owned sync.WaitGroup
	var mu sync.Mutex
	owners := 0
	for i := range 12 {
		owned.Go(func() {
			got, _, _, err := s.Claim(ctx, claim("r", "msg-1", "w"+string(rune('a'+i))), now, lease)
			if err != nil {
				t.Error(err)
			}
			if got == contract.Owned {
				mu.Lock()
				owners++
				mu.Unlock()
			}
		})
	}
	owned.Wait()
	if owners != 1 {
		t.Errorf("%d receivers took the attempt over, want exactly one", owners)
	}
}

func TestVerifyRun(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, now := t.Context(), time.Now()
	if _, err := s.VerifyRun(ctx, job.ID, body, "forged", 2); !errors.Is(err, contract.ErrForged) {
		t.Errorf("a run jobfleet never started = %v, want ErrForged", err)
	}
	if _, _, err := s.StartRun(ctx, job, body, "r", time.Time{}, now, nil); err != nil {
		t.Fatal(err)
	}
	if h, err := s.VerifyRun(ctx, job.ID, body, "r", 1); err != nil || len(h) != 0 {
		t.Errorf("attempt 1 of the live run = %v %v", h, err)
	}
	if _, err := s.VerifyRun(ctx, job.ID, body, "r", 2); !errors.Is(err, contract.ErrForged) {
		t.Errorf("attempt 2 before attempt 1 ended = %v, want ErrForged", err)
	}
	if _, err := s.VerifyRun(ctx, job.ID, body, "other", 1); !errors.Is(err, contract.ErrForged) {
		t.Errorf("another run of the job = %v, want ErrForged", err)
	}
	_, _, etag, err := s.Claim(ctx, claim("r", "m", "w"), now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, _, _ := s.ReadClaim(ctx, job.ID, "r", 1)
	c.State, c.Next, c.Outcome = contract.ClaimEnded, contract.NextRerun, jobfleet.OutcomeOOM
	c.History = jobfleet.History{{Attempt: 1, Reason: jobfleet.ReasonOOM, AllocatedBytes: 1 << 30}}
	if _, err := s.Update(ctx, c, etag); err != nil {
		t.Fatal(err)
	}
	h, err := s.VerifyRun(ctx, job.ID, body, "r", 2)
	if err != nil || len(h) != 1 || h[0].AllocatedBytes != 1<<30 {
		t.Errorf("attempt 2 after attempt 1 ended in a rerun = %+v %v", h, err)
	}
	if _, err := s.VerifyRun(ctx, job.ID, body, "r", 3); !errors.Is(err, contract.ErrForged) {
		t.Errorf("attempt 3 = %v, want ErrForged", err)
	}
	if _, err := s.VerifyRun(ctx, job.ID, `{"version":1,"id":"job-1","type":"train","params":{"evil":1}}`, "r", 2); !errors.Is(err, contract.ErrForged) {
		t.Errorf("attempt 2 with another body = %v, want ErrForged", err)
	}
	if err := s.EndRun(ctx, job.ID, "r", contract.End{Status: jobfleet.StatusSucceeded, Outcome: jobfleet.OutcomeSucceeded}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyRun(ctx, job.ID, body, "r", 2); !errors.Is(err, contract.ErrStale) {
		t.Errorf("a rerun of an ended run = %v, want ErrStale", err)
	}
}
