package faults

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/internal/testenv"
)

var report = flag.String("report", "", "write the fault matrix as a Markdown table to this file")

// scenario is one row of the matrix: a fault injected into a world with
// jobs flowing.
type scenario struct {
	name string
	jobs int
	// arm sets the fault up before the jobs are published; it may set the
	// world's hook to act on the first worker.
	arm func(w *world)
	// during acts while the jobs flow, after they are published.
	during func(w *world)
}

// at sends sig to the first worker when its attempt enters state.
func at(sig syscall.Signal, state string) func(w *world) {
	return func(w *world) {
		w.hook = func(wk *worker) { wk.when(`"state":"`+state+`"`, func() { wk.signal(sig) }) }
	}
}

// stopThen stops the first worker with SIGTERM once its job runs, and
// sends sig when its attempt enters state on the way out.
func stopThen(sig syscall.Signal, state string) func(w *world) {
	return func(w *world) {
		w.hook = func(wk *worker) {
			wk.when(`"state":"running"`, func() { wk.signal(syscall.SIGTERM) })
			wk.when(`"state":"`+state+`"`, func() { wk.signal(sig) })
		}
	}
}

// outage cuts a proxy for d once the first worker's job runs, and stops
// the worker meanwhile when stop is set.
func outage(proxy func(w *world) *testenv.Proxy, d time.Duration, stop bool) func(w *world) {
	return func(w *world) {
		w.hook = func(wk *worker) {
			wk.when(`"state":"running"`, func() {
				p := proxy(w)
				p.Down()
				if stop {
					wk.signal(syscall.SIGTERM)
				}
				time.AfterFunc(d, p.Up)
			})
		}
	}
}

func s3Proxy(w *world) *testenv.Proxy  { return w.s3Proxy }
func sqsProxy(w *world) *testenv.Proxy { return w.sqsProxy }

func scenarios() []scenario {
	var out []scenario
	for _, state := range []string{"claimed", "restored", "running", "recorded", "finished"} {
		out = append(out, scenario{name: "worker SIGTERM at " + state, jobs: 1, arm: at(syscall.SIGTERM, state)})
		out = append(out, scenario{name: "worker SIGKILL at " + state, jobs: 1, arm: at(syscall.SIGKILL, state)})
	}
	for _, state := range []string{"stopping", "uploaded", "recorded", "requeued"} {
		out = append(out, scenario{name: "worker SIGKILL at " + state + " after SIGTERM", jobs: 1, arm: stopThen(syscall.SIGKILL, state)})
	}
	out = append(out,
		scenario{name: "S3 unreachable for 8s while the job runs", jobs: 1, arm: outage(s3Proxy, 8*time.Second, false)},
		scenario{name: "SQS unreachable for 8s while the job runs", jobs: 1, arm: outage(sqsProxy, 8*time.Second, false)},
		scenario{name: "S3 unreachable for 8s across a SIGTERM", jobs: 1, arm: outage(s3Proxy, 8*time.Second, true)},
		scenario{name: "SQS unreachable for 8s across a SIGTERM", jobs: 1, arm: outage(sqsProxy, 8*time.Second, true)},
		scenario{name: "dispatcher SIGKILL while forwarding", jobs: 40, during: func(w *world) {
			testenv.Eventually(w.t, 30*time.Second, "the dispatcher to hold jobs", func() bool {
				_, inFlight := depth(w.t.Context(), w.sqs.Client, w.intake)
				return inFlight > 0
			})
			w.killDispatcher()
			w.startDispatcher()
		}},
		scenario{name: "class queue deleted under a send", jobs: 20, during: func(w *world) {
			// Once the class exists, delete its queue from under the
			// dispatcher that has it cached, while jobs are sent to it.
			var url string
			testenv.Eventually(w.t, 30*time.Second, "the class queue", func() bool {
				out, err := w.sqs.Client.ListQueues(w.t.Context(), &sqs.ListQueuesInput{QueueNamePrefix: aws.String(w.prefix)})
				if err != nil || len(out.QueueUrls) == 0 {
					return false
				}
				url = out.QueueUrls[0]
				return true
			})
			// What is in the queue goes with it (deleted by hand); the jobs
			// still to come must all arrive.
			if _, err := w.sqs.Client.DeleteQueue(w.t.Context(), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil {
				w.t.Fatal(err)
			}
			w.publish(ids("late", 20)...)
		}},
	)
	return out
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

// TestFaultMatrix injects each fault and counts jobs lost, run twice and
// stranded: all must be zero.
func TestFaultMatrix(t *testing.T) {
	bin := testenv.Build(t, "./cmd/jobfleet")
	testjob := testenv.Build(t, "./internal/testenv/testjob")
	var mu sync.Mutex
	rows := map[string]tally{}
	sem := make(chan struct{}, 4)
	t.Run("matrix", func(t *testing.T) {
		for _, sc := range scenarios() {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				sem <- struct{}{}
				defer func() { <-sem }()
				w := newWorld(t, bin, testjob)
				if sc.arm != nil {
					sc.arm(w)
				}
				w.startDispatcher()
				ctx, stop := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { w.execute(ctx); close(done) }()
				defer func() { stop(); <-done }()
				jobIDs := ids("job", sc.jobs)
				w.publish(jobIDs...)
				if sc.during != nil {
					sc.during(w)
				}
				if sc.name == "class queue deleted under a send" {
					// The jobs in the deleted queue went with it; the ones
					// published after must all arrive.
					jobIDs = ids("late", 20)
				}
				res := w.settle(jobIDs, 2*time.Minute)
				mu.Lock()
				rows[sc.name] = res
				mu.Unlock()
				if res.Lost+res.RunTwice+res.Stranded > 0 {
					t.Errorf("%d jobs: %d lost, %d run twice, %d messages stranded", res.Jobs, res.Lost, res.RunTwice, res.Stranded)
				}
			})
		}
	})
	var b strings.Builder
	b.WriteString("| fault | jobs | lost | run twice | stranded | settled in |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, sc := range scenarios() {
		r, ok := rows[sc.name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %.0f s |\n", sc.name, r.Jobs, r.Lost, r.RunTwice, r.Stranded, r.Seconds)
	}
	t.Logf("fault matrix:\n%s", b.String())
	if *report != "" {
		if err := os.WriteFile(*report, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
