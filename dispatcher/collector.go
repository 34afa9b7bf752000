package dispatcher

import (
	"context"
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
	"k8s.io/client-go/kubernetes"
)

// labelScaledJob is the label KEDA puts on the Jobs of a ScaledJob.
const labelScaledJob = "scaledjob.keda.sh/name"

// collect removes idle classes: a class whose queue holds no message
// (visible, in flight or delayed), whose ScaledJob has no active Job, and
// to which no replica routed a job for the idle TTL. It is stateless, so a
// new leader continues where the last one stopped. The ScaledJob goes
// first, so KEDA stops polling before the queue disappears.
func (d *Dispatcher) collect(ctx context.Context, kube kubernetes.Interface) error {
	list, err := d.kube.Resource(scaledJobs).Namespace(d.cfg.Template.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy})
	if err != nil {
		return fmt.Errorf("listing ScaledJobs: %w", err)
	}
	prefix := d.cfg.Template.prefix() + "-"
	var errs []error
	for _, sj := range list.Items {
		name := sj.GetName()
		if !strings.HasPrefix(name, prefix) {
			continue // another jobfleet's class
		}
		idle, err := d.idle(ctx, kube, name, sj.GetAnnotations()[AnnotationQueue])
		if err != nil {
			errs = append(errs, fmt.Errorf("class %s: %w", name, err))
			continue
		}
		if !idle {
			continue
		}
		if err := d.kube.Resource(scaledJobs).Namespace(d.cfg.Template.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting ScaledJob %s: %w", name, err))
			continue
		}
		if url := sj.GetAnnotations()[AnnotationQueue]; url != "" {
			if _, err := d.sqs.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil && !isQueueMissing(err) {
				errs = append(errs, fmt.Errorf("deleting queue of class %s: %w", name, err))
			}
		}
		d.classes.forgetName(name)
		d.metrics.collected.Inc()
		d.log.Info().Str("class", name).Dur("idle_ttl", d.cfg.ClassIdleTTL).Msg("removed an idle class")
	}
	return errors.Join(errs...)
}

func (d *Dispatcher) idle(ctx context.Context, kube kubernetes.Interface, name, url string) (bool, error) {
	if url == "" {
		return false, errors.New("the ScaledJob names no queue")
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
		return true, nil // an orphaned ScaledJob
	}
	if err != nil {
		return false, err
	}
	for _, v := range attrs.Attributes {
		if n, _ := strconv.Atoi(v); n > 0 {
			return false, nil
		}
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
	tags, err := d.sqs.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
	if err != nil {
		return false, err
	}
	last, err := strconv.ParseInt(tags.Tags[tagLastDispatch], 10, 64)
	if err != nil {
		return false, fmt.Errorf("queue has no valid %s tag", tagLastDispatch)
	}
	return d.clock.Now().Sub(time.Unix(last, 0)) >= d.cfg.ClassIdleTTL, nil
}
