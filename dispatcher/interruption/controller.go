package interruption

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet/internal/contract"
)

// Labels, taints and annotations.
const (
	// TaintKey marks a node jobfleet is moving work off; its value is the
	// notice's kind.
	TaintKey = "jobfleet.io/interruption"
	// AnnotationInterruption is set on each jobfleet pod before it is
	// evicted: the worker reads it (through a downward-API file, where it
	// cannot read the stop notice in S3) to record its rerun as
	// interrupted rather than evicted.
	AnnotationInterruption = contract.AnnotationInterruption
	// AnnotationInstanceType, AnnotationZone and AnnotationCapacityType
	// tell the worker where it ran, for the rerun's history, and
	// AnnotationDeadline when the pod must be gone.
	AnnotationInstanceType = contract.AnnotationInstanceType
	AnnotationZone         = contract.AnnotationZone
	AnnotationCapacityType = contract.AnnotationCapacityType
	AnnotationDeadline     = contract.AnnotationDeadline

	labelInstanceType = "node.kubernetes.io/instance-type"
	labelZone         = "topology.kubernetes.io/zone"
	labelCapacityType = "karpenter.sh/capacity-type"
	labelManagedBy    = "app.kubernetes.io/managed-by"

	// LabelInstanceID names a node's EC2 instance where its provider id
	// does not (nodes registered without the AWS cloud provider, or
	// simulated ones): kubelet --node-labels=jobfleet.io/instance-id=i-...
	LabelInstanceID = "jobfleet.io/instance-id"
)

// SQSAPI is the SQS calls of the controller.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// StopNotices is where the controller tells each pod's worker why and
// until when its pod stops, before evicting it: the pod's own grace period
// may end after the instance does. contract.Store implements it.
type StopNotices interface {
	WriteStopNotice(ctx context.Context, namespace, pod string, n *contract.StopNotice) error
}

// AvoidRecorder remembers interrupted (instance type, zone) pairs where
// every replica's reruns see them.
type AvoidRecorder interface {
	Add(ctx context.Context, instanceType, zone string) error
}

// Config configures the controller.
type Config struct {
	// QueueURL is jobfleet's interruption queue.
	QueueURL string
	// Namespace holds the jobfleet pods to move.
	Namespace string
	// RebalanceEvicts makes a rebalance recommendation checkpoint and move
	// the pods at once; by default it only taints the node.
	RebalanceEvicts bool
	// Margin is kept between a worker finishing and the instance going.
	// Default 10s.
	Margin time.Duration
	// AvoidFor is how long an interrupted (instance type, zone) pair is
	// steered away from. Default 1h.
	AvoidFor time.Duration
	// Concurrency bounds the API calls in flight for one notice. Default 32.
	Concurrency int
	// RetryFor is how long a notice whose handling failed on a transient
	// error keeps coming back to be handled again, from its own time.
	// Default 10m.
	RetryFor time.Duration
}

// Controller acts on interruption notices.
type Controller struct {
	cfg     Config
	cluster Cluster
	sqs     SQSAPI
	clock   clock.Clock
	log     zerolog.Logger
	metrics *Metrics
	avoid   AvoidRecorder
	stops   StopNotices
}

// Cluster is what the controller acts on: the nodes of instances and the
// jobfleet pods on them. Kubernetes is one; `jobfleet local` runs workers
// as processes on simulated nodes and is another, so that the local demo
// goes through the same code as production.
type Cluster interface {
	// Start prepares the cluster (fills caches) and returns once ready.
	Start(ctx context.Context) error
	// Node finds the node on an instance; nil when none is.
	Node(ctx context.Context, instanceID string) (*Node, error)
	// Taint marks a node so nothing new lands on it.
	Taint(ctx context.Context, node string, kind Kind) error
	// Pods lists the live jobfleet pods on a node.
	Pods(ctx context.Context, node string) ([]Pod, error)
	// Annotate sets annotations on a pod.
	Annotate(ctx context.Context, pod Pod, annotations map[string]string) error
	// Evict asks a pod to stop within grace seconds; zero deletes it at once.
	Evict(ctx context.Context, pod Pod, grace int64) error
}

// Node is a node of a Cluster.
type Node struct {
	Name         string
	InstanceType string
	Zone         string
	CapacityType string
}

// Pod is a jobfleet pod of a Cluster.
type Pod struct {
	Namespace string
	Name      string
	// Grace is its termination grace period in seconds.
	Grace int64
}

// New returns a controller acting on a cluster. avoid records the
// interrupted capacity, and stops receives the pods' stop notices; either
// may be nil.
func New(cfg Config, cluster Cluster, sqsAPI SQSAPI, avoid AvoidRecorder, stops StopNotices, metrics *Metrics, log zerolog.Logger, clk clock.Clock) *Controller {
	if cfg.Margin == 0 {
		cfg.Margin = 10 * time.Second
	}
	if cfg.AvoidFor == 0 {
		cfg.AvoidFor = time.Hour
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 32
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 10 * time.Minute
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Controller{cfg: cfg, cluster: cluster, sqs: sqsAPI, clock: clk, log: log, metrics: metrics, avoid: avoid, stops: stops}
}

// NodeNamed returns where a node is (its instance type, zone and capacity
// type) when the cluster can say: nil otherwise.
func (c *Controller) NodeNamed(name string) *Node {
	if n, ok := c.cluster.(interface{ NodeNamed(string) *Node }); ok {
		return n.NodeNamed(name)
	}
	return nil
}

// Run consumes the interruption queue until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if err := c.cluster.Start(ctx); err != nil {
		return err
	}
	failures := 0
	for ctx.Err() == nil {
		// A notice that fails to be handled comes back after 15s: its
		// deadline is two minutes away at most.
		out, err := c.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(c.cfg.QueueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 20, VisibilityTimeout: 15,
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			c.log.Warn().Err(err).Msg("receiving interruption notices")
			t := c.clock.NewTimer(min(200*time.Millisecond<<min(failures, 6), 10*time.Second))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C():
			}
			continue
		}
		failures = 0
		var wg sync.WaitGroup
		done := make([]bool, len(out.Messages))
		for i, m := range out.Messages {
			wg.Go(func() { done[i] = c.handleMessage(ctx, m) })
		}
		wg.Wait()
		var entries []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			if done[i] {
				entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
			}
		}
		if len(entries) > 0 {
			if _, err := c.sqs.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(c.cfg.QueueURL), Entries: entries}); err != nil {
				c.log.Warn().Err(err).Msg("deleting handled notices; they will be handled again, harmlessly")
			}
		}
	}
	return nil
}

// handleMessage decodes and acts on one message, and reports whether it
// may be deleted. As Karpenter's interruption controller does, a notice
// that cannot be read (malformed, unknown) is deleted, logged and counted,
// never retried; one whose handling failed on an API error is kept, so it
// comes back and is handled again, until RetryFor after its time, when its
// deadline is long past.
func (c *Controller) handleMessage(ctx context.Context, m sqstypes.Message) bool {
	log := c.log.With().Str("message_id", aws.ToString(m.MessageId)).Logger()
	n, err := Parse([]byte(aws.ToString(m.Body)))
	switch {
	case errors.Is(err, ErrUnknown):
		c.metrics.messages.WithLabelValues("unknown").Inc()
		log.Warn().Err(err).Msg("ignoring an event of an unknown type")
		return true
	case err != nil:
		c.metrics.messages.WithLabelValues("malformed").Inc()
		log.Error().Err(err).Msg("ignoring a malformed event")
		return true
	case n == nil:
		c.metrics.messages.WithLabelValues("no_action").Inc()
		return true
	}
	if err := c.Handle(ctx, n); err != nil {
		if ctx.Err() != nil {
			// Stopping: another replica handles the notice when it comes
			// back.
			return false
		}
		if c.clock.Since(n.Time) < c.cfg.RetryFor {
			c.metrics.messages.WithLabelValues("retried").Inc()
			log.Error().Err(err).Str("kind", string(n.Kind)).Msg("acting on an interruption notice; it comes back to be handled again")
			return false
		}
		c.metrics.messages.WithLabelValues("failed").Inc()
		log.Error().Err(err).Str("kind", string(n.Kind)).Dur("retried_for", c.cfg.RetryFor).Msg("acting on an interruption notice failed; giving up, its deadline is past")
		return true
	}
	c.metrics.messages.WithLabelValues("handled").Inc()
	return true
}

// Handle acts on one notice.
func (c *Controller) Handle(ctx context.Context, n *Notice) error {
	c.metrics.notices.WithLabelValues(string(n.Kind)).Inc()
	var errs []error
	for _, id := range n.InstanceIDs {
		node, err := c.cluster.Node(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if node == nil {
			c.log.Debug().Str("instance", id).Msg("no node of this cluster runs on the instance")
			continue
		}
		if err := c.handleNode(ctx, n, node); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", node.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) handleNode(ctx context.Context, n *Notice, node *Node) error {
	log := c.log.With().Str("node", node.Name).Str("kind", string(n.Kind)).Logger()
	if (n.Kind == SpotInterruption || n.Kind == CapacityReservationInterruption) && c.avoid != nil {
		if err := c.avoid.Add(ctx, node.InstanceType, node.Zone); err != nil {
			// Reruns may land on the same capacity; moving the pods matters
			// more.
			log.Warn().Err(err).Msg("recording the interrupted capacity for reruns to avoid")
		}
	}
	if err := c.cluster.Taint(ctx, node.Name, n.Kind); err != nil {
		return fmt.Errorf("tainting: %w", err)
	}
	c.metrics.tainted.WithLabelValues(string(n.Kind)).Inc()
	if n.Kind == RebalanceRecommendation && !c.cfg.RebalanceEvicts {
		log.Info().Msg("tainted the node; its jobs run on")
		return nil
	}
	pods, err := c.cluster.Pods(ctx, node.Name)
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	sem := make(chan struct{}, c.cfg.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, pod := range pods {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.movePod(ctx, n, node, pod); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("pod %s: %w", pod.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	log.Info().Int("pods", len(pods)).Time("deadline", n.Deadline()).Msg("moved jobfleet's pods off the node")
	return errors.Join(errs...)
}

// movePod tells a pod's worker why and until when its pod stops (a stop
// notice in S3, and annotations), then evicts it. A pod whose instance is
// already gone is deleted at once, so its job reruns now rather than after
// its message's visibility timeout.
func (c *Controller) movePod(ctx context.Context, n *Notice, node *Node, pod Pod) error {
	grace := c.grace(n, pod)
	if n.Gone() {
		grace = 0
	}
	deadline := c.clock.Now().Add(time.Duration(grace) * time.Second).UTC().Truncate(time.Second)
	if c.stops != nil && grace > 0 {
		notice := &contract.StopNotice{
			Kind: string(n.Kind), Deadline: deadline, Node: node.Name,
			InstanceType: node.InstanceType, Zone: node.Zone, CapacityType: node.CapacityType,
		}
		if err := c.stops.WriteStopNotice(ctx, pod.Namespace, pod.Name, notice); err != nil {
			// The annotations below say the same, less promptly.
			c.log.Warn().Err(err).Str("pod", pod.Name).Msg("writing the pod's stop notice")
		}
	}
	annotations := map[string]string{
		AnnotationInterruption: string(n.Kind),
		AnnotationInstanceType: node.InstanceType,
		AnnotationZone:         node.Zone,
		AnnotationCapacityType: node.CapacityType,
		AnnotationDeadline:     deadline.Format(time.RFC3339),
	}
	if err := c.cluster.Annotate(ctx, pod, annotations); err != nil {
		return fmt.Errorf("annotating: %w", err)
	}
	if err := c.cluster.Evict(ctx, pod, grace); err != nil {
		return fmt.Errorf("evicting: %w", err)
	}
	c.metrics.evicted.WithLabelValues(string(n.Kind)).Inc()
	if !n.Time.IsZero() {
		c.metrics.eventToEviction.WithLabelValues(string(n.Kind)).Observe(c.clock.Since(n.Time).Seconds())
	}
	return nil
}

// grace is the pod's termination grace period, cut short to end Margin
// before the notice's deadline.
func (c *Controller) grace(n *Notice, pod Pod) int64 {
	grace := pod.Grace
	if deadline := n.Deadline(); !deadline.IsZero() {
		left := int64((deadline.Sub(c.clock.Now()) - c.cfg.Margin) / time.Second)
		grace = max(min(grace, left), 1)
	}
	return grace
}
