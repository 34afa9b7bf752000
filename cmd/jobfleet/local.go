package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/term"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/demo"
	"github.com/jobfleet/jobfleet/internal/local"
)

// LocalCmd runs the embedded default.
type LocalCmd struct {
	Jobs        int           `name:"jobs" env:"JOBFLEET_LOCAL_JOBS" default:"24" help:"Demo jobs to publish (0 publishes none)."`
	Serve       bool          `name:"serve" env:"JOBFLEET_LOCAL_SERVE" help:"Keep running after the demo, for jobs published with jobfleet publish."`
	Interrupt   bool          `name:"interrupt" env:"JOBFLEET_LOCAL_INTERRUPT" default:"true" negatable:"" help:"Simulate a spot interruption halfway through the demo."`
	Concurrency int           `name:"concurrency" env:"JOBFLEET_LOCAL_CONCURRENCY" default:"3" help:"Most worker processes at once."`
	SQSPort     int           `name:"sqs-port" env:"JOBFLEET_SQS_PORT" default:"0" help:"Loopback port of the SQS emulator (0 picks a free one)."`
	S3Port      int           `name:"s3-port" env:"JOBFLEET_S3_PORT" default:"0" help:"Loopback port of the S3 server (0 picks a free one)."`
	Timeout     time.Duration `name:"timeout" env:"JOBFLEET_LOCAL_TIMEOUT" default:"10m" help:"Wait this long for the demo's jobs; those not finished by then count as lost (e.g. 30m for --jobs 300)."`
	RecordsDir  string        `name:"records-dir" env:"JOBFLEET_LOCAL_RECORDS_DIR" type:"path" placeholder:"DIR" help:"Also write the demo's run records here (JSON Lines under dt=YYYY-MM-DD/), for jobfleet predict train --records and jobfleet simulate --trace."`
}

// Validate rejects settings that cannot work, naming the flag.
func (c *LocalCmd) Validate() error {
	switch {
	case c.Jobs < 0:
		return fmt.Errorf("--jobs must be 0 or more, got %d", c.Jobs)
	case c.Concurrency < 1:
		return fmt.Errorf("--concurrency must be at least 1, got %d", c.Concurrency)
	case c.Timeout <= 0:
		return fmt.Errorf("--timeout must be positive, got %s", c.Timeout)
	}
	return nil
}

// Run runs the demo.
func (c *LocalCmd) Run(ctx context.Context, g *Globals) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the jobfleet binary: %w", err)
	}
	progress := false
	if f, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		progress = true
	}
	fmt.Fprintln(g.stdout, "jobfleet local: starting the SQS emulator, S3, the dispatcher with its predictor, and a local executor")
	sum, err := local.Run(ctx, local.Options{
		Jobs: c.Jobs, Serve: c.Serve, Interrupt: c.Interrupt, Concurrency: c.Concurrency, Timeout: c.Timeout,
		SQSPort: c.SQSPort, S3Port: c.S3Port, Binary: self, Out: g.stdout, Log: g.log, Progress: progress,
	})
	if err != nil {
		return err
	}
	if c.RecordsDir != "" {
		if err := writeRecords(c.RecordsDir, sum.Records); err != nil {
			return fmt.Errorf("--records-dir: %w", err)
		}
	}
	if c.Jobs > 0 {
		sum.Print(g.stdout)
		if sum.Lost > 0 {
			return &exitError{code: 1, err: fmt.Errorf("%d jobs lost: not finished within --timeout %s", sum.Lost, c.Timeout)}
		}
	}
	return nil
}

// DemoJobCmd runs one of the demo jobs: what the demo's job types run.
type DemoJobCmd struct {
	Kind string `arg:"" enum:"export,aggregate,train" help:"Which demo job."`
}

// Run runs it.
func (c *DemoJobCmd) Run(ctx context.Context) error {
	return demo.Run(ctx, c.Kind)
}

// writeRecords writes run records as JSON Lines, one file per day of their
// end, as the dispatcher stores them.
func writeRecords(dir string, records []jobfleet.RunRecord) error {
	byDay := map[string][]jobfleet.RunRecord{}
	for _, r := range records {
		day := r.EndedAt.UTC().Format("2006-01-02")
		byDay[day] = append(byDay[day], r)
	}
	for day, rs := range byDay {
		sub := filepath.Join(dir, "dt="+day)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		err := writeFile(filepath.Join(sub, "local.jsonl"), func(w io.Writer) error {
			enc := json.NewEncoder(w)
			for _, r := range rs {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
