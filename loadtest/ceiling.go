package loadtest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/jobfleet/jobfleet/internal/awsclient"
)

// ceiling measures the simplest possible router on the same server: four
// loops that each receive ten messages, send them to one queue in a batch
// and delete them in a batch. No dispatcher can beat it; the dispatcher's
// rate is judged against it.
func ceiling(ctx context.Context, api SQSAPI, cfg Config, runID string, res *Result) error {
	src, err := api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobfleet-ceiling-src-" + runID)})
	if err != nil {
		return err
	}
	dst, err := api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobfleet-ceiling-dst-" + runID)})
	if err != nil {
		return err
	}
	defer func() {
		for _, q := range []*string{src.QueueUrl, dst.QueueUrl} {
			_, _ = api.DeleteQueue(context.WithoutCancel(ctx), &sqs.DeleteQueueInput{QueueUrl: q})
		}
	}()
	var sent sync.Map
	if err := publish(ctx, api, aws.ToString(src.QueueUrl), jobs(cfg, runID+"c"), 0, &sent, nil); err != nil {
		return err
	}
	calls := &awsclient.Calls{}
	client := api
	if c, ok := api.(*sqs.Client); ok {
		client = CountingClient(c, calls)
	}
	start := time.Now()
	arr := newArrivals(start)
	var moved atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for moved.Load() < int64(cfg.Jobs) && ctx.Err() == nil {
				out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: src.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
					MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
				})
				if err != nil || len(out.Messages) == 0 {
					continue
				}
				send := make([]sqstypes.SendMessageBatchRequestEntry, len(out.Messages))
				del := make([]sqstypes.DeleteMessageBatchRequestEntry, len(out.Messages))
				for i, m := range out.Messages {
					id := aws.String(strconv.Itoa(i))
					send[i] = sqstypes.SendMessageBatchRequestEntry{Id: id, MessageBody: m.Body}
					del[i] = sqstypes.DeleteMessageBatchRequestEntry{Id: id, ReceiptHandle: m.ReceiptHandle}
				}
				if _, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: dst.QueueUrl, Entries: send}); err != nil {
					continue
				}
				now := time.Now()
				if _, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: src.QueueUrl, Entries: del}); err != nil {
					continue
				}
				now = now.Truncate(time.Millisecond) // as coarse as SentTimestamp
				for _, m := range out.Messages {
					lat := 0.0
					if at, ok := sentTime(m); ok {
						lat = float64(now.Sub(at)) / float64(time.Millisecond)
					}
					arr.add(aws.ToString(m.MessageId), lat, now)
				}
				moved.Add(int64(len(out.Messages)))
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	elapsed := arr.last.Sub(start).Seconds()
	if elapsed <= 0 {
		return fmt.Errorf("the plain loop moved nothing")
	}
	res.CeilingPerSec = float64(moved.Load()) / elapsed
	res.CeilingCalls = float64(calls.Total()) / float64(cfg.Jobs)
	res.CeilingP50Ms, res.CeilingP99Ms = percentile(arr.latency, 0.5), percentile(arr.latency, 0.99)
	res.CeilingTimeline = arr.timeline()
	return nil
}
