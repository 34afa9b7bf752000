package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
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
	UntagQueue(ctx context.Context, in *sqs.UntagQueueInput, opts ...func(*sqs.Options)) (*sqs.UntagQueueOutput, error)
	ListQueueTags(ctx context.Context, in *sqs.ListQueueTagsInput, opts ...func(*sqs.Options)) (*sqs.ListQueueTagsOutput, error)
}

// A class's state lives in its queue's tags, where every replica reads it:
//
//	jobfleet:managed        the queue is a class queue of jobfleet's
//	jobfleet:ready          the leader created the queue and applied the ScaledJob (unix time)
//	jobfleet:last-dispatch  a job was last routed here (unix time, refreshed every quarter of the idle TTL)
//	jobfleet:collecting     the leader is removing the idle class (unix time)
//
// and the set of classes wanted lives in S3, one marker object per class
// (<prefix>/classes/<name>.json) that any replica writes to ask for a
// class. Only the leader creates, changes and deletes queues and
// ScaledJobs, from these; a replica's memory holds only a cache of classes
// it confirmed ready, each for at most classFresh.
const (
	tagManaged      = "jobfleet:managed"
	tagReady        = "jobfleet:ready"
	tagLastDispatch = "jobfleet:last-dispatch"
	tagCollecting   = "jobfleet:collecting"
)

// A replica sends to a class it confirmed ready for at most
// Config.ClassFresh without confirming again. The collector waits
// Config.CollectFence after marking a class before removing it, long enough
// for any send confirmed before the mark to have landed and shown in the
// queue's counts (which lag up to a minute): so a job is never sent to a
// queue that is then deleted.

// errClassPending: the class is not ready yet; the leader has been asked
// for it and the job returns to intake for a short while.
var errClassPending = errors.New("the class is being created by the leader")

// classes gives intake the queue of a class, on any replica.
type classes struct {
	sqs      QueueAPI
	kube     dynamic.Interface
	markers  *markers
	registry *jobtype.Registry
	tmpl     Template
	deadARN  string
	// maxReceives is the class queues' redrive threshold.
	maxReceives int
	ttl         time.Duration
	// freshFor is how long a confirmation stays good (Config.ClassFresh).
	freshFor time.Duration
	clock    clock.Clock
	log      zerolog.Logger
	// leading is true on the replica that may change classes.
	leading atomic.Bool
	// wake nudges the leader's class controller after a request.
	wake chan struct{}

	mu     sync.Mutex
	ready  map[Class]*classState
	flight singleflight.Group
	// create serializes the leader's changes to classes.
	create sync.Mutex
}

type classState struct {
	url        string
	confirmed  time.Time // when the class was last seen ready
	lastTagged time.Time
}

func (c *classes) prefix() string { return c.tmpl.prefix() }

// ensure returns the queue URL of a ready class. A replica confirms a
// class ready from its queue's tags at most every classFresh; the leader
// creates a missing class itself; any other replica asks the leader for it
// and returns errClassPending.
func (c *classes) ensure(ctx context.Context, cl Class) (string, error) {
	c.mu.Lock()
	st, ok := c.ready[cl]
	isFresh := ok && c.clock.Since(st.confirmed) < c.freshFor
	var url string
	if isFresh {
		url = st.url // a confirmation may rewrite it, under mu
	}
	c.mu.Unlock()
	if isFresh {
		c.touch(st)
		return url, nil
	}
	name := cl.Name(c.prefix())
	// One confirmation per class at a time, shared by every router that
	// waits for it: it runs on its own deadline, not the first caller's,
	// and each caller waits no longer than its own.
	ch := c.flight.DoChan(name, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), confirmTimeout)
		defer cancel()
		url, err := c.confirm(ctx, cl)
		if err != nil {
			return "", err
		}
		now := c.clock.Now()
		c.mu.Lock()
		st, ok := c.ready[cl]
		if ok {
			st.url, st.confirmed = url, now
		} else {
			st = &classState{url: url, confirmed: now}
			c.ready[cl] = st
		}
		c.mu.Unlock()
		c.touch(st)
		return url, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", fmt.Errorf("confirming class %s: %w", name, ctx.Err())
	}
}

// confirmTimeout bounds one confirmation of a class, creation included.
const confirmTimeout = time.Minute

// confirm checks that a class is ready. When it is not, the leader
// creates it, and any other replica asks the leader for it.
func (c *classes) confirm(ctx context.Context, cl Class) (string, error) {
	name := cl.Name(c.prefix())
	url, tags, err := c.lookup(ctx, name)
	if err != nil {
		return "", err
	}
	if url != "" && tags[tagReady] != "" && tags[tagCollecting] == "" {
		return url, nil
	}
	if c.leading.Load() {
		return c.createClass(ctx, cl)
	}
	if err := c.markers.request(ctx, name, cl); err != nil {
		return "", fmt.Errorf("asking for class %s: %w", name, err)
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return "", fmt.Errorf("class %s: %w", name, errClassPending)
}

// lookup returns a class queue's URL and tags; an empty URL when the queue
// does not exist.
func (c *classes) lookup(ctx context.Context, name string) (string, map[string]string, error) {
	out, err := c.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if isQueueMissing(err) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("looking up queue %s: %w", name, err)
	}
	url := aws.ToString(out.QueueUrl)
	tags, err := c.sqs.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
	if isQueueMissing(err) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading the tags of queue %s: %w", name, err)
	}
	return url, tags.Tags, nil
}

// fresh reports whether this replica confirmed a class ready within the
// last ClassFresh: the collector's fence covers sends made so soon after.
func (c *classes) fresh(cl Class) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.ready[cl]
	return ok && c.clock.Since(st.confirmed) < c.freshFor
}

// forget drops a class from the cache, after its queue turned out to be
// gone.
func (c *classes) forget(cl Class) {
	c.mu.Lock()
	delete(c.ready, cl)
	c.mu.Unlock()
}

// forgetName drops a class by its name.
func (c *classes) forgetName(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for cl := range c.ready {
		if cl.Name(c.prefix()) == name {
			delete(c.ready, cl)
		}
	}
}

// touch tags the queue with the time of the last dispatch, at most every
// quarter of the idle TTL, in the background. The collector leaves a class
// alone for the idle TTL after it.
func (c *classes) touch(st *classState) {
	now := c.clock.Now()
	c.mu.Lock()
	due := now.Sub(st.lastTagged) >= c.ttl/4
	if due {
		st.lastTagged = now
	}
	url := st.url
	c.mu.Unlock()
	if !due {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.sqs.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: aws.String(url), Tags: map[string]string{tagLastDispatch: strconv.FormatInt(now.Unix(), 10)}})
		if err != nil {
			// The next job routed here tries again. Until one succeeds the
			// collector may mark the class, which makes replicas ask for it
			// again, and a job sent meanwhile keeps it: nothing is lost.
			c.mu.Lock()
			st.lastTagged = time.Time{}
			c.mu.Unlock()
			c.log.Warn().Err(err).Str("queue", url).Msg("tagging a class queue as in use; the next job routed here tries again")
		}
	}()
}

// urls returns the queue URLs of the classes this replica confirmed.
func (c *classes) urls() map[Class]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Class]string, len(c.ready))
	for cl, st := range c.ready {
		out[cl] = st.url
	}
	return out
}

// isQueueMissing reports whether an SQS error says the queue does not
// exist.
func isQueueMissing(err error) bool {
	if err == nil {
		return false
	}
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
