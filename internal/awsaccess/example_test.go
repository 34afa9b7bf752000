package awsaccess_test

import (
	"fmt"

	"github.com/jobfleet/jobfleet/internal/awsaccess"
)

// KEDA's calls in an end-to-end run, checked against jobfleet's own
// template: it read a class queue's counts, which its role allows, and
// intake's, which the role refuses.
func ExampleCheck() {
	stack := awsaccess.Stack{
		Template: "../../deploy/aws/jobfleet.yaml",
		Params: map[string]string{
			"Name": "jfe2e", "ClassPrefix": "jfe2e", "BucketName": "jfe2e-state",
			"KedaOperatorRoleArn": "arn:aws:iam::000000000000:role/keda-operator",
		},
		Region:  "us-east-1",
		Account: "000000000000",
	}
	rep, err := awsaccess.Check(stack, map[awsaccess.Component][]awsaccess.Call{
		awsaccess.KEDA: {
			{Action: awsaccess.IAMAction("sqs", "GetQueueAttributes"), Resource: "arn:aws:sqs:us-east-1:000000000000:jfe2e-train-default-4gi"},
			{Action: awsaccess.IAMAction("sqs", "GetQueueAttributes"), Resource: "arn:aws:sqs:us-east-1:000000000000:jfe2e-intake"},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range rep.Denied {
		fmt.Println("denied:", d)
	}
	for _, g := range rep.Unused {
		fmt.Println("unused:", g)
	}
	// Output:
	// denied: keda: sqs:GetQueueAttributes arn:aws:sqs:us-east-1:000000000000:jfe2e-intake: explicit deny by OnlyClassQueues
}
