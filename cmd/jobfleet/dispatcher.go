package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/dispatcher/interruption"
	"github.com/jobfleet/jobfleet/internal/awsclient"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/jobtype"
	"github.com/jobfleet/jobfleet/predictor"
)

// snsTopicARN is what an SNS topic's ARN looks like, in any partition.
var snsTopicARN = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$`)

// DispatcherCmd runs the dispatcher.
type DispatcherCmd struct {
	Intake         string `name:"intake" env:"JOBFLEET_INTAKE" required:"" placeholder:"URL" help:"Intake queue producers publish to."`
	DeadLetter     string `name:"dead-letter" env:"JOBFLEET_DEAD_LETTER" required:"" placeholder:"URL" help:"Dead-letter queue for jobs that cannot run."`
	Records        string `name:"records" env:"JOBFLEET_RECORDS" required:"" placeholder:"URL" help:"Queue the workers send run records to."`
	AttributeLabel string `name:"attribute-label" env:"JOBFLEET_ATTRIBUTE_LABEL" default:"team" help:"Job label the cost metrics (attempt seconds, allocated and unused byte-seconds) are attributed by; at most 100 of its values are kept apart."`
	EventsTopic    string `name:"events-topic" env:"JOBFLEET_EVENTS_TOPIC" placeholder:"ARN" help:"SNS topic that gets one completion event per job end, from the dispatcher and the workers; empty publishes none."`
	Bucket         string `name:"bucket" env:"JOBFLEET_BUCKET" required:"" help:"S3 bucket of checkpoints, claims and run records."`
	Prefix         string `name:"prefix" env:"JOBFLEET_PREFIX" default:"jobfleet" help:"Key prefix in the bucket."`
	Registry       string `name:"registry" env:"JOBFLEET_REGISTRY" required:"" type:"existingfile" placeholder:"FILE" help:"Job types and pools (YAML)."`

	ClassPrefix    string        `name:"class-prefix" env:"JOBFLEET_CLASS_PREFIX" default:"jobfleet" help:"Start of every class queue and ScaledJob name."`
	Kubernetes     bool          `name:"kubernetes" env:"JOBFLEET_KUBERNETES" default:"true" negatable:"" help:"Manage KEDA ScaledJobs; --no-kubernetes only routes jobs to class queues (for load tests and local runs)."`
	Namespace      string        `name:"namespace" env:"JOBFLEET_NAMESPACE" default:"jobfleet" help:"Namespace of the ScaledJobs and job pods."`
	Kubeconfig     string        `name:"kubeconfig" env:"JOBFLEET_KUBECONFIG,KUBECONFIG" type:"path" help:"Kubeconfig file; default: the in-cluster service account, else ~/.kube/config."`
	WorkerImage    string        `name:"worker-image" env:"JOBFLEET_WORKER_IMAGE" placeholder:"IMAGE" help:"jobfleet's image (make image PUSH=...), whose /jobfleet-worker an init container copies into the pods of command-mode job types; required with --kubernetes."`
	ServiceAccount string        `name:"service-account" env:"JOBFLEET_SERVICE_ACCOUNT" default:"jobfleet-worker" help:"Service account of job pods (SQS and S3 access through IRSA)."`
	TriggerAuth    string        `name:"trigger-auth" env:"JOBFLEET_TRIGGER_AUTH" help:"KEDA TriggerAuthentication for the SQS triggers; default: KEDA's own identity (identityOwner operator)."`
	Polling        time.Duration `name:"polling-interval" env:"JOBFLEET_POLLING_INTERVAL" default:"10s" help:"How often KEDA checks each class queue."`

	Retrain         bool          `name:"retrain" env:"JOBFLEET_RETRAIN" default:"true" negatable:"" help:"Have the leader retrain the model from the stored run records every --retrain-every and write it to --model (with --model); --no-retrain never retrains."`
	RetrainEvery    time.Duration `name:"retrain-every" env:"JOBFLEET_RETRAIN_EVERY" default:"24h" help:"How often the leader retrains the model."`
	RetrainWindow   time.Duration `name:"retrain-window" env:"JOBFLEET_RETRAIN_WINDOW" default:"720h" help:"Retrain on the run records of this last period."`
	RetrainFeatures []string      `name:"retrain-features" env:"JOBFLEET_RETRAIN_FEATURES" sep:"," placeholder:"NAME,..." help:"Job features the retrained model reads, most telling first; default all the run records carry, in the order the model finds best (up to four)."`
	RetrainGroupBy  []string      `name:"retrain-group-by" env:"JOBFLEET_RETRAIN_GROUP_BY" sep:"," placeholder:"LABEL,..." help:"Job labels (user, dataset) the retrained model groups runs by, as strings, between the type and the features."`
	RecordsFlush    time.Duration `name:"records-flush" env:"JOBFLEET_RECORDS_FLUSH" default:"1m" help:"Longest a consumed run record waits before the batch it is in is stored in S3 (at most 1000 records a file)."`
	Model           string        `name:"model" env:"JOBFLEET_MODEL" placeholder:"PATH|s3://BUCKET/KEY" help:"Memory model to size jobs with, reloaded when it changes; without one, jobs get their type's default."`
	ModelReload     time.Duration `name:"model-reload" env:"JOBFLEET_MODEL_RELOAD" default:"1m" help:"How often to check for a new model."`

	Receivers        int           `name:"receivers" env:"JOBFLEET_RECEIVERS" default:"4" help:"Concurrent long-poll receivers on intake."`
	MaxInFlight      int           `name:"max-in-flight" env:"JOBFLEET_MAX_IN_FLIGHT" default:"1000" help:"Most messages held between receiving and forwarding."`
	Linger           time.Duration `name:"linger" env:"JOBFLEET_LINGER" default:"25ms" help:"How long a partial batch waits for more jobs to the same class."`
	OOMFactor        float64       `name:"oom-factor" env:"JOBFLEET_OOM_FACTOR" default:"1.5" help:"Memory multiplier for a rerun after an OOM kill."`
	OnlineRate       float64       `name:"online-rate" env:"JOBFLEET_ONLINE_RATE" default:"0.05" help:"How fast a group's sizes rise above the model after OOM kills in it (a retraining carries half of it into the next model): the step of the group's log multiplier per run record (0.05: doubled after 16 misses in a row; negative: the model alone)."`
	ResizeAtStart    bool          `name:"resize-at-start" env:"JOBFLEET_RESIZE_AT_START" default:"true" negatable:"" help:"Have the leader publish the raise after misses to S3 every 15s, so that a worker about to start a job whose group's raise rose past what gives it a larger class while it waited sends it back to be sized again (once a run, spending no retry). --no-resize-at-start keeps every job the size it was first given."`
	OnDemandAfter    int           `name:"on-demand-after" env:"JOBFLEET_ON_DEMAND_AFTER" default:"2" help:"Run a job on on-demand capacity after this many interruptions."`
	IntakeVisibility time.Duration `name:"intake-visibility" env:"JOBFLEET_INTAKE_VISIBILITY" default:"2m" help:"Visibility timeout of received intake messages: how soon a crashed replica's messages return."`
	ClassIdleTTL     time.Duration `name:"class-idle-ttl" env:"JOBFLEET_CLASS_IDLE_TTL" default:"30m" help:"Remove a class's ScaledJob and queue after it has been idle this long."`
	ClassPoll        time.Duration `name:"class-poll" env:"JOBFLEET_CLASS_POLL" default:"2s" help:"How often the leader looks for classes replicas asked for."`
	ClassFresh       time.Duration `name:"class-fresh" env:"JOBFLEET_CLASS_FRESH" default:"1m" help:"How long a replica sends to a class it saw ready before looking again."`
	CollectInterval  time.Duration `name:"collect-interval" env:"JOBFLEET_COLLECT_INTERVAL" default:"1m" help:"How often the leader looks for idle classes."`
	CollectFence     time.Duration `name:"collect-fence" env:"JOBFLEET_COLLECT_FENCE" default:"3m" help:"How long an idle class stays marked before it is removed; longer than --class-fresh plus SQS's minute of lag in counting messages."`

	InterruptionQueue string        `name:"interruption-queue" env:"JOBFLEET_INTERRUPTION_QUEUE" placeholder:"URL" help:"jobfleet's own EventBridge target queue of EC2 interruption events; without it, interruptions are not handled."`
	RebalanceEvicts   bool          `name:"rebalance-evicts" env:"JOBFLEET_REBALANCE_EVICTS" help:"On a rebalance recommendation, checkpoint and move the node's jobs at once instead of only tainting it."`
	AvoidFor          time.Duration `name:"avoid-for" env:"JOBFLEET_AVOID_FOR" default:"1h" help:"How long reruns of interrupted jobs keep away from an instance type and zone whose spot capacity was reclaimed."`
	KubeQPS           float32       `name:"kube-qps" env:"JOBFLEET_KUBE_QPS" default:"100" help:"Kubernetes API requests per second (evicting a full node takes two per pod)."`
	AvoidConfigMap    string        `name:"avoid-configmap" env:"JOBFLEET_AVOID_CONFIGMAP" default:"jobfleet-avoid" help:"ConfigMap in --namespace where every replica records the interrupted capacity that reruns avoid."`

	LeaderElect bool   `name:"leader-elect" env:"JOBFLEET_LEADER_ELECT" default:"true" negatable:"" help:"Elect one replica (a Lease) to manage classes, collect idle ones and run the failure sensor; --no-leader-elect runs them here unconditionally (run one replica only)."`
	Lease       string `name:"lease" env:"JOBFLEET_LEASE" default:"jobfleet-dispatcher" help:"Name of the leader election Lease."`
	Identity    string `name:"identity" env:"JOBFLEET_IDENTITY,JOBFLEET_POD_NAME" help:"This replica's name in the leader election (default: the hostname and a random suffix)."`

	MetricsAddr string `name:"metrics-addr" env:"JOBFLEET_METRICS_ADDR" default:":9090" help:"Address of /metrics, /healthz and /readyz."`
	Pprof       bool   `name:"pprof" env:"JOBFLEET_PPROF" help:"Also serve Go's profiler under /debug/pprof/ on --metrics-addr."`
}

// Validate rejects settings that cannot work, naming the flag; kong calls
// it after parsing.
func (c *DispatcherCmd) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Intake == c.DeadLetter {
		bad("--intake and --dead-letter are the same queue: dead letters would come back as jobs")
	}
	if !jobfleet.LabelKeyPattern.MatchString(c.AttributeLabel) {
		bad("--attribute-label %q is not a label key (%s)", c.AttributeLabel, jobfleet.LabelKeyPattern)
	}
	if c.EventsTopic != "" && !snsTopicARN.MatchString(c.EventsTopic) {
		bad("--events-topic %q is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)", c.EventsTopic)
	}
	for _, q := range []struct{ flag, url string }{{"--intake", c.Intake}, {"--dead-letter", c.DeadLetter}, {"--records", c.Records}, {"--interruption-queue", c.InterruptionQueue}} {
		if q.url == "" {
			continue
		}
		if u, err := url.Parse(q.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("%s %q is not a queue URL", q.flag, q.url)
		}
	}
	positive := []struct {
		flag string
		v    time.Duration
	}{{"--linger", c.Linger}, {"--class-idle-ttl", c.ClassIdleTTL}, {"--class-poll", c.ClassPoll}, {"--class-fresh", c.ClassFresh}, {"--collect-interval", c.CollectInterval}, {"--retrain-every", c.RetrainEvery}, {"--retrain-window", c.RetrainWindow},
		{"--model-reload", c.ModelReload}, {"--records-flush", c.RecordsFlush}, {"--intake-visibility", c.IntakeVisibility}, {"--avoid-for", c.AvoidFor}, {"--polling-interval", c.Polling}}
	for _, p := range positive {
		if p.v <= 0 {
			bad("%s %v: above zero", p.flag, p.v)
		}
	}
	if c.CollectFence <= c.ClassFresh {
		bad("--collect-fence %v: longer than --class-fresh (%v), or a replica may send to a class being removed", c.CollectFence, c.ClassFresh)
	}
	if c.Receivers < 1 {
		bad("--receivers %d: at least 1", c.Receivers)
	}
	if c.MaxInFlight < 10*max(1, c.Receivers) {
		bad("--max-in-flight %d: at least 10 per receiver (%d)", c.MaxInFlight, 10*max(1, c.Receivers))
	}
	if !(c.OOMFactor > 1) {
		bad("--oom-factor %v: above 1 (a rerun after an OOM kill needs more memory)", c.OOMFactor)
	}
	if err := checkOnlineRate(c.OnlineRate); err != nil {
		bad("%v", err)
	}
	if c.OnDemandAfter < 1 {
		bad("--on-demand-after %d: at least 1", c.OnDemandAfter)
	}
	if c.KubeQPS <= 0 {
		bad("--kube-qps %v: above zero", c.KubeQPS)
	}
	if c.Kubernetes && c.WorkerImage == "" {
		bad("--worker-image: required with --kubernetes: the image job pods copy the worker from (build and push it with make image PUSH=registry/repo:tag)")
	}
	if c.InterruptionQueue != "" && !c.Kubernetes {
		bad("--interruption-queue needs Kubernetes (it taints nodes and evicts pods); drop it or --no-kubernetes")
	}
	if c.InterruptionQueue != "" && (c.InterruptionQueue == c.Intake || c.InterruptionQueue == c.DeadLetter || c.InterruptionQueue == c.Records) {
		bad("--interruption-queue must be jobfleet's own queue of EC2 events, not the intake, dead-letter or records queue")
	}
	return errors.Join(errs...)
}

// Run dispatches until a signal.
func (c *DispatcherCmd) Run(ctx context.Context, g *Globals) error {
	reg, err := jobtype.Load(c.Registry)
	if err != nil {
		return err
	}
	retrain, err := retrainOptions(c.RetrainFeatures, c.RetrainGroupBy, reg)
	if err != nil && c.Retrain && c.Model != "" {
		return err
	}
	clients, err := awsclient.Load(ctx, 10)
	if err != nil {
		return err
	}
	if c.Model != "" {
		// A model that cannot be read is a mistake to report now, unless
		// retraining will write the first one.
		model, err := predictor.Load(ctx, clients.S3, c.Model)
		switch {
		case err != nil && !(c.Retrain && (errors.Is(err, fs.ErrNotExist) || contract.IsNotFound(err))):
			return fmt.Errorf("--model %s: %w", c.Model, err)
		case err != nil:
			g.log.Warn().Str("model", c.Model).Msg("no model yet: jobs get their type's default memory until the first retraining writes one")
		default:
			msg := "the model reads other features for the type than its registry entry lists: the next retraining applies the registry's"
			if !c.Retrain {
				msg = "the model reads other features for the type than its registry entry lists: retraining is off, so the registry's apply only to a model trained with them"
			}
			for _, d := range featureDrift(reg, model) {
				g.log.Warn().Str("type", d.Type).Strs("model_reads", d.Model).Strs("registry_reads", d.Registry).Msg(msg)
			}
		}
	}
	var kube dynamic.Interface
	var typed kubernetes.Interface
	if c.Kubernetes {
		restCfg, err := kubeConfig(c.Kubeconfig)
		if err != nil {
			return err
		}
		restCfg.QPS, restCfg.Burst = c.KubeQPS, int(2*c.KubeQPS)
		if kube, err = dynamic.NewForConfig(restCfg); err != nil {
			return fmt.Errorf("creating the Kubernetes client: %w", err)
		}
		if typed, err = kubernetes.NewForConfig(restCfg); err != nil {
			return fmt.Errorf("creating the Kubernetes client: %w", err)
		}
	}
	var leader *dispatcher.LeaderConfig
	if c.LeaderElect {
		leader = &dispatcher.LeaderConfig{Lease: c.Lease, Identity: c.Identity}
	}
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	cfg := c.config(reg, clients.Config.Region)
	retrainEvery := c.RetrainEvery
	if !c.Retrain {
		retrainEvery = 0
	}
	opts := []dispatcher.Option{
		dispatcher.WithLogger(g.log), dispatcher.WithRegisterer(promReg), dispatcher.WithAnnouncements(clients.SNS, clients.SFN),
		dispatcher.WithRecords(clients.S3,
			dispatcher.RecordsConfig{URL: c.Records, Bucket: c.Bucket, Prefix: c.Prefix, FlushEvery: c.RecordsFlush, AttributeLabel: c.AttributeLabel},
			dispatcher.RetrainConfig{Every: retrainEvery, Window: c.RetrainWindow, Model: c.Model, Options: retrain}),
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var reloader *predictor.Reloader
	if c.Model != "" {
		reloader = predictor.NewReloader(c.Model, clients.S3, c.ModelReload, g.log.With().Str("component", "model").Logger(), nil)
		opts = append(opts, dispatcher.WithModels(reloader))
	}
	if c.Kubernetes {
		opts = append(opts,
			dispatcher.WithKubernetes(typed, leader),
			dispatcher.WithSensor(dispatcher.SensorConfig{RecordsURL: c.Records}))
	}
	if c.InterruptionQueue != "" {
		avoid := &interruption.AvoidConfigMap{Client: typed, Namespace: c.Namespace, Name: c.AvoidConfigMap, TTL: c.AvoidFor, Clock: clock.RealClock{}}
		if err := avoid.Start(ctx); err != nil {
			return err
		}
		store := contract.Store{S3: clients.S3, Bucket: c.Bucket, Prefix: c.Prefix}
		ctrl := interruption.New(interruption.Config{
			QueueURL: c.InterruptionQueue, Namespace: c.Namespace, RebalanceEvicts: c.RebalanceEvicts, AvoidFor: c.AvoidFor,
		}, &interruption.Kubernetes{Client: typed, Namespace: c.Namespace, EC2: ec2.NewFromConfig(clients.Config)},
			clients.SQS, avoid, store, interruption.NewMetrics(promReg), g.log.With().Str("component", "interruption").Logger(), nil)
		opts = append(opts, dispatcher.WithInterruptions(ctrl, avoid))
	}
	d, err := dispatcher.New(cfg, clients.SQS, clients.S3, kube, opts...)
	if err != nil {
		return err
	}
	if reloader != nil {
		// Load the model before dispatching, so that the first jobs are
		// sized by it, raised as the other replicas raise them; what
		// fails here, Run tries again.
		first, cancelFirst := context.WithTimeout(ctx, 30*time.Second)
		changed, err := reloader.Check(first)
		cancelFirst()
		d.ObserveModelReload(changed, err)
		if changed {
			g.log.Info().Str("component", "model").Str("model", c.Model).Time("trained_at", reloader.Model().TrainedAt()).Msg("loaded model")
		}
		reloader.OnReload = d.ObserveModelReload
		wg.Go(func() { reloader.Run(ctx) })
	}
	awsclient.SQSCalls.OnCall = d.ObserveSQSCall
	if c.MetricsAddr != "" {
		ln, err := net.Listen("tcp", c.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics address %s: %w", c.MetricsAddr, err)
		}
		srv := &http.Server{Handler: d.Handler(promReg, c.Pprof), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error().Err(err).Msg("metrics server")
			}
		})
		defer srv.Close()
	}
	return d.Run(ctx)
}

// raisesInterval is dispatcher.Config.RaisesInterval for
// --resize-at-start: the default, or never.
func raisesInterval(resize bool) time.Duration {
	if resize {
		return 0
	}
	return -1
}

// config is the dispatcher's configuration from the flags.
func (c *DispatcherCmd) config(reg *jobtype.Registry, region string) dispatcher.Config {
	return dispatcher.Config{
		IntakeURL: c.Intake, DeadLetterURL: c.DeadLetter, Registry: reg, Bucket: c.Bucket, Prefix: c.Prefix,
		Receivers: c.Receivers, MaxInFlight: c.MaxInFlight, Linger: c.Linger, ClassIdleTTL: c.ClassIdleTTL,
		ClassPoll: c.ClassPoll, ClassFresh: c.ClassFresh, CollectInterval: c.CollectInterval, CollectFence: c.CollectFence,
		IntakeVisibility: c.IntakeVisibility, RaisesInterval: raisesInterval(c.ResizeAtStart),
		Sizing: dispatcher.Sizing{OOMFactor: c.OOMFactor, OnDemandAfter: c.OnDemandAfter, OnlineRate: c.OnlineRate},
		Template: dispatcher.Template{
			Namespace: c.Namespace, Prefix: c.ClassPrefix, WorkerImage: c.WorkerImage, ServiceAccount: c.ServiceAccount,
			IntakeURL: c.Intake, DeadLetterURL: c.DeadLetter, RecordsURL: c.Records, EventsTopic: c.EventsTopic,
			Bucket: c.Bucket, CheckpointPrefix: c.Prefix, Region: region,
			SQSEndpoint: os.Getenv("AWS_ENDPOINT_URL_SQS"), S3Endpoint: os.Getenv("AWS_ENDPOINT_URL_S3"),
			SNSEndpoint: os.Getenv("AWS_ENDPOINT_URL_SNS"), SFNEndpoint: os.Getenv("AWS_ENDPOINT_URL_SFN"),
			TriggerAuthentication: c.TriggerAuth, PollingInterval: c.Polling,
		},
	}
}

// kubeConfig loads the client configuration: an explicit kubeconfig, the
// in-cluster service account, or the default kubeconfig.
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the Kubernetes configuration: %w", err)
	}
	return cfg, nil
}

// drift is a type whose features the model reads differ from those its
// registry entry gives it: Registry is what the model would read for it
// by the registry (all the model's features for a type that lists none).
type drift struct {
	Type            string
	Model, Registry []string
}

// featureDrift lists the types of reg whose features model reads are not
// those the registry's lists give it (predictor.features is applied by
// retraining, so a registry edited since the model was trained, or a
// model trained elsewhere, differs).
func featureDrift(reg *jobtype.Registry, model *predictor.Model) []drift {
	var out []drift
	for _, t := range reg.Types() {
		got := model.FeaturesFor(t.Name)
		want := model.Features()
		if len(t.Features) > 0 {
			want = slices.DeleteFunc(want, func(name string) bool { return !slices.Contains(t.Features, name) })
		}
		if !slices.Equal(got, want) {
			out = append(out, drift{Type: t.Name, Model: got, Registry: want})
		}
	}
	return out
}

// retrainOptions trains on the features named, in that order; without
// any, on all the run records carry, in the order the model finds best.
// The registry's types add their predictor.groupBy and predictor.features;
// a type's feature the named ones leave out is an error, as the model
// would never read it.
func retrainOptions(features, groupBy []string, reg *jobtype.Registry) (predictor.Options, error) {
	opts := predictor.Options{Features: features, GroupBy: groupBy, Tuning: predictor.Tuning{FeatureOrder: predictor.FeatureOrderGiven}}
	if len(features) == 0 {
		opts.Tuning.FeatureOrder = predictor.FeatureOrderAuto
	}
	opts.Tuning.GroupByType, opts.Tuning.FeaturesByType = registryTuning(reg)
	if len(features) == 0 {
		return opts, nil // every feature the records carry
	}
	return opts, typeFeaturesRead("--retrain-features", features, opts.Tuning.FeaturesByType)
}

// typeFeaturesRead checks that features, which flag names, hold every
// feature a type of the registry lists: the model would not read another.
func typeFeaturesRead(flag string, features []string, byType map[string][]string) error {
	var errs []error
	for _, typ := range slices.Sorted(maps.Keys(byType)) {
		for _, name := range byType[typ] {
			if !slices.Contains(features, name) {
				errs = append(errs, fmt.Errorf("%s %s: type %q of --registry lists feature %q, which the model would not read: add it to the flag, or drop it from the type", flag, strings.Join(features, ","), typ, name))
			}
		}
	}
	return errors.Join(errs...)
}

// registryTuning is the registry's per-type predictor.groupBy and
// predictor.features (nil when no type sets them).
func registryTuning(reg *jobtype.Registry) (groupBy, features map[string][]string) {
	for _, t := range reg.Types() {
		if len(t.GroupBy) > 0 {
			if groupBy == nil {
				groupBy = map[string][]string{}
			}
			groupBy[t.Name] = t.GroupBy
		}
		if len(t.Features) > 0 {
			if features == nil {
				features = map[string][]string{}
			}
			features[t.Name] = t.Features
		}
	}
	return groupBy, features
}
