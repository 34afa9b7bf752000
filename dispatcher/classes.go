package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/clock"

	"github.com/jobfleet/jobfleet/jobtype"
)

// QueueAPI is the SQS calls that manage class queues.
type QueueAPI interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, opts ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, opts ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	DeleteQueue(ctx context.Context, in *sqs.DeleteQueueInput, opts ...func(*sqs.Options)) (*sqs.DeleteQueueOutput, error)
	TagQueue(ctx context.Context, in *sqs.TagQueueInput, opts ...func(*sqs.Options)) (*sqs.TagQueueOutput, error)
	ListQueueTags(ctx context.Context, in *sqs.ListQueueTagsInput, opts ...func(*sqs.Options)) (*sqs.ListQueueTagsOutput, error)
}

// tagLastDispatch records on a class queue when a job was last routed to
// it, so the idle-class collector on any replica knows it is in use.
const tagLastDispatch = "jobfleet:last-dispatch"

// classes keeps every class in use ready: its queue exists with a redrive
// policy to the dead-letter queue, and its ScaledJob is applied. Ready
// classes are cached, so routing a job makes no Kubernetes call.
type classes struct {
	sqs      QueueAPI
	kube     dynamic.Interface
	registry *jobtype.Registry
	tmpl     Template
	deadARN  string
	// maxReceives is the class queues' redrive threshold.
	maxReceives int
	ttl         time.Duration
	clock       clock.Clock
	log         zerolog.Logger

	mu     sync.Mutex
	ready  map[Class]*classState
	flight singleflight.Group
}

type classState struct {
	url        string
	lastTagged time.Time
}

func (c *classes) prefix() string { return c.tmpl.prefix() }

// ensure returns the class's queue URL, creating the queue and applying
// the ScaledJob the first time.
func (c *classes) ensure(ctx context.Context, cl Class) (string, error) {
	c.mu.Lock()
	st, ok := c.ready[cl]
	c.mu.Unlock()
	if ok {
		c.touch(cl, st)
		return st.url, nil
	}
	v, err, _ := c.flight.Do(cl.Name(c.prefix()), func() (any, error) {
		url, err := c.create(ctx, cl)
		if err != nil {
			return "", err
		}
		c.mu.Lock()
		c.ready[cl] = &classState{url: url, lastTagged: c.clock.Now()}
		c.mu.Unlock()
		return url, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// forget drops a class from the cache, after its queue turned out to be
// gone (collected by another replica).
func (c *classes) forget(cl Class) {
	c.mu.Lock()
	delete(c.ready, cl)
	c.mu.Unlock()
}

// touch tags the queue with the time of the last dispatch, at most every
// quarter of the idle TTL, in the background.
func (c *classes) touch(cl Class, st *classState) {
	now := c.clock.Now()
	c.mu.Lock()
	due := now.Sub(st.lastTagged) >= c.ttl/4
	if due {
		st.lastTagged = now
	}
	c.mu.Unlock()
	if !due {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.sqs.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(st.url), Tags: map[string]string{tagLastDispatch: strconv.FormatInt(now.Unix(), 10)}})
		if err != nil {
			c.log.Warn().Err(err).Str("queue", st.url).Msg("tagging a class queue as in use")
		}
	}()
}

// create makes the class's queue and applies its ScaledJob.
func (c *classes) create(ctx context.Context, cl Class) (string, error) {
	typ, ok := c.registry.Type(cl.Type)
	if !ok {
		return "", fmt.Errorf("job type %q is not registered", cl.Type)
	}
	pool, _ := c.registry.Pool(typ.Pool)
	name := cl.Name(c.prefix())
	url, err := c.createQueue(ctx, name)
	if err != nil {
		return "", err
	}
	if c.kube != nil {
		if err := c.apply(ctx, cl, typ, pool, url); err != nil {
			return "", err
		}
	}
	c.log.Info().Str("class", cl.String()).Str("queue", url).Msg("class ready")
	return url, nil
}

func (c *classes) createQueue(ctx context.Context, name string) (string, error) {
	if out, err := c.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)}); err == nil {
		return aws.ToString(out.QueueUrl), nil
	} else if !isQueueMissing(err) {
		return "", fmt.Errorf("looking up queue %s: %w", name, err)
	}
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
		Tags: map[string]string{"jobfleet:managed": "true", tagLastDispatch: strconv.FormatInt(c.clock.Now().Unix(), 10)},
	})
	if err != nil {
		return "", fmt.Errorf("creating queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// apply server-side applies the class's ScaledJob with field manager
// jobfleet.
func (c *classes) apply(ctx context.Context, cl Class, typ *jobtype.Type, pool *jobtype.Pool, url string) error {
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

// urls returns the queue URLs of the ready classes.
func (c *classes) urls() map[Class]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Class]string, len(c.ready))
	for cl, st := range c.ready {
		out[cl] = st.url
	}
	return out
}

// reconcile re-applies the ScaledJob of every class this replica routed
// to, undoing drift (an edited or deleted ScaledJob).
func (c *classes) reconcile(ctx context.Context) error {
	if c.kube == nil {
		return nil
	}
	c.mu.Lock()
	ready := make(map[Class]string, len(c.ready))
	for cl, st := range c.ready {
		ready[cl] = st.url
	}
	c.mu.Unlock()
	var errs []error
	for cl, url := range ready {
		typ, ok := c.registry.Type(cl.Type)
		if !ok {
			continue
		}
		pool, _ := c.registry.Pool(typ.Pool)
		if err := c.apply(ctx, cl, typ, pool, url); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// isQueueMissing reports whether an SQS error says the queue does not
// exist.
func isQueueMissing(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
			return true
		}
	}
	var missing *sqstypes.QueueDoesNotExist
	return errors.As(err, &missing)
}

// forgetName drops a class by its name, after the collector removed it.
func (c *classes) forgetName(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for cl := range c.ready {
		if cl.Name(c.prefix()) == name {
			delete(c.ready, cl)
		}
	}
}
