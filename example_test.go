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
	fmt.Println(job.ID, job.Type, job.Features["rows"], job.Attempt())

	_, err = jobfleet.Decode([]byte(`{"version":1,"id":"export-43","type":"feature-export","image":"evil:latest"}`))
	fmt.Println(errors.Is(err, jobfleet.ErrUnknownField))
	fmt.Println(err)
	// Output:
	// export-42 feature-export 1e+06 1
	// true
	// invalid job message: image: unknown field: the job message contract has no field "image"
}

func ExampleJob_Rerun() {
	job := &jobfleet.Job{Version: jobfleet.Version, ID: "train-7", Type: "train-ranker"}
	rerun := job.Rerun(jobfleet.Attempt{Reason: jobfleet.ReasonInterrupted, CapacityType: jobfleet.CapacitySpot, Checkpoint: "s3://ckpt/train-7/"})
	fmt.Println(rerun.Attempt(), rerun.Checkpoint, rerun.RetriesSpent())
	// Output:
	// 2 s3://ckpt/train-7/ 0
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
