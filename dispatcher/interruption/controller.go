package interruption

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet/worker"
)

// Labels, taints and annotations.
const (
	// TaintKey marks a node jobfleet is moving work off; its value is the
	// notice's kind.
	TaintKey = "jobfleet.io/interruption"
	// AnnotationInterruption is set on each jobfleet pod before it is
	// evicted: the worker reads it (through a downward-API file) to record
	// its rerun as interrupted rather than evicted.
	AnnotationInterruption = worker.AnnotationInterruption
	// AnnotationInstanceType, AnnotationZone and AnnotationCapacityType
	// tell the worker where it ran, for the rerun's history.
	AnnotationInstanceType = worker.AnnotationInstanceType
	AnnotationZone         = worker.AnnotationZone
	AnnotationCapacityType = worker.AnnotationCapacityType

	labelInstanceType = "node.kubernetes.io/instance-type"
	labelZone         = "topology.kubernetes.io/zone"
	labelCapacityType = "karpenter.sh/capacity-type"
	labelManagedBy    = "app.kubernetes.io/managed-by"
)

// SQSAPI is the SQS calls of the controller.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// EC2API finds an instance's private DNS name when no node names it in its
// provider id.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, opts ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
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
}

// Controller acts on interruption notices.
type Controller struct {
	cfg     Config
	kube    kubernetes.Interface
	sqs     SQSAPI
	ec2     EC2API
	clock   clock.Clock
	log     zerolog.Logger
	metrics *Metrics
	// Avoid remembers interrupted (instance type, zone) pairs.
	Avoid *Avoid

	nodes  cache.Indexer
	synced cache.InformerSynced
}

// New returns a controller. ec2 may be nil (no fallback lookup).
func New(cfg Config, kube kubernetes.Interface, sqsAPI SQSAPI, ec2API EC2API, metrics *Metrics, log zerolog.Logger, clk clock.Clock) *Controller {
	if cfg.Margin == 0 {
		cfg.Margin = 10 * time.Second
	}
	if cfg.AvoidFor == 0 {
		cfg.AvoidFor = time.Hour
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 32
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Controller{cfg: cfg, kube: kube, sqs: sqsAPI, ec2: ec2API, clock: clk, log: log, metrics: metrics, Avoid: NewAvoid(cfg.AvoidFor, clk)}
}

const indexInstance = "instance-id"

// instanceID reads the instance id from an AWS provider id,
// aws:///<zone>/<instance-id>.
func instanceID(providerID string) string {
	if !strings.HasPrefix(providerID, "aws://") {
		return ""
	}
	id := providerID[strings.LastIndexByte(providerID, '/')+1:]
	if !strings.HasPrefix(id, "i-") {
		return ""
	}
	return id
}

// Start watches nodes, indexed by instance id. It returns once the index
// is filled.
func (c *Controller) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(c.kube, 10*time.Minute)
	inf := factory.Core().V1().Nodes().Informer()
	if err := inf.AddIndexers(cache.Indexers{indexInstance: func(obj any) ([]string, error) {
		if n, ok := obj.(*corev1.Node); ok {
			if id := instanceID(n.Spec.ProviderID); id != "" {
				return []string{id}, nil
			}
		}
		return nil, nil
	}}); err != nil {
		return err
	}
	c.nodes, c.synced = inf.GetIndexer(), inf.HasSynced
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("the node informer did not sync")
	}
	go func() { <-ctx.Done(); factory.Shutdown() }()
	return nil
}

// Run consumes the interruption queue until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	failures := 0
	for ctx.Err() == nil {
		out, err := c.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(c.cfg.QueueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 20, VisibilityTimeout: 60,
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
		for _, m := range out.Messages {
			wg.Go(func() { c.handleMessage(ctx, m) })
		}
		wg.Wait()
		if len(out.Messages) > 0 {
			entries := make([]sqstypes.DeleteMessageBatchRequestEntry, len(out.Messages))
			for i, m := range out.Messages {
				entries[i] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
			}
			if _, err := c.sqs.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(c.cfg.QueueURL), Entries: entries}); err != nil {
				c.log.Warn().Err(err).Msg("deleting handled notices; they will be handled again, harmlessly")
			}
		}
	}
	return nil
}

// handleMessage decodes and acts on one message. Every message is deleted
// afterwards, whatever happened: a notice is only useful before its
// deadline, and retrying an unreadable one forever helps nobody.
func (c *Controller) handleMessage(ctx context.Context, m sqstypes.Message) {
	log := c.log.With().Str("message_id", aws.ToString(m.MessageId)).Logger()
	n, err := Parse([]byte(aws.ToString(m.Body)))
	switch {
	case errors.Is(err, ErrUnknown):
		c.metrics.messages.WithLabelValues("unknown").Inc()
		log.Warn().Err(err).Msg("ignoring an event of an unknown type")
		return
	case err != nil:
		c.metrics.messages.WithLabelValues("malformed").Inc()
		log.Error().Err(err).Msg("ignoring a malformed event")
		return
	case n == nil:
		c.metrics.messages.WithLabelValues("no_action").Inc()
		return
	}
	c.metrics.messages.WithLabelValues("handled").Inc()
	if err := c.Handle(ctx, n); err != nil {
		log.Error().Err(err).Str("kind", string(n.Kind)).Msg("acting on an interruption notice")
	}
}

// Handle acts on one notice.
func (c *Controller) Handle(ctx context.Context, n *Notice) error {
	c.metrics.notices.WithLabelValues(string(n.Kind)).Inc()
	var errs []error
	for _, id := range n.InstanceIDs {
		node, err := c.node(ctx, id)
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

// node finds the node on an instance: through the index, else through
// EC2's private DNS name, which EKS nodes are named after.
func (c *Controller) node(ctx context.Context, instance string) (*corev1.Node, error) {
	objs, err := c.nodes.ByIndex(indexInstance, instance)
	if err != nil {
		return nil, err
	}
	if len(objs) > 0 {
		return objs[0].(*corev1.Node), nil
	}
	if c.ec2 == nil {
		return nil, nil
	}
	out, err := c.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instance}})
	if err != nil {
		return nil, fmt.Errorf("describing instance %s: %w", instance, err)
	}
	for _, r := range out.Reservations {
		for _, inst := range r.Instances {
			if name := aws.ToString(inst.PrivateDnsName); name != "" {
				if obj, ok, _ := c.nodes.GetByKey(name); ok {
					return obj.(*corev1.Node), nil
				}
			}
		}
	}
	return nil, nil
}

func (c *Controller) handleNode(ctx context.Context, n *Notice, node *corev1.Node) error {
	log := c.log.With().Str("node", node.Name).Str("kind", string(n.Kind)).Logger()
	if n.Kind == SpotInterruption || n.Kind == CapacityReservationInterruption {
		c.Avoid.Add(node.Labels[labelInstanceType], node.Labels[labelZone])
	}
	if err := c.taint(ctx, node.Name, n.Kind); err != nil {
		return err
	}
	if n.Kind == RebalanceRecommendation && !c.cfg.RebalanceEvicts {
		log.Info().Msg("tainted the node; its jobs run on")
		return nil
	}
	pods, err := c.kube.CoreV1().Pods(c.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labelManagedBy + "=jobfleet",
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node.Name).String(),
	})
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	annotations := map[string]string{
		AnnotationInterruption: string(n.Kind),
		AnnotationInstanceType: node.Labels[labelInstanceType],
		AnnotationZone:         node.Labels[labelZone],
		AnnotationCapacityType: node.Labels[labelCapacityType],
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	sem := make(chan struct{}, c.cfg.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.movePod(ctx, n, pod, patch); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("pod %s: %w", pod.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	log.Info().Int("pods", len(pods.Items)).Time("deadline", n.Deadline()).Msg("moved jobfleet's pods off the node")
	return errors.Join(errs...)
}

// movePod marks a pod with the interruption and evicts it. A pod whose
// instance is already gone is deleted at once, so its job reruns now
// rather than after its message's visibility timeout.
func (c *Controller) movePod(ctx context.Context, n *Notice, pod *corev1.Pod, patch []byte) error {
	if _, err := c.kube.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("annotating: %w", err)
	}
	grace := c.grace(n, pod)
	if n.Gone() {
		grace = 0
	}
	opts := &metav1.DeleteOptions{GracePeriodSeconds: &grace}
	err := c.kube.PolicyV1().Evictions(pod.Namespace).Evict(ctx, &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}, DeleteOptions: opts,
	})
	if apierrors.IsTooManyRequests(err) {
		// A disruption budget blocks the eviction; the instance goes
		// anyway, so delete the pod with the same grace.
		err = c.kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, *opts)
	}
	if err != nil && !apierrors.IsNotFound(err) {
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
func (c *Controller) grace(n *Notice, pod *corev1.Pod) int64 {
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if deadline := n.Deadline(); !deadline.IsZero() {
		left := int64((deadline.Sub(c.clock.Now()) - c.cfg.Margin) / time.Second)
		grace = max(min(grace, left), 1)
	}
	return grace
}

// taint adds the interruption taint to a node, once.
func (c *Controller) taint(ctx context.Context, name string, kind Kind) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := c.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, t := range node.Spec.Taints {
			if t.Key == TaintKey {
				return nil
			}
		}
		node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: TaintKey, Value: string(kind), Effect: corev1.TaintEffectNoSchedule})
		_, err = c.kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		if err == nil {
			c.metrics.tainted.WithLabelValues(string(kind)).Inc()
		}
		return err
	})
}
