package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/internal/jobview"
)

// Exit codes of submit --wait and wait.
const (
	exitFailed   = 1 // the job failed or was dead-lettered
	exitStopped  = 2 // the job was cancelled, or the wait timed out
	exitInternal = 3 // jobfleet could not tell: S3 or SQS failed, bad input
)

// StoreFlags locate jobfleet's state in S3.
type StoreFlags struct {
	Bucket string `name:"bucket" env:"JOBFLEET_BUCKET" required:"" help:"S3 bucket of jobfleet's job state."`
	Prefix string `name:"prefix" env:"JOBFLEET_PREFIX" default:"jobfleet" help:"Key prefix in the bucket."`
}

func (f StoreFlags) store(api contract.S3API) contract.Store {
	return contract.Store{S3: api, Bucket: f.Bucket, Prefix: f.Prefix}
}

// WaitFlags say how long and how to wait for a job.
type WaitFlags struct {
	Timeout    time.Duration `name:"timeout" env:"JOBFLEET_TIMEOUT" default:"0s" help:"Give up waiting after this long (exit 2); 0 waits for as long as the job takes."`
	Poll       time.Duration `name:"poll" env:"JOBFLEET_POLL" default:"15s" help:"Longest pause between two reads of the job's state; waiting starts at 1s and backs off to this."`
	OutputsDir string        `name:"outputs-dir" env:"JOBFLEET_WAIT_OUTPUTS_DIR" type:"path" placeholder:"DIR" help:"When the job ended, write its state to DIR/result.json and each key/value output to DIR/values/<key>."`
	Files      bool          `name:"download-files" env:"JOBFLEET_DOWNLOAD_FILES" help:"With --outputs-dir, also download the job's output files into DIR/files/."`
	JSON       bool          `name:"json" env:"JOBFLEET_JSON" help:"Print the final state as JSON instead of a summary."`
}

func (f WaitFlags) validate() error {
	switch {
	case f.Timeout < 0:
		return fmt.Errorf("--timeout must not be negative, got %s", f.Timeout)
	case f.Poll < time.Second:
		return fmt.Errorf("--poll must be at least 1s, got %s", f.Poll)
	case f.Files && f.OutputsDir == "":
		return errors.New("--download-files needs --outputs-dir")
	}
	return nil
}

// checkID refuses what cannot be a job id before it becomes an S3 key.
func checkID(id string) error {
	if !jobfleet.IDPattern.MatchString(id) {
		return fmt.Errorf("%q is not a job id: an id is 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", id)
	}
	return nil
}

// internal marks an error as jobfleet's own (exit 3).
func internal(err error) error {
	if err == nil {
		return nil
	}
	var exit *exitError
	if errors.As(err, &exit) {
		return err
	}
	return &exitError{code: exitInternal, err: err}
}

// SubmitCmd publishes one job and, with --wait, waits for it to end.
type SubmitCmd struct {
	Queue string `name:"queue" short:"q" env:"JOBFLEET_QUEUE" required:"" placeholder:"URL|NAME" help:"Intake queue: its URL, or its name to look the URL up."`
	StoreFlags
	File     string `name:"file" short:"f" env:"JOBFLEET_FILE" type:"path" placeholder:"PATH" help:"Read the job from a file holding one JSON job ('-': standard input), instead of building it from the flags below; --id still sets its id. Submitting an id jobfleet knows attaches to that job instead of running it again."`
	JobFlags `embed:""`
	Wait     bool `name:"wait" short:"w" env:"JOBFLEET_WAIT" help:"Wait for the job to end: exit 0 when it succeeded, 1 when it failed, 2 when it was cancelled or the wait timed out, 3 when jobfleet could not tell."`
	WaitFlags
}

// Run submits the job.
func (c *SubmitCmd) Run(ctx context.Context, g *Globals) error {
	if err := c.WaitFlags.validate(); err != nil {
		return internal(err)
	}
	job, err := c.job(g.stdin)
	if err != nil {
		return internal(err)
	}
	clients, err := awsclient.Load(ctx, 0)
	if err != nil {
		return internal(err)
	}
	store := c.store(clients.S3)
	cur, _, err := store.ReadRun(ctx, job.ID)
	switch {
	case err == nil:
		g.log.Info().Str("job_id", job.ID).Str("status", string(cur.Status)).Msg("jobfleet knows this job id: attaching to it instead of submitting it again")
	case errors.Is(err, contract.ErrNotFound):
		url, err := queueURL(ctx, clients.SQS, c.Queue)
		if err != nil {
			return internal(err)
		}
		if err := jobfleet.NewPublisher(clients.SQS, url).Publish(ctx, job); err != nil {
			return internal(err)
		}
		g.log.Info().Str("job_id", job.ID).Str("type", job.Type).Msg("submitted")
	default:
		return internal(err)
	}
	if !c.Wait {
		_, err := fmt.Fprintln(g.stdout, job.ID)
		return err
	}
	return waitFor(ctx, g, store, clients.S3, job.ID, c.WaitFlags)
}

func (c *SubmitCmd) job(stdin io.Reader) (*jobfleet.Job, error) {
	if c.File != "" {
		// --id still names the job read from the file.
		flags := c.JobFlags
		flags.ID = ""
		if flags.Type != "" || flags.describesJob() {
			return nil, errors.New("--file reads the job from a file and --type, --params, --feature, --priority and --label build it from flags: use one of them")
		}
		in := stdin
		if c.File != "-" {
			f, err := os.Open(c.File)
			if err != nil {
				return nil, fmt.Errorf("reading the job: %w", err)
			}
			defer f.Close()
			in = f
		}
		data, err := io.ReadAll(io.LimitReader(in, jobfleet.MaxMessageBytes+1))
		if err != nil {
			return nil, fmt.Errorf("reading the job: %w", err)
		}
		job, err := jobfleet.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.File, err)
		}
		if c.ID != "" {
			job.ID = c.ID
		}
		return job, job.Validate()
	}
	if c.Type == "" {
		return nil, errors.New("say which job to submit: --type (and the flags that build a job) or --file")
	}
	return c.JobFlags.job()
}

// StatusCmd prints a job's state.
type StatusCmd struct {
	StoreFlags
	ID   string `arg:"" name:"id" help:"Job id."`
	JSON bool   `name:"json" env:"JOBFLEET_JSON" help:"Print the job's state as JSON (the format of <prefix>/jobs/<id>/run.json's public part)."`
}

// Run prints the state.
func (c *StatusCmd) Run(ctx context.Context, g *Globals) error {
	if err := checkID(c.ID); err != nil {
		return err
	}
	clients, err := awsclient.Load(ctx, 0)
	if err != nil {
		return err
	}
	cur, _, err := c.store(clients.S3).ReadRun(ctx, c.ID)
	if errors.Is(err, contract.ErrNotFound) {
		return fmt.Errorf("jobfleet has no job %q: it was never submitted, or the dispatcher has not received it yet", c.ID)
	}
	if err != nil {
		return err
	}
	return jobview.Print(g.stdout, &cur.JobState, c.JSON)
}

// WaitCmd waits for a job to end.
type WaitCmd struct {
	StoreFlags
	ID string `arg:"" name:"id" help:"Job id."`
	WaitFlags
}

// Run waits. The exit code says how the job ended: 0 succeeded, 1 failed
// or dead-lettered, 2 cancelled or timed out, 3 jobfleet could not tell.
func (c *WaitCmd) Run(ctx context.Context, g *Globals) error {
	if err := c.WaitFlags.validate(); err != nil {
		return internal(err)
	}
	if err := checkID(c.ID); err != nil {
		return internal(err)
	}
	clients, err := awsclient.Load(ctx, 0)
	if err != nil {
		return internal(err)
	}
	return waitFor(ctx, g, c.store(clients.S3), clients.S3, c.ID, c.WaitFlags)
}

// waitFor waits for a job to end and reports how it ended: its state, its
// outputs, and the exit code.
func waitFor(ctx context.Context, g *Globals, store contract.Store, api *s3.Client, id string, flags WaitFlags) error {
	if flags.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flags.Timeout)
		defer cancel()
	}
	var last jobfleet.Status
	st, err := jobview.Wait(ctx, store, id, flags.Poll, func(st *jobfleet.JobState) {
		last = st.Status
		g.log.Info().Str("job_id", id).Str("status", string(st.Status)).Int("attempt", st.Attempt).Msg("job " + string(st.Status))
	})
	if errors.Is(err, context.DeadlineExceeded) && flags.Timeout > 0 {
		return &exitError{code: exitStopped, err: fmt.Errorf("job %s has not ended after %s (last status: %s)", id, flags.Timeout, cmp.Or(string(last), "unknown"))}
	}
	if err != nil {
		return internal(err)
	}
	if flags.OutputsDir != "" {
		if err := jobview.WriteOutputs(ctx, store, api, st, flags.OutputsDir, flags.Files); err != nil {
			return internal(err)
		}
	}
	if err := jobview.Print(g.stdout, st, flags.JSON); err != nil {
		return internal(err)
	}
	switch st.Status {
	case jobfleet.StatusSucceeded:
		return nil
	case jobfleet.StatusCancelled:
		return &exitError{code: exitStopped, err: fmt.Errorf("job %s was cancelled: %s", st.JobID, st.Reason)}
	}
	return &exitError{code: exitFailed, err: fmt.Errorf("job %s %s: %s", st.JobID, st.Status, st.Reason)}
}

// CancelCmd cancels a job.
type CancelCmd struct {
	StoreFlags
	ID     string `arg:"" name:"id" help:"Job id."`
	Reason string `name:"reason" env:"JOBFLEET_REASON" default:"cancelled by jobfleet cancel" help:"Why, recorded in the job's state."`
}

// Run cancels the job: a queued job never runs, a running job's worker
// stops it within seconds, and nothing of it is retried.
func (c *CancelCmd) Run(ctx context.Context, g *Globals) error {
	if err := checkID(c.ID); err != nil {
		return err
	}
	clients, err := awsclient.Load(ctx, 0)
	if err != nil {
		return err
	}
	cur, err := c.store(clients.S3).Cancel(ctx, c.ID, c.Reason, time.Now())
	if errors.Is(err, contract.ErrEnded) {
		_, err := fmt.Fprintf(g.stdout, "job %s had ended already: %s\n", c.ID, cur.Status)
		return err
	}
	if err != nil {
		return err
	}
	if cur.Run == "" {
		_, err = fmt.Fprintf(g.stdout, "job %s cancelled before jobfleet received it: its message, if already sent, will not run\n", c.ID)
		return err
	}
	_, err = fmt.Fprintf(g.stdout, "job %s cancelled (attempt %d); a running attempt stops within seconds\n", c.ID, cur.Attempt)
	return err
}

// ListCmd lists jobs.
type ListCmd struct {
	StoreFlags
	Type   string            `name:"type" short:"t" env:"JOBFLEET_TYPE" help:"Only jobs of this type."`
	Status []string          `name:"status" short:"s" env:"JOBFLEET_STATUS" sep:"," help:"Only jobs in these statuses (queued, sized, running, succeeded, failed, dead-lettered, cancelled)."`
	Label  map[string]string `name:"label" short:"l" env:"JOBFLEET_LABEL" mapsep:"," placeholder:"KEY=VALUE" help:"Only jobs with these labels."`
	Limit  int               `name:"limit" short:"n" env:"JOBFLEET_LIMIT" default:"20" help:"Show the most recently updated jobs, at most this many; 0 shows all."`
	JSON   bool              `name:"json" env:"JOBFLEET_JSON" help:"Print JSON Lines, one job state per line."`
}

// Run lists the jobs, most recently updated first. It reads every job's
// state: one S3 GET per job the bucket holds.
func (c *ListCmd) Run(ctx context.Context, g *Globals) error {
	if c.Limit < 0 {
		return fmt.Errorf("--limit must not be negative, got %d", c.Limit)
	}
	for _, s := range c.Status {
		if !slices.Contains(jobfleet.Statuses, jobfleet.Status(s)) {
			return fmt.Errorf("--status %q: not a status; statuses are %v", s, jobfleet.Statuses)
		}
	}
	clients, err := awsclient.Load(ctx, 0)
	if err != nil {
		return err
	}
	store := c.store(clients.S3)
	ids := make(chan string)
	var (
		mu     sync.Mutex
		states []*jobfleet.JobState
		first  error
		wg     sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for id := range ids {
				cur, _, err := store.ReadRun(ctx, id)
				mu.Lock()
				switch {
				case err == nil && c.match(&cur.JobState):
					states = append(states, &cur.JobState)
				case err != nil && !errors.Is(err, contract.ErrNotFound) && first == nil:
					first = err
				}
				mu.Unlock()
			}
		})
	}
	err = store.JobIDs(ctx, clients.S3, func(id string) error {
		select {
		case ids <- id:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(ids)
	wg.Wait()
	if err == nil {
		err = first
	}
	if err != nil {
		return err
	}
	slices.SortFunc(states, func(a, b *jobfleet.JobState) int {
		return cmp.Or(updated(b).Compare(updated(a)), strings.Compare(a.JobID, b.JobID))
	})
	if c.Limit > 0 && len(states) > c.Limit {
		states = states[:c.Limit]
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		for _, st := range states {
			if err := enc.Encode(st); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tATTEMPT\tUPDATED\tLABELS")
	for _, st := range states {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", st.JobID, cmp.Or(st.Type, "-"), st.Status, st.Attempt, updated(st).Local().Format(time.DateTime), jobview.FormatMap(st.Labels))
	}
	return tw.Flush()
}

func (c *ListCmd) match(st *jobfleet.JobState) bool {
	if c.Type != "" && st.Type != c.Type {
		return false
	}
	if len(c.Status) > 0 && !slices.Contains(c.Status, string(st.Status)) {
		return false
	}
	for k, v := range c.Label {
		if st.Labels[k] != v {
			return false
		}
	}
	return true
}

func updated(st *jobfleet.JobState) time.Time {
	if st.UpdatedAt.IsZero() {
		return st.CreatedAt
	}
	return st.UpdatedAt
}
