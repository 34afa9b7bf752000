package loadtest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/jobtype"
	"github.com/jobfleet/jobfleet/loadtest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func setup(t testing.TB) (*testenv.SQS, *loadtest.InProcess, loadtest.Config) {
	t.Helper()
	sqs := testenv.StartSQS(t)
	reg, err := jobtype.Parse("loadtest.yaml", []byte(loadtest.LocalRegistry))
	if err != nil {
		t.Fatal(err)
	}
	intake := sqs.CreateQueue(t, "lt-intake-", nil)
	dead := sqs.CreateQueue(t, "lt-dead-", nil)
	prefix := testenv.UniqueName(t, "lt", 24)
	t.Cleanup(func() { deleteQueues(sqs, prefix) })
	s3 := testenv.StartS3(t)
	target := &loadtest.InProcess{
		Client: sqs.Client, S3: s3.Client, Log: zerolog.Nop(),
		Config: dispatcher.Config{IntakeURL: intake, DeadLetterURL: dead, Bucket: s3.CreateBucket(t), Registry: reg, Template: dispatcher.Template{Prefix: prefix}, IntakeVisibility: 10 * time.Second},
	}
	return sqs, target, loadtest.Config{Mix: loadtest.LocalMix(), Intake: intake, ClassPrefix: prefix, Timeout: 5 * time.Minute}
}

// TestLoadTestAccountsForEveryJob runs a small load test with a restart of
// the dispatcher half-way: every published job is accounted for.
func TestLoadTestAccountsForEveryJob(t *testing.T) {
	t.Parallel()
	sqs, target, cfg := setup(t)
	cfg.Jobs, cfg.Chaos = 2000, true
	res, err := loadtest.Run(t.Context(), sqs.Client, target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if res.Lost != 0 || res.Routed != cfg.Jobs {
		t.Errorf("lost %d, routed %d of %d", res.Lost, res.Routed, cfg.Jobs)
	}
	if res.Restarts != 1 || res.DispatchedPerSec <= 0 || res.CeilingPerSec <= 0 || res.SQSCallsPerJob <= 0 || res.P99LatencyMs < res.P50LatencyMs {
		t.Errorf("implausible result: %+v", *res)
	}
}

// BenchmarkDispatch measures the dispatcher's rate and SQS calls per job
// against the local emulator, next to a plain receive-send-delete loop on
// the same server in the same run.
func BenchmarkDispatch(b *testing.B) {
	sqs, target, cfg := setup(b)
	cfg.Jobs = 20000
	for b.Loop() {
		res, err := loadtest.Run(b.Context(), sqs.Client, target, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if res.Lost != 0 {
			b.Fatalf("%d jobs lost", res.Lost)
		}
		b.ReportMetric(res.DispatchedPerSec, "jobs/s")
		b.ReportMetric(res.CeilingPerSec, "ceiling-jobs/s")
		b.ReportMetric(res.DispatchedPerSec/res.CeilingPerSec, "of-ceiling")
		b.ReportMetric(res.SQSCallsPerJob, "sqs-calls/job")
		b.ReportMetric(res.CeilingCalls, "ceiling-calls/job")
		b.ReportMetric(res.P99LatencyMs, "p99-ms")
		fmt.Printf("duplicated %d\n", res.Duplicated)
	}
}
