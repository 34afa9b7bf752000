package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/jobfleet/jobfleet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// jobfleet runs the CLI in-process and returns its exit code and output.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestEveryFlagHasEnv checks that every flag of every command can be set
// from a JOBFLEET_* environment variable.
func TestEveryFlagHasEnv(t *testing.T) {
	t.Parallel()
	var cli CLI
	parser, err := newParser(&cli, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			if f.Name == "help" {
				continue
			}
			if len(f.Envs) == 0 || !strings.HasPrefix(f.Envs[0], "JOBFLEET_") {
				t.Errorf("%s --%s has no JOBFLEET_* environment variable", n.Path(), f.Name)
			}
			if f.Help == "" {
				t.Errorf("%s --%s has no help", n.Path(), f.Name)
			}
		}
		for _, child := range n.Children {
			walk(child)
		}
	}
	walk(parser.Model.Node)
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "", "publish", "--help")
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for _, flag := range []string{"--queue", "--file", "--type", "--id", "--params", "--feature", "--priority", "--skip-invalid", "--print-ids", "$JOBFLEET_QUEUE"} {
		if !strings.Contains(out, flag) {
			t.Errorf("publish --help does not document %s:\n%s", flag, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown command", args: []string{"fly"}, want: "unexpected argument fly"},
		{name: "missing queue", args: []string{"publish", "--type", "x"}, want: "missing flags: --queue"},
		{name: "bad log level", args: []string{"--log-level", "loud", "version"}, want: "--log-level must be one of"},
		{name: "flag job without type", args: []string{"publish", "-q", "http://127.0.0.1:1/q", "--feature", "rows=1"}, want: "add --type"},
		{name: "type and file", args: []string{"publish", "-q", "http://127.0.0.1:1/q", "--type", "a", "--file", "x.json"}, want: "use one of them"},
		{name: "local without time", args: []string{"local", "--timeout", "0s"}, want: "--timeout must be positive"},
		{name: "local without workers", args: []string{"local", "--concurrency", "0"}, want: "--concurrency must be at least 1"},
		{name: "invalid job from flags", args: []string{"publish", "-q", "http://127.0.0.1:1/q", "--type", "a", "--feature", "rows=-1"}, want: "features.rows: invalid feature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCLI(t, "", tt.args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant a failure mentioning %q", code, stderr, tt.want)
			}
		})
	}
}

// TestDurationsInDaysAndWeeks checks that duration flags and their
// environment variables take days and weeks, as people write them.
func TestDurationsInDaysAndWeeks(t *testing.T) {
	t.Parallel()
	var cli CLI
	parser, err := newParser(&cli, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"predict", "eval", "--retrain-every", "7d", "--window=1w2d"}); err != nil {
		t.Fatal(err)
	}
	if got, want := cli.Predict.Eval.RetrainEvery, 7*24*time.Hour; got != want {
		t.Errorf("--retrain-every 7d = %v, want %v", got, want)
	}
	if got, want := cli.Predict.Eval.Window, 9*24*time.Hour; got != want {
		t.Errorf("--window 1w2d = %v, want %v", got, want)
	}
	if _, err := parser.Parse([]string{"predict", "eval", "--window", "30x"}); err == nil || !strings.Contains(err.Error(), "--window") {
		t.Errorf("--window 30x: %v, want an error naming the flag", err)
	}
}

// TestDurationEnvInDaysAndWeeks: the environment variables of duration
// flags take days and weeks too (not parallel: it sets the environment).
func TestDurationEnvInDaysAndWeeks(t *testing.T) {
	t.Setenv("JOBFLEET_PREDICT_RETRAIN_EVERY", "1w")
	t.Setenv("JOBFLEET_PREDICT_WINDOW", "30d")
	t.Setenv("JOBFLEET_LOCAL_TIMEOUT", "1d12h")
	for _, args := range [][]string{{"predict", "eval"}, {"local"}} {
		var cli CLI
		parser, err := newParser(&cli, &bytes.Buffer{}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parser.Parse(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		switch args[0] {
		case "predict":
			if got, want := cli.Predict.Eval.RetrainEvery, 7*24*time.Hour; got != want {
				t.Errorf("JOBFLEET_PREDICT_RETRAIN_EVERY=1w: %v, want %v", got, want)
			}
			if got, want := cli.Predict.Eval.Window, 30*24*time.Hour; got != want {
				t.Errorf("JOBFLEET_PREDICT_WINDOW=30d: %v, want %v", got, want)
			}
		case "local":
			if got, want := cli.Local.Timeout, 36*time.Hour; got != want {
				t.Errorf("JOBFLEET_LOCAL_TIMEOUT=1d12h: %v, want %v", got, want)
			}
		}
	}
	t.Setenv("JOBFLEET_PREDICT_WINDOW", "30x")
	var cli CLI
	parser, err := newParser(&cli, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"predict", "eval"}); err == nil || !strings.Contains(err.Error(), "--window") {
		t.Errorf("JOBFLEET_PREDICT_WINDOW=30x: %v, want an error naming the flag", err)
	}
}

// TestEmptyMapFlags: a map flag given empty means no entries, as a workflow
// template that always passes --feature and --label gives it.
func TestEmptyMapFlags(t *testing.T) {
	t.Parallel()
	var cli CLI
	parser, err := newParser(&cli, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"submit", "--queue", "q", "--bucket", "b", "--type", "t", "--feature=", "--label=", "--label=team=a,user=b", "--feature", "rows=2"}); err != nil {
		t.Fatal(err)
	}
	if len(cli.Submit.Feature) != 1 || cli.Submit.Feature["rows"] != 2 || len(cli.Submit.Label) != 2 || cli.Submit.Label["user"] != "b" {
		t.Errorf("features %v, labels %v", cli.Submit.Feature, cli.Submit.Label)
	}
	if _, err := parser.Parse([]string{"submit", "--queue", "q", "--bucket", "b", "--type", "t", "--label=team"}); err == nil {
		t.Error("--label=team (no value) was accepted")
	}
}

// TestSubmitFileRefusesJobFlags: a job read from a file is not also built
// from flags (only --id may rename it).
func TestSubmitFileRefusesJobFlags(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--type=t", "--params={}", "--feature=rows=1", "--priority=2", "--label=team=a"} {
		code, _, stderr := runCLI(t, "", "submit", "--queue", "q", "--bucket", "b", "--file", "-", flag)
		if code != exitInternal || !strings.Contains(stderr, "--file reads the job from a file") {
			t.Errorf("%s with --file: exit %d\n%s", flag, code, stderr)
		}
	}
}
