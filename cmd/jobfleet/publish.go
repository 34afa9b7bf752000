package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/awsclient"
)

// JobFlags build one job from flags, for publish and submit.
type JobFlags struct {
	Type     string             `name:"type" short:"t" env:"JOBFLEET_TYPE" help:"The job's registered job type: one job is built from the flags below."`
	ID       string             `name:"id" env:"JOBFLEET_ID" help:"Id of the job built from flags (default: a new UUIDv7). The id is the job's idempotency key."`
	Params   string             `name:"params" env:"JOBFLEET_PARAMS" placeholder:"JSON" help:"Parameters of the job built from flags, a JSON object handed to the job unchanged."`
	Feature  map[string]float64 `name:"feature" env:"JOBFLEET_FEATURE" mapsep:"," placeholder:"NAME=VALUE" help:"Feature of the job built from flags, for the memory predictor; repeat or separate with commas (rows=1e6,entities=200)."`
	Priority int                `name:"priority" env:"JOBFLEET_PRIORITY" default:"0" help:"Priority of the job built from flags, 0 (lowest) to 9."`
	Label    map[string]string  `name:"label" env:"JOBFLEET_LABEL" mapsep:"," placeholder:"KEY=VALUE" help:"Label of the job built from flags, carried to its state, events and run records (team=search,user=ana); repeat or separate with commas."`
}

// describesJob reports whether a flag other than --type describes a job.
func (f *JobFlags) describesJob() bool {
	return f.ID != "" || f.Params != "" || len(f.Feature) > 0 || f.Priority != 0 || len(f.Label) > 0
}

// PublishCmd publishes job messages.
type PublishCmd struct {
	Queue string `name:"queue" short:"q" env:"JOBFLEET_QUEUE" required:"" placeholder:"URL|NAME" help:"Intake queue: its URL, or its name to look the URL up."`

	File string `name:"file" short:"f" env:"JOBFLEET_FILE" type:"path" placeholder:"PATH" help:"Read jobs from a file: one JSON job, or JSON Lines with one job per line. '-' reads standard input. Without --file and --type, jobs are read as JSON Lines from standard input."`

	JobFlags `embed:""`

	SkipInvalid bool `name:"skip-invalid" env:"JOBFLEET_SKIP_INVALID" help:"Publish the valid jobs of the input and report the invalid ones, instead of publishing nothing when any job is invalid."`
	PrintIDs    bool `name:"print-ids" env:"JOBFLEET_PRINT_IDS" help:"Print the id of every published job on standard output."`
}

// Run publishes the jobs.
func (c *PublishCmd) Run(ctx context.Context, g *Globals) error {
	jobs, err := c.jobs(g.stdin, g.stderr)
	if err != nil {
		return err
	}
	if len(jobs) == 0 {
		return errors.New("no jobs in the input")
	}
	clients, err := awsclient.Load(ctx, 0)
	if err != nil {
		return err
	}
	url, err := queueURL(ctx, clients.SQS, c.Queue)
	if err != nil {
		return err
	}
	err = jobfleet.NewPublisher(clients.SQS, url).Publish(ctx, jobs...)
	failed := map[int]error{}
	var pubErr *jobfleet.PublishError
	if errors.As(err, &pubErr) {
		failed = pubErr.Failed
	} else if err != nil {
		return err
	}
	for i, job := range jobs {
		if err, ok := failed[i]; ok {
			g.log.Error().Str("job_id", job.ID).Err(err).Msg("job not published")
			continue
		}
		if c.PrintIDs {
			fmt.Fprintln(g.stdout, job.ID)
		}
	}
	g.log.Info().Int("published", len(jobs)-len(failed)).Int("failed", len(failed)).Str("queue", url).Msg("published jobs")
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d jobs were not published", len(failed), len(jobs))
	}
	return nil
}

// jobs reads the jobs to publish from the flags, a file or standard input.
func (c *PublishCmd) jobs(stdin io.Reader, warn io.Writer) ([]*jobfleet.Job, error) {
	if c.Type != "" {
		if c.File != "" {
			return nil, errors.New("--type builds one job from flags and --file reads jobs from a file: use one of them")
		}
		job, err := c.JobFlags.job()
		if err != nil {
			return nil, err
		}
		return []*jobfleet.Job{job}, nil
	}
	if c.describesJob() {
		return nil, errors.New("--id, --params, --feature, --priority and --label describe a job built from flags: add --type")
	}
	in, name := stdin, "standard input"
	if c.File != "" && c.File != "-" {
		f, err := os.Open(c.File)
		if err != nil {
			return nil, fmt.Errorf("reading jobs: %w", err)
		}
		defer f.Close()
		in, name = f, c.File
	}
	return readJobs(in, name, c.SkipInvalid, warn)
}

// job builds the job the flags describe.
func (c *JobFlags) job() (*jobfleet.Job, error) {
	id := c.ID
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("generating a job id: %w", err)
		}
		id = u.String()
	}
	job := &jobfleet.Job{Version: jobfleet.Version, ID: id, Type: c.Type, Features: c.Feature, Priority: c.Priority, Labels: c.Label}
	if c.Params != "" {
		job.Params = json.RawMessage(c.Params)
	}
	if err := job.Validate(); err != nil {
		return nil, err
	}
	return job, nil
}

// readJobs reads one JSON job, or JSON Lines. Every invalid line is
// reported; unless skipInvalid, any invalid line fails the whole input so
// that nothing is published from a file with mistakes.
func readJobs(r io.Reader, name string, skipInvalid bool, warn io.Writer) ([]*jobfleet.Job, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	// A file holding one pretty-printed job is a single JSON document.
	if job, err := jobfleet.Decode(data); err == nil {
		return []*jobfleet.Job{job}, nil
	}
	var jobs []*jobfleet.Job
	var problems []string
	seen := map[string]int{}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		job, err := jobfleet.Decode([]byte(line))
		if err == nil {
			if first, dup := seen[job.ID]; dup {
				err = fmt.Errorf("job id %q repeats line %d; ids are idempotency keys", job.ID, first)
			} else {
				seen[job.ID] = n + 1
			}
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: %v", name, n+1, err))
			continue
		}
		jobs = append(jobs, job)
	}
	if len(problems) > 0 {
		const show = 20
		msg := strings.Join(problems[:min(show, len(problems))], "\n  ")
		if len(problems) > show {
			msg += fmt.Sprintf("\n  ... and %d more", len(problems)-show)
		}
		if !skipInvalid {
			return nil, fmt.Errorf("%d invalid jobs, nothing published (use --skip-invalid to publish the rest):\n  %s", len(problems), msg)
		}
		fmt.Fprintf(warn, "jobfleet publish: skipping %d invalid jobs:\n  %s\n", len(problems), msg)
	}
	return jobs, nil
}

// queueURL resolves a queue name to its URL; URLs pass through.
func queueURL(ctx context.Context, client *sqs.Client, queue string) (string, error) {
	if strings.HasPrefix(queue, "https://") || strings.HasPrefix(queue, "http://") {
		return queue, nil
	}
	out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		return "", fmt.Errorf("looking up queue %q: %w", queue, err)
	}
	return aws.ToString(out.QueueUrl), nil
}
