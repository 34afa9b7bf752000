package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/internal/localstack"
	"github.com/jobfleet/jobfleet/loadtest"
)

// LoadtestCmd measures a dispatcher.
type LoadtestCmd struct {
	Local             bool               `name:"local" env:"JOBFLEET_LOADTEST_LOCAL" help:"Run against the embedded stack: an SQS emulator and a dispatcher process started here."`
	Intake            string             `name:"intake" env:"JOBFLEET_INTAKE" placeholder:"URL" help:"Intake queue of the dispatcher under test (not with --local)."`
	ClassPrefix       string             `name:"class-prefix" env:"JOBFLEET_CLASS_PREFIX" default:"jobfleet" help:"Class queue prefix of the dispatcher under test; its class queues are drained to count the jobs."`
	DispatcherMetrics string             `name:"dispatcher-metrics" env:"JOBFLEET_DISPATCHER_METRICS" placeholder:"URL" help:"The dispatcher's /metrics, to count its SQS calls (not with --local)."`
	Jobs              int                `name:"jobs" env:"JOBFLEET_LOADTEST_JOBS" default:"20000" help:"Jobs to publish."`
	Rate              float64            `name:"rate" env:"JOBFLEET_LOADTEST_RATE" default:"0" help:"Jobs per second to publish; 0 publishes all before the dispatcher starts, to measure its greatest rate."`
	Mix               map[string]float64 `name:"mix" env:"JOBFLEET_LOADTEST_MIX" mapsep:"," placeholder:"TYPE=WEIGHT" help:"Job types to publish and their weights (default with --local: lt-small=4,lt-medium=3,lt-bulk=2,lt-gpu=1)."`
	Chaos             bool               `name:"chaos" env:"JOBFLEET_LOADTEST_CHAOS" help:"Kill the dispatcher with SIGKILL a third of the way through and start it again (with --local)."`
	JSON              bool               `name:"json" env:"JOBFLEET_LOADTEST_JSON" help:"Print one JSON object."`
	Report            string             `name:"report" env:"JOBFLEET_LOADTEST_REPORT" type:"path" placeholder:"FILE" help:"Write an HTML page with throughput and latency plots."`
	Timeout           time.Duration      `name:"timeout" env:"JOBFLEET_LOADTEST_TIMEOUT" default:"10m" help:"Longest wait for the jobs to arrive."`
}

// Run runs the load test.
func (c *LoadtestCmd) Run(ctx context.Context, g *Globals) error {
	var api *sqs.Client
	var target loadtest.Target
	cfg := loadtest.Config{Jobs: c.Jobs, Rate: c.Rate, Mix: c.Mix, Chaos: c.Chaos, Timeout: c.Timeout, ClassPrefix: c.ClassPrefix, Intake: c.Intake}
	if !c.JSON {
		cfg.Progress = g.stderr
	}
	if c.Local {
		if c.Intake != "" || c.DispatcherMetrics != "" {
			return errors.New("--local runs its own stack: drop --intake and --dispatcher-metrics")
		}
		if len(cfg.Mix) == 0 {
			cfg.Mix = loadtest.LocalMix()
		}
		server, err := localstack.StartSQS(ctx, localstack.SQSOptions{Log: g.stderr})
		if err != nil {
			return err
		}
		defer server.Stop()
		s3Server, err := localstack.StartS3(0)
		if err != nil {
			return err
		}
		defer s3Server.Stop()
		s3Client := s3.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")},
			func(o *s3.Options) { o.BaseEndpoint = aws.String(s3Server.Endpoint); o.UsePathStyle = true })
		if _, err := s3Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("loadtest")}); err != nil {
			return fmt.Errorf("creating the bucket: %w", err)
		}
		api = sqs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")},
			func(o *sqs.Options) { o.BaseEndpoint = aws.String(server.Endpoint) })
		urls := map[string]string{}
		for _, name := range []string{"loadtest-intake", "loadtest-dead-letter", "loadtest-records"} {
			out, err := api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
			if err != nil {
				return fmt.Errorf("creating queue %s: %w", name, err)
			}
			urls[name] = aws.ToString(out.QueueUrl)
		}
		dir, err := os.MkdirTemp("", "jobfleet-loadtest-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		registry := filepath.Join(dir, "jobtypes.yaml")
		if err := os.WriteFile(registry, []byte(loadtest.LocalRegistry), 0o644); err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.Intake, cfg.ClassPrefix = urls["loadtest-intake"], "lt"
		target = &loadtest.Process{
			Binary: self,
			Args: []string{"--log-level", "warn", "--no-kubernetes", "--intake", cfg.Intake, "--dead-letter", urls["loadtest-dead-letter"],
				"--records", urls["loadtest-records"], "--bucket", "loadtest", "--registry", registry, "--class-prefix", cfg.ClassPrefix,
				"--intake-visibility", "15s", "--no-retrain"},
			Env: []string{"AWS_ENDPOINT_URL_SQS=" + server.Endpoint, "AWS_ENDPOINT_URL_S3=" + s3Server.Endpoint,
				"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local"},
			Output: os.Stderr,
		}
	} else {
		if c.Intake == "" {
			return errors.New("give --intake (and --dispatcher-metrics), or --local")
		}
		if c.Chaos {
			return errors.New("--chaos kills the dispatcher, which needs --local")
		}
		if len(cfg.Mix) == 0 {
			return errors.New("--mix is required: the job types registered with the dispatcher under test")
		}
		clients, err := awsclient.Load(ctx, 0)
		if err != nil {
			return err
		}
		api, target = clients.SQS, &loadtest.Remote{MetricsURL: c.DispatcherMetrics}
	}
	res, err := loadtest.Run(ctx, api, target, cfg)
	if err != nil {
		return err
	}
	if c.Report != "" {
		if err := writeFile(c.Report, func(w io.Writer) error { return loadtest.WriteReport(w, res) }); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if c.JSON {
		out := *res
		out.Timeline, out.CeilingTimeline = nil, nil
		if err := json.NewEncoder(g.stdout).Encode(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.stdout, "%d jobs: %.0f jobs/s dispatched (plain loop %.0f/s, %.0f%%), %.3f SQS calls per job, p50 %.0f ms p99 %.0f ms, %d lost, %d duplicated%s\n",
			res.Jobs, res.DispatchedPerSec, res.CeilingPerSec, 100*res.DispatchedPerSec/max(res.CeilingPerSec, 1), res.SQSCallsPerJob,
			res.P50LatencyMs, res.P99LatencyMs, res.Lost, res.Duplicated, strings.Repeat(", restarted", res.Restarts))
	}
	if res.Lost > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d jobs lost", res.Lost)}
	}
	return nil
}
