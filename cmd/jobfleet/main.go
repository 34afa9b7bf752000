// Command jobfleet runs queued batch and ML jobs on Kubernetes: it publishes
// job messages, dispatches them to KEDA ScaledJobs on Karpenter pools, runs
// them inside pods, trains the memory predictor, and runs the whole system on
// one machine for trying it out.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"
	// Embedded time zone data, for an image with no /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"
	// CA roots for when the system has none (the image's empty base).
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/jobfleet/jobfleet/internal/logging"
	"github.com/jobfleet/jobfleet/internal/units"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Globals are the flags every subcommand takes.
type Globals struct {
	LogLevel  string `name:"log-level" env:"JOBFLEET_LOG_LEVEL" enum:"debug,info,warn,error" default:"info" help:"Log level: debug, info, warn or error."`
	LogFormat string `name:"log-format" env:"JOBFLEET_LOG_FORMAT" enum:"auto,json,console" default:"auto" help:"Log format: json, console, or auto (console on a terminal, JSON otherwise)."`

	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	log    zerolog.Logger
}

// CLI is jobfleet's command line.
type CLI struct {
	Globals

	Publish    PublishCmd    `cmd:"" help:"Publish job messages to the intake queue."`
	Submit     SubmitCmd     `cmd:"" help:"Submit one job and, with --wait, wait for it to end (exit 0 succeeded, 1 failed, 2 cancelled or timed out, 3 jobfleet error)."`
	Status     StatusCmd     `cmd:"" help:"Print a job's state: status, attempts, where they ran, memory, outputs."`
	Wait       WaitCmd       `cmd:"" help:"Wait for a job to end (exit 0 succeeded, 1 failed, 2 cancelled or timed out, 3 jobfleet error)."`
	Cancel     CancelCmd     `cmd:"" help:"Cancel a job: a queued job never runs, a running one stops within seconds, nothing is retried."`
	List       ListCmd       `cmd:"" help:"List recent jobs, filtered by type, status or label."`
	Dispatcher DispatcherCmd `cmd:"" help:"Run the dispatcher: size every job from intake and route it to its class's queue and ScaledJob."`
	Worker     WorkerCmd     `cmd:"" help:"Run jobs from a class queue: the entrypoint of every job pod (jobfleet worker [flags] -- <command>)."`
	NodePools  NodePoolsCmd  `cmd:"" name:"nodepools" help:"Render the Karpenter NodePools and EC2NodeClasses of the registry's pools."`
	Predict    PredictCmd    `cmd:"" help:"Train and evaluate the memory predictor."`
	Simulate   SimulateCmd   `cmd:"" help:"Replay a trace of jobs under policies (sizing, spot share, interruptions, checkpoints, Fargate or Karpenter) and compare what each costs and risks."`
	Loadtest   LoadtestCmd   `cmd:"" help:"Measure a dispatcher: jobs per second, latency, SQS calls per job, lost and duplicated jobs, against a plain receive-send-delete loop."`
	Local      LocalCmd      `cmd:"" help:"Run all of jobfleet on this machine: the queues, the dispatcher and predictor, workers as local processes, and a demo workload with a spot interruption."`
	DemoJob    DemoJobCmd    `cmd:"" name:"demo-job" hidden:"" help:"Run a demo job (what the demo's job types run)."`
	Stack      StackCmd      `cmd:"" help:"Start the local SQS emulator and S3 server, print their endpoints, and wait."`
	Install    InstallCmd    `cmd:"" hidden:"" help:"Copy the jobfleet binary into a directory (the job pods' init container)."`
	Version    VersionCmd    `cmd:"" help:"Print jobfleet's version."`
}

const description = `jobfleet runs queued batch and ML jobs on Kubernetes cheaply and without losing work.

Producers publish JSON job messages to an SQS intake queue. The dispatcher sizes
each job with a memory predictor trained on past runs and routes it to a KEDA
ScaledJob on a Karpenter pool that scales to zero; the worker runs it inside its
pod, checkpoints to S3, and reruns interrupted work from its last checkpoint.

Every flag can also be set with the JOBFLEET_* environment variable shown in its
help. AWS settings come from the SDK's standard environment and files
(AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3, ...).`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run parses args and runs the chosen command, returning the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			exit, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			code = int(exit)
		}
	}()
	var cli CLI
	parser, err := newParser(&cli, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "jobfleet: %v\n", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		var parseErr *kong.ParseError
		if errors.As(err, &parseErr) {
			fmt.Fprintf(stderr, "jobfleet: %v\n", err)
			_ = parseErr.Context.PrintUsage(true)
			// submit and wait keep 2 for a cancelled or timed-out job.
			if node := parseErr.Context.Selected(); node != nil && (node.Name == "submit" || node.Name == "wait") {
				return exitInternal
			}
			return 2
		}
		fmt.Fprintf(stderr, "jobfleet: %v\n", err)
		return 2
	}
	cli.stdin, cli.stdout, cli.stderr = stdin, stdout, stderr
	cli.log, err = logging.New(stderr, logging.Config{Level: cli.LogLevel, Format: cli.LogFormat})
	if err != nil {
		fmt.Fprintf(stderr, "jobfleet: %v\n", err)
		return 2
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(&cli.Globals); err != nil {
		fmt.Fprintf(stderr, "jobfleet %s: %v\n", kctx.Command(), err)
		var exit *exitError
		if errors.As(err, &exit) {
			return exit.code
		}
		return 1
	}
	return 0
}

func newParser(cli *CLI, stdout, stderr io.Writer) (*kong.Kong, error) {
	exit := func(code int) { panic(exitPanic(code)) }
	return kong.New(cli,
		kong.Name("jobfleet"),
		kong.Description(description),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(exit),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
		kong.Vars{"version": version},
		kong.TypeMapper(reflect.TypeFor[time.Duration](), durationMapper),
		kong.TypeMapper(reflect.TypeFor[map[string]string](), emptyMapMapper(reflect.TypeFor[map[string]string]())),
		kong.TypeMapper(reflect.TypeFor[map[string]float64](), emptyMapMapper(reflect.TypeFor[map[string]float64]())),
	)
}

// emptyMapMapper reads a map flag as kong does, except that an empty value
// (--label= or JOBFLEET_LABEL="") means no entries: a workflow template
// passes every flag, empty or not.
func emptyMapMapper(typ reflect.Type) kong.MapperFunc {
	next := kong.NewRegistry().RegisterDefaults().ForType(typ)
	return func(ctx *kong.DecodeContext, target reflect.Value) error {
		if t := ctx.Scan.Peek(); t.IsValue() {
			if s, ok := t.Value.(string); ok && strings.TrimSpace(s) == "" {
				ctx.Scan.Pop()
				if target.IsNil() {
					target.Set(reflect.MakeMap(typ))
				}
				return nil
			}
		}
		return next.Decode(ctx, target)
	}
}

// durationMapper reads every duration flag and environment variable as
// people write them: Go's units (90s, 1h30m) and days and weeks (7d, 1w).
var durationMapper = kong.MapperFunc(func(ctx *kong.DecodeContext, target reflect.Value) error {
	var s string
	if err := ctx.Scan.PopValueInto("duration", &s); err != nil {
		return err
	}
	d, err := units.ParseDuration(s)
	if err != nil {
		return err
	}
	target.SetInt(int64(d))
	return nil
})

// exitPanic stops parsing after --help; run recovers it.
type exitPanic int

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run(g *Globals) error {
	_, err := fmt.Fprintf(g.stdout, "jobfleet %s\n", version)
	return err
}
