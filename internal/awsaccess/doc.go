// Package awsaccess checks least privilege both ways: the AWS calls that
// jobfleet's components made against the IAM roles that
// deploy/aws/jobfleet.yaml gives them.
//
// Check resolves the template for a stack's parameters, region and account
// (with package cfn), and evaluates every recorded call (with package iam)
// against the component's role policies and the target's resource policy
// (the queue policy of a queue, the bucket policy of a bucket and its
// objects), as a call made by the role. It reports each call that would be
// denied, with the statement that denied it, and each granted action that no
// call used: a grant per role, Allow statement and action.
//
// Components map to the template's roles by logical ID:
//
//	Dispatcher  DispatcherRole
//	Worker      WorkerRole
//	KEDA        KedaTriggerRole
//
// A call is named as IAM authorizes it, not as the API names it (see
// IAMAction): SendMessageBatch is sqs:SendMessage, DeleteMessageBatch is
// sqs:DeleteMessage, ChangeMessageVisibilityBatch is
// sqs:ChangeMessageVisibility, HeadObject is s3:GetObject, DeleteObjects is
// one s3:DeleteObject per key, and ListObjectsV2 is s3:ListBucket on the
// bucket with the listed prefix as the s3:prefix condition key. S3 answers
// a read of a missing object with 404 only to a caller that may list that
// key (s3:ListBucket with s3:prefix set to the key), and with 403 to any
// other; record such a read as that s3:ListBucket call too, since the code
// relies on the 404.
//
// Requests are taken to be made over TLS (aws:SecureTransport "true") unless
// a call's Context says otherwise, so the stack's deny-insecure-transport
// statements judge the deployment rather than an emulator's plain HTTP.
package awsaccess
