package dispatcher

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/predictor"
)

// TestSIGKILLLosesNoJob kills the dispatcher process in the middle of
// routing 10,000 jobs and starts another: every job still lands in its
// class queue. A crash between sending and deleting may forward a job
// twice; the worker's claim makes that harmless, so duplicates are counted
// and allowed, losses are not.
func TestSIGKILLLosesNoJob(t *testing.T) {
	t.Parallel()
	// Its own emulator: the load would slow every other test sharing one.
	b := setupWith(t, testenv.NewSQS(t))
	bin := testenv.Build(t, "./cmd/jobfleet")
	modelFile := filepath.Join(t.TempDir(), "model.json")
	model := constantModel(map[string]float64{"export": 1.5 * gib, "report": 1.2 * gib, "batch": 300 << 20})
	if err := predictor.Save(t.Context(), nil, modelFile, model); err != nil {
		t.Fatal(err)
	}
	const n = 10000
	want := b.publishMix(t, n)
	registryFile, _ := filepath.Abs("testdata/jobtypes.yaml")
	kubeconfig := b.kube.Kubeconfig(t)

	start := func() (*exec.Cmd, *testenv.Buffer) {
		cmd := exec.Command(bin, "dispatcher", "--log-format", "json",
			"--intake", b.intake, "--dead-letter", b.dead, "--records", "http://records", "--bucket", b.store.Bucket,
			"--registry", registryFile, "--namespace", b.ns, "--kubeconfig", kubeconfig, "--model", modelFile,
			"--metrics-addr", "127.0.0.1:0", "--intake-visibility", "10s", "--worker-image", "jobfleet:test")
		cmd.Env = append(append(os.Environ(), b.sqs.Env()...), b.s3.Env()...)
		cmd.Env = append(cmd.Env, "JOBFLEET_CLASS_PREFIX="+b.prefix)
		out := &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out
	}
	first, out := start()
	// Kill it once it has forwarded part of the jobs.
	b.waitForClasses(t, classNames(want), n/5, 2*time.Minute)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	t.Logf("killed the dispatcher after it forwarded a fifth of the jobs")

	second, out2 := start()
	stopSecond := func() {
		_ = second.Process.Signal(syscall.SIGTERM)
		if err := second.Wait(); err != nil {
			t.Errorf("the second dispatcher exited with %v:\n%s", err, out2.String())
		}
	}
	t0 := time.Now()
	b.waitForClasses(t, classNames(want), n, 3*time.Minute)
	t.Logf("the second dispatcher forwarded the rest in %v", time.Since(t0))
	t0 = time.Now()
	// Wait for intake to empty: what the killed process held returns after
	// its visibility timeout and is forwarded again.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if visible, inFlight := b.sqs.Depth(t, b.intake); visible+inFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			stopSecond()
			t.Fatalf("intake did not empty:\n%s\n%s", out.String(), out2.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	t.Logf("intake emptied %v later", time.Since(t0))
	stopSecond()
	t0 = time.Now()
	seen := map[string]int{}
	for _, class := range classNames(want) {
		url := b.classURL(t, class)
		visible, inFlight := b.sqs.Depth(t, url)
		for _, m := range b.sqs.Receive(t, url, visible+inFlight, true) {
			job, err := jobfleet.Decode([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Fatal(err)
			}
			if want[job.ID].class != class {
				t.Errorf("job %s landed in %s, want %s", job.ID, class, want[job.ID].class)
			}
			seen[job.ID]++
		}
	}
	t.Logf("drained the classes in %v", time.Since(t0))
	lost, duplicated := 0, 0
	for id := range want {
		switch c := seen[id]; {
		case c == 0:
			lost++
		case c > 1:
			duplicated += c - 1
		}
	}
	t.Logf("after SIGKILL: %d jobs, %d lost, %d forwarded twice", n, lost, duplicated)
	if lost > 0 {
		t.Fatalf("%d jobs lost", lost)
	}
	if strings.Contains(out2.String(), `"level":"error"`) {
		t.Errorf("the second dispatcher logged errors:\n%s", out2.String())
	}
}
