package jobfleet_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet"
)

func ExampleDecode() {
	job, err := jobfleet.Decode([]byte(`{"version":1,"id":"export-42","type":"feature-export","features":{"rows":1e6}}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(job.ID, job.Type, job.Features["rows"])

	_, err = jobfleet.Decode([]byte(`{"version":1,"id":"export-43","type":"feature-export","image":"evil:latest"}`))
	fmt.Println(errors.Is(err, jobfleet.ErrUnknownField))
	fmt.Println(err)
	// Output:
	// export-42 feature-export 1e+06
	// true
	// invalid job message: image: unknown field: the job message contract has no field "image"
}

// A producer cannot forge a rerun: the history of a job's attempts and its
// checkpoint are kept by jobfleet, and a message that sets them is
// rejected.
func ExampleDecode_reserved() {
	_, err := jobfleet.Decode([]byte(`{"version":1,"id":"train-7","type":"train-ranker","history":[{"attempt":1,"reason":"oom","allocated_bytes":1e12}]}`))
	fmt.Println(errors.Is(err, jobfleet.ErrReservedField))
	fmt.Println(err)
	// Output:
	// true
	// invalid job message: history: reserved field: history is kept by jobfleet for the reruns it makes; a producer's message must not set it
}

func ExampleHistory() {
	history := jobfleet.History{
		{Attempt: 1, Reason: jobfleet.ReasonInterrupted, CapacityType: jobfleet.CapacitySpot},
		{Attempt: 2, Reason: jobfleet.ReasonOOM, AllocatedBytes: 4 << 30},
	}
	last, _ := history.Last()
	fmt.Println(history.RetriesSpent(), history.Count(jobfleet.ReasonInterrupted), last.Reason)
	// Output:
	// 1 1 oom
}

func ExamplePublisher() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		panic(err)
	}
	pub := jobfleet.NewPublisher(sqs.NewFromConfig(cfg), "https://sqs.us-east-1.amazonaws.com/123456789012/jobfleet-intake")
	err = pub.Publish(ctx,
		&jobfleet.Job{Version: jobfleet.Version, ID: "export-1", Type: "feature-export", Features: map[string]float64{"rows": 2e6}},
		&jobfleet.Job{Version: jobfleet.Version, ID: "export-2", Type: "feature-export", Features: map[string]float64{"rows": 5e5}},
	)
	var pubErr *jobfleet.PublishError
	if errors.As(err, &pubErr) {
		for i, why := range pubErr.Failed {
			fmt.Printf("job %d not published: %v\n", i, why)
		}
	}
}
