package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

// The leader's class controller: it creates the classes replicas ask for,
// keeps every wanted class's ScaledJob applied, and removes idle classes.
// It keeps no state of its own beyond caches: a new leader reads the wanted
// classes from S3 and their state from their queues' tags.

// createClass makes a class ready: its marker, its queue with a redrive
// policy to the dead-letter queue, its ScaledJob, and last the ready tag.
// A class being collected is kept. Only the leader calls it.
func (c *classes) createClass(ctx context.Context, cl Class) (string, error) {
	c.create.Lock()
	defer c.create.Unlock()
	name := cl.Name(c.prefix())
	if _, ok := c.registry.Type(cl.Type); !ok {
		return "", fmt.Errorf("job type %q is not registered", cl.Type)
	}
	// The marker first: the class is wanted from now on, and a collection
	// under way sees the request and stops.
	if err := c.markers.request(ctx, name, cl); err != nil {
		return "", err
	}
	url, tags, err := c.lookup(ctx, name)
	if err != nil {
		return "", err
	}
	if url == "" {
		if url, err = c.createQueue(ctx, name); err != nil {
			return "", err
		}
	}
	if err := c.apply(ctx, cl, url); err != nil {
		return "", err
	}
	now := strconv.FormatInt(c.clock.Now().Unix(), 10)
	if _, err := c.sqs.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(url), Tags: map[string]string{tagReady: now, tagLastDispatch: now}}); err != nil {
		return "", fmt.Errorf("tagging class queue %s ready: %w", name, err)
	}
	if tags[tagCollecting] != "" {
		if _, err := c.sqs.UntagQueue(ctx, &sqs.UntagQueueInput{QueueUrl: aws.String(url), TagKeys: []string{tagCollecting}}); err != nil {
			return "", fmt.Errorf("keeping class %s from collection: %w", name, err)
		}
		c.log.Info().Str("class", name).Msg("a class being collected is wanted again; keeping it")
	}
	if tags[tagReady] == "" {
		c.log.Info().Str("class", cl.String()).Str("queue", url).Msg("class ready")
	}
	return url, nil
}

func (c *classes) createQueue(ctx context.Context, name string) (string, error) {
	redrive, err := json.Marshal(map[string]any{"deadLetterTargetArn": c.deadARN, "maxReceiveCount": c.maxReceives})
	if err != nil {
		return "", err
	}
	out, err := c.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String(name),
		Attributes: map[string]string{
			string(sqstypes.QueueAttributeNameVisibilityTimeout):      strconv.Itoa(int(c.tmpl.visibility() / time.Second)),
			string(sqstypes.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(14 * 24 * 3600),
			string(sqstypes.QueueAttributeNameRedrivePolicy):          string(redrive),
		},
		Tags: map[string]string{tagManaged: "true", tagLastDispatch: strconv.FormatInt(c.clock.Now().Unix(), 10)},
	})
	if err != nil {
		return "", fmt.Errorf("creating queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// apply server-side applies a class's ScaledJob with field manager
// jobfleet. Only the leader applies, so forcing conflicts is safe: no
// other replica writes ScaledJobs.
func (c *classes) apply(ctx context.Context, cl Class, url string) error {
	if c.kube == nil {
		return nil
	}
	typ, ok := c.registry.Type(cl.Type)
	if !ok {
		return fmt.Errorf("job type %q is not registered", cl.Type)
	}
	pool, _ := c.registry.Pool(typ.Pool)
	sj := c.tmpl.ScaledJob(cl, typ, pool, url)
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(sj)
	if err != nil {
		return fmt.Errorf("converting ScaledJob %s: %w", sj.Name, err)
	}
	delete(obj, "status")
	_, err = c.kube.Resource(scaledJobs).Namespace(c.tmpl.Namespace).Apply(ctx, sj.Name, &unstructured.Unstructured{Object: obj}, metav1.ApplyOptions{FieldManager: ManagedBy, Force: true})
	if err != nil {
		return fmt.Errorf("applying ScaledJob %s: %w", sj.Name, err)
	}
	return nil
}

// serveRequests creates the classes replicas asked for, until ctx ends:
// at every poll, and at once when this replica asked itself.
func (d *Dispatcher) serveRequests(ctx context.Context) {
	ticker := d.clock.NewTicker(d.cfg.ClassPoll)
	defer ticker.Stop()
	served := map[string]time.Time{}
	for {
		wanted, err := d.classes.markers.list(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("listing the classes asked for")
		}
		d.metrics.classes.Set(float64(len(wanted)))
		for name, m := range wanted {
			if !m.Requested.After(served[name]) {
				continue
			}
			if _, err := d.classes.ensure(ctx, m.Class); err != nil {
				if ctx.Err() == nil {
					d.log.Warn().Err(err).Str("class", name).Msg("creating a class asked for")
				}
				continue
			}
			served[name] = m.Requested
		}
		select {
		case <-ctx.Done():
			d.metrics.classes.Set(0)
			return
		case <-ticker.C():
		case <-d.classes.wake:
		}
	}
}

// reconcile re-applies the ScaledJob of every wanted class, undoing drift
// (an edited or deleted ScaledJob) and carrying changes of the capacity to
// avoid.
func (d *Dispatcher) reconcile(ctx context.Context) error {
	if d.kube == nil {
		return nil
	}
	wanted, err := d.classes.markers.list(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for name, m := range wanted {
		url, tags, err := d.classes.lookup(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if url == "" || tags[tagReady] == "" {
			continue // serveRequests creates it
		}
		if err := d.classes.apply(ctx, m.Class, url); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// labelScaledJob is the label KEDA puts on the Jobs of a ScaledJob.
const labelScaledJob = "scaledjob.keda.sh/name"

// collect removes idle classes in two steps. A class whose queue holds no
// message (visible, in flight or delayed), whose ScaledJob has no active
// Job, and to which no job was routed nor asked for in the idle TTL is
// marked collecting; replicas stop sending to it. CollectFence later, if it
// is still idle and nobody asked for it since the mark, its ScaledJob,
// queue and marker are removed; else the mark is lifted. It is stateless,
// so a new leader continues where the last one stopped.
func (d *Dispatcher) collect(ctx context.Context, kube kubernetes.Interface) error {
	c := d.classes
	wanted, err := c.markers.list(ctx)
	if err != nil {
		return err
	}
	names := map[string]*marker{}
	for name, m := range wanted {
		names[name] = &m
	}
	// ScaledJobs without a marker (an older jobfleet's, or a marker deleted
	// by hand) are collected the same way.
	if d.kube != nil {
		list, err := d.kube.Resource(scaledJobs).Namespace(d.cfg.Template.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy})
		if err != nil {
			return fmt.Errorf("listing ScaledJobs: %w", err)
		}
		for _, sj := range list.Items {
			if name := sj.GetName(); strings.HasPrefix(name, c.prefix()+"-") {
				if _, ok := names[name]; !ok {
					names[name] = nil
				}
			}
		}
	}
	var errs []error
	for name, m := range names {
		if err := d.collectOne(ctx, kube, name, m); err != nil {
			errs = append(errs, fmt.Errorf("class %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Dispatcher) collectOne(ctx context.Context, kube kubernetes.Interface, name string, m *marker) error {
	c := d.classes
	c.create.Lock()
	defer c.create.Unlock()
	now := d.clock.Now()
	url, tags, err := c.lookup(ctx, name)
	if err != nil {
		return err
	}
	if url == "" {
		// The queue is gone: remove what is left.
		return d.remove(ctx, name, "", m)
	}
	requested := time.Time{}
	if m != nil {
		requested = m.Requested
	}
	if mark := tags[tagCollecting]; mark != "" {
		sec, _ := strconv.ParseInt(mark, 10, 64)
		marked := time.Unix(sec, 0)
		idle, err := d.idle(ctx, kube, name, url, tags, requested)
		if err != nil {
			return err
		}
		if !idle || requested.After(marked) {
			_, err := c.sqs.UntagQueue(ctx, &sqs.UntagQueueInput{QueueUrl: aws.String(url), TagKeys: []string{tagCollecting}})
			d.log.Info().Str("class", name).Msg("an idle class is in use again; keeping it")
			return err
		}
		if now.Sub(marked) < d.cfg.CollectFence {
			return nil
		}
		return d.remove(ctx, name, url, m)
	}
	idle, err := d.idle(ctx, kube, name, url, tags, requested)
	if err != nil || !idle {
		return err
	}
	c.forgetName(name)
	_, err = c.sqs.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(url), Tags: map[string]string{tagCollecting: strconv.FormatInt(now.Unix(), 10)}})
	if err != nil {
		return fmt.Errorf("marking the class for collection: %w", err)
	}
	d.log.Info().Str("class", name).Dur("fence", d.cfg.CollectFence).Msg("an idle class is marked for collection")
	return nil
}

// remove deletes a collected class: its ScaledJob first, so KEDA stops
// polling, then its queue, then its marker.
func (d *Dispatcher) remove(ctx context.Context, name, url string, m *marker) error {
	c := d.classes
	if d.kube != nil {
		err := d.kube.Resource(scaledJobs).Namespace(d.cfg.Template.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting ScaledJob %s: %w", name, err)
		}
	}
	if url != "" {
		if _, err := c.sqs.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil && !isQueueMissing(err) {
			return fmt.Errorf("deleting queue %s: %w", name, err)
		}
	}
	if err := c.markers.remove(ctx, name); err != nil {
		return err
	}
	c.forgetName(name)
	if url != "" || m != nil {
		d.metrics.collected.Inc()
		d.log.Info().Str("class", name).Dur("idle_ttl", d.cfg.ClassIdleTTL).Msg("removed an idle class")
	}
	return nil
}

// idle reports whether a class can go: no message in its queue, no active
// Job, and no dispatch or request for the idle TTL.
func (d *Dispatcher) idle(ctx context.Context, kube kubernetes.Interface, name, url string, tags map[string]string, requested time.Time) (bool, error) {
	now := d.clock.Now()
	last, err := strconv.ParseInt(tags[tagLastDispatch], 10, 64)
	if err != nil {
		last = 0 // an untagged queue counts as idle since ever
	}
	if now.Sub(time.Unix(last, 0)) < d.cfg.ClassIdleTTL || now.Sub(requested) < d.cfg.ClassIdleTTL {
		return false, nil
	}
	attrs, err := d.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if isQueueMissing(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, v := range attrs.Attributes {
		if n, _ := strconv.Atoi(v); n > 0 {
			return false, nil
		}
	}
	if kube == nil {
		return true, nil
	}
	jobs, err := kube.BatchV1().Jobs(d.cfg.Template.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labelScaledJob + "=" + name})
	if err != nil {
		return false, fmt.Errorf("listing Jobs: %w", err)
	}
	for _, j := range jobs.Items {
		if j.Status.Active > 0 || (j.Status.CompletionTime == nil && j.Status.Failed == 0 && j.Status.Succeeded == 0) {
			return false, nil
		}
	}
	return true, nil
}
