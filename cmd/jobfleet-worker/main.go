// Command jobfleet-worker is the small build of jobfleet that runs inside
// job pods: `worker -- <command>` and `install DIR`, as the full jobfleet
// binary runs them, without the dispatcher's Kubernetes client, the
// predictor or the local stack. The image ships it as /jobfleet-worker; the
// init container copies it into each pod as /opt/jobfleet/jobfleet.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	// Embedded time zone data, for an image with no /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/alecthomas/kong"
	// CA roots for when the system has none (the image's empty base).
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/jobfleet/jobfleet/internal/logging"
	"github.com/jobfleet/jobfleet/internal/workercli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type cli struct {
	LogLevel  string `name:"log-level" env:"JOBFLEET_LOG_LEVEL" enum:"debug,info,warn,error" default:"info" help:"Log level: debug, info, warn or error."`
	LogFormat string `name:"log-format" env:"JOBFLEET_LOG_FORMAT" enum:"auto,json,console" default:"auto" help:"Log format: json, console, or auto."`

	Worker  workerCmd  `cmd:"" help:"Run jobs from a class queue: the entrypoint of every job pod (jobfleet worker -- <command>)."`
	Install installCmd `cmd:"" help:"Copy this binary into a directory (the job pods' init container)."`
	Version struct{}   `cmd:"" help:"Print the version."`
}

type workerCmd struct {
	Command []string `arg:"" passthrough:"" name:"command" help:"The job's command and its arguments, after --."`
}

func (c *workerCmd) Help() string { return workercli.Help() }

type installCmd struct {
	Dir string `arg:"" name:"dir" help:"Directory to copy the binary into."`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c cli
	parser, err := kong.New(&c, kong.Name("jobfleet"), kong.Writers(stdout, stderr), kong.Exit(func(int) {}))
	if err != nil {
		fmt.Fprintf(stderr, "jobfleet: %v\n", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "jobfleet: %v\n", err)
		return 2
	}
	log, err := logging.New(stderr, logging.Config{Level: c.LogLevel, Format: c.LogFormat})
	if err != nil {
		fmt.Fprintf(stderr, "jobfleet: %v\n", err)
		return 2
	}
	switch kctx.Command() {
	case "worker <command>":
		err = workercli.RunWorker(ctx, c.Worker.Command, log, stdout, stderr)
	case "install <dir>":
		err = workercli.Install(c.Install.Dir, log)
	case "version":
		fmt.Fprintf(stdout, "jobfleet %s (worker build)\n", version)
	default:
		err = errors.New("usage: jobfleet worker -- <command> | jobfleet install DIR")
	}
	if err != nil {
		fmt.Fprintf(stderr, "jobfleet %s: %v\n", kctx.Command(), err)
		return 1
	}
	return 0
}
