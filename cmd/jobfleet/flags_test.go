package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobfleet/jobfleet/internal/testenv"
)

// TestDispatcherRejectsBadFlags: every setting that cannot work is refused
// at start-up, naming the flag, before anything reaches for AWS.
func TestDispatcherRejectsBadFlags(t *testing.T) {
	t.Parallel()
	registry, _ := filepath.Abs("../../dispatcher/testdata/jobtypes.yaml")
	base := []string{"dispatcher", "--intake", "http://127.0.0.1:1/q/intake", "--dead-letter", "http://127.0.0.1:1/q/dead",
		"--records", "http://127.0.0.1:1/q/records", "--bucket", "b", "--registry", registry, "--no-kubernetes"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "negative linger", args: []string{"--linger=-5s"}, want: "--linger -5s: above zero"},
		{name: "zero oom factor", args: []string{"--oom-factor", "0"}, want: "--oom-factor 0: above 1"},
		{name: "negative oom factor", args: []string{"--oom-factor=-2"}, want: "--oom-factor -2: above 1"},
		{name: "zero online rate", args: []string{"--online-rate", "0"}, want: "--online-rate 0: above 0 and at most 1"},
		{name: "online rate not a number", args: []string{"--online-rate", "NaN"}, want: "--online-rate NaN: above 0 and at most 1"},
		{name: "online rate above 1", args: []string{"--online-rate", "2"}, want: "--online-rate 2: above 0 and at most 1"},
		{name: "zero class idle ttl", args: []string{"--class-idle-ttl", "0s"}, want: "--class-idle-ttl 0s: above zero"},
		{name: "negative retrain every", args: []string{"--retrain-every=-1h"}, want: "--retrain-every -1h0m0s: above zero"},
		{name: "zero receivers", args: []string{"--receivers", "0"}, want: "--receivers 0: at least 1"},
		{name: "negative max in flight", args: []string{"--max-in-flight=-1"}, want: "--max-in-flight -1: at least 10 per receiver"},
		{name: "the same intake and dead-letter queue", args: []string{"--dead-letter", "http://127.0.0.1:1/q/intake"}, want: "--intake and --dead-letter are the same queue"},
		{name: "interruptions without Kubernetes", args: []string{"--interruption-queue", "http://127.0.0.1:1/q/int"}, want: "--interruption-queue needs Kubernetes"},
		{name: "intake not a URL", args: []string{"--intake", "jobfleet-intake"}, want: `--intake "jobfleet-intake" is not a queue URL`},
		{name: "Kubernetes without a worker image", args: []string{"--kubernetes"}, want: "--worker-image: required with --kubernetes"},
		{name: "unreadable model", args: []string{"--model", "/nonexistent/model.json", "--no-retrain"}, want: "--model /nonexistent/model.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCLI(t, "", append(append([]string{}, base...), tt.args...)...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant a failure mentioning %q", code, stderr, tt.want)
			}
		})
	}
}

// TestWorkerRejectsBadEnvironment runs `jobfleet worker` as a pod does,
// with settings that cannot work: each is refused, named, before it
// receives a message.
func TestWorkerRejectsBadEnvironment(t *testing.T) {
	t.Parallel()
	bin := testenv.Build(t, "./cmd/jobfleet")
	good := []string{"JOBFLEET_QUEUE=http://127.0.0.1:1/q/c", "JOBFLEET_INTAKE=http://127.0.0.1:1/q/i", "JOBFLEET_DEAD_LETTER=http://127.0.0.1:1/q/d",
		"JOBFLEET_RECORDS=http://127.0.0.1:1/q/r", "JOBFLEET_BUCKET=b"}
	tests := []struct {
		name string
		env  string
		want string
	}{
		{name: "negative max runtime", env: "JOBFLEET_MAX_RUNTIME=-1h", want: `JOBFLEET_MAX_RUNTIME: "-1h": a duration above zero`},
		{name: "zero idle timeout", env: "JOBFLEET_IDLE_TIMEOUT=0s", want: `JOBFLEET_IDLE_TIMEOUT: "0s": a duration above zero`},
		{name: "queue not a URL", env: "JOBFLEET_QUEUE=jobfleet-train-gpu-16gi", want: `JOBFLEET_QUEUE: "jobfleet-train-gpu-16gi" is not a queue URL`},
		{name: "upload grace longer than the grace period", env: "JOBFLEET_UPLOAD_GRACE=3m", want: "UploadGrace (JOBFLEET_UPLOAD_GRACE) 3m0s: above zero and shorter than the grace period (2m0s)"},
		{name: "unknown cgroup mode", env: "JOBFLEET_CGROUP=v3", want: `JOBFLEET_CGROUP: "v3": container, job or off`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, "worker", "--", "true")
			cmd.Env = append(append(os.Environ(), good...), tt.env)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("jobfleet worker: %v\n%s\nwant a failure mentioning %q", err, out, tt.want)
			}
		})
	}
}
