package loadtest_test

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/internal/testenv"
)

func deleteQueues(env *testenv.SQS, prefix string) {
	ctx := context.Background()
	out, err := env.Client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix)})
	if err != nil {
		return
	}
	for _, url := range out.QueueUrls {
		_, _ = env.Client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	}
}
