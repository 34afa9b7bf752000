// Package cfn loads CloudFormation templates and resolves them offline, for
// tests. Given parameter values, a region, an account ID and the physical
// names of resources, Resolve replaces every intrinsic function with the
// value CloudFormation would compute. A test can then read concrete queue
// ARNs, bucket policies and role policies, and evaluate the policies with
// package iam.
//
// Parse reads YAML templates and their short-form tags. !Ref X becomes
// {"Ref": "X"}, !GetAtt A.B becomes {"Fn::GetAtt": ["A", "B"]}, and every
// other !Fn becomes {"Fn::Fn": ...}. JSON templates are YAML too.
//
// Resolve evaluates Ref, Fn::GetAtt, Fn::Sub (both forms), Fn::Join,
// Fn::If, Fn::Select, Fn::Split, Fn::FindInMap, Fn::Base64, Fn::GetAZs, and
// the conditions Fn::Equals, Fn::Not, Fn::And, Fn::Or and Condition. It
// also evaluates the pseudo parameters AWS::Region, AWS::AccountId,
// AWS::Partition, AWS::URLSuffix, AWS::StackName, AWS::StackId and
// AWS::NoValue (which removes the key or list item that holds it). Any
// other function is an error, never a silent pass-through. Errors name the
// resource (or output, or condition) and the property path.
//
// A resource's Ref and attributes follow CloudFormation's rules for the
// types jobfleet uses:
//
//	AWS::SQS::Queue    Ref: https://sqs.<region>.<suffix>/<account>/<name>; Arn, QueueName, QueueUrl
//	AWS::S3::Bucket    Ref: <name>; Arn arn:<partition>:s3:::<name>, DomainName, RegionalDomainName
//	AWS::IAM::Role     Ref: <name>; Arn arn:<partition>:iam::<account>:role<path><name>, RoleId
//	AWS::Events::Rule  Ref: <name>; Arn arn:<partition>:events:<region>:<account>:rule/<name>
//
// plus a few more (ManagedPolicy, SNS topics, EKS pod identity
// associations). The name is the resource's own name property (QueueName,
// BucketName, ...) when the template sets it. Otherwise it is the name given
// in Env.Names, and failing that a stable generated name. Env.Attributes
// supplies any other attribute a test needs.
package cfn
