// Package aws holds jobfleet's CloudFormation template (jobfleet.yaml) for a
// real install: the queues, the EventBridge rules for interruption notices,
// the bucket, and the IAM roles of the dispatcher, the workers and KEDA's SQS
// trigger. It has no Go code; its tests check the template offline with
// packages cfn, iam and awsaccess: that it resolves under every mode, that
// its rules catch real sample events that the dispatcher decodes, and that
// each role allows exactly the calls its component makes.
package aws
