package awsaccess_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jobfleet/jobfleet/internal/awsaccess"
	"github.com/jobfleet/jobfleet/internal/iam"
)

// testTemplate has the three roles Check knows, shaped like jobfleet's: a
// wildcard allow with a carve-out deny, a condition on the listed prefix,
// and resource policies that deny plain HTTP and grant the worker a shared
// prefix the worker's own role does not.
const testTemplate = `
Parameters:
  Name: {Type: String, Default: app}
Resources:
  Intake:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !Sub "${Name}-intake"}
  QueuePolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref Intake]
      PolicyDocument:
        Statement:
          - {Sid: TLS, Effect: Deny, Principal: "*", Action: "sqs:*", Resource: !GetAtt Intake.Arn, Condition: {Bool: {aws:SecureTransport: "false"}}}
  Bucket:
    Type: AWS::S3::Bucket
    Properties: {BucketName: !Sub "${Name}-bucket"}
  BucketPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Bucket
      PolicyDocument:
        Statement:
          - {Sid: Shared, Effect: Allow, Principal: {AWS: !GetAtt WorkerRole.Arn}, Action: s3:GetObject, Resource: !Sub "${Bucket.Arn}/shared/*"}
  DispatcherRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {Statement: [{Effect: Allow, Principal: {Service: pods.eks.amazonaws.com}, Action: sts:AssumeRole}]}
      Policies:
        - PolicyName: dispatcher
          PolicyDocument:
            Statement:
              - {Sid: Queues, Effect: Allow, Action: [sqs:ReceiveMessage, sqs:DeleteQueue], Resource: !Sub "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:${Name}-*"}
              - {Sid: KeepIntake, Effect: Deny, Action: sqs:DeleteQueue, Resource: !GetAtt Intake.Arn}
              - {Effect: Allow, Action: s3:ListBucket, Resource: !GetAtt Bucket.Arn, Condition: {StringLike: {s3:prefix: "app/*"}}}
  WorkerRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {Statement: [{Effect: Allow, Principal: {Service: pods.eks.amazonaws.com}, Action: sts:AssumeRole}]}
      Policies:
        - PolicyName: worker
          PolicyDocument:
            Statement:
              - {Sid: Objects, Effect: Allow, Action: [s3:GetObject, s3:PutObject], Resource: !Sub "${Bucket.Arn}/app/*"}
  KedaTriggerRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {Statement: [{Effect: Allow, Principal: {AWS: arn:aws:iam::123456789012:role/keda}, Action: sts:AssumeRole}]}
      Policies:
        - PolicyName: keda
          PolicyDocument:
            Statement:
              - {Sid: Count, Effect: Allow, Action: sqs:GetQueueAttributes, Resource: !Sub "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:${Name}-*"}
`

const (
	intake = "arn:aws:sqs:us-east-1:000000000000:app-intake"
	class  = "arn:aws:sqs:us-east-1:000000000000:app-train-4gi"
	bucket = "arn:aws:s3:::app-bucket"
)

func setup(t *testing.T) awsaccess.Stack {
	t.Helper()
	path := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(path, []byte(testTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	return awsaccess.Stack{Template: path, Region: "us-east-1", Account: "000000000000"}
}

// fullCalls use every grant of every role.
func fullCalls() map[awsaccess.Component][]awsaccess.Call {
	return map[awsaccess.Component][]awsaccess.Call{
		awsaccess.Dispatcher: {
			{Action: "sqs:ReceiveMessage", Resource: intake},
			{Action: "sqs:DeleteQueue", Resource: class},
			{Action: "s3:ListBucket", Resource: bucket, Context: map[string][]string{"s3:prefix": {"app/classes/"}}},
		},
		awsaccess.Worker: {
			{Action: "s3:GetObject", Resource: bucket + "/app/jobs/j1/run.json"},
			{Action: "s3:PutObject", Resource: bucket + "/app/jobs/j1/run.json"},
		},
		awsaccess.KEDA: {
			{Action: "sqs:GetQueueAttributes", Resource: class},
		},
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		calls      func(map[awsaccess.Component][]awsaccess.Call)
		wantDenied []string
		wantUnused []string
	}{
		{
			name: "every call allowed and every grant used",
		},
		{
			name: "a call outside the grants",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				c[awsaccess.Worker] = append(c[awsaccess.Worker], awsaccess.Call{Action: "s3:GetObject", Resource: bucket + "/other/key"})
			},
			wantDenied: []string{"worker: s3:GetObject arn:aws:s3:::app-bucket/other/key: implicit deny"},
		},
		{
			name: "a call an explicit deny refuses names the statement",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				c[awsaccess.Dispatcher] = append(c[awsaccess.Dispatcher], awsaccess.Call{Action: "sqs:DeleteQueue", Resource: intake})
			},
			wantDenied: []string{"dispatcher: sqs:DeleteQueue " + intake + ": explicit deny by KeepIntake"},
		},
		{
			name: "the resource policy denies plain HTTP",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				c[awsaccess.Dispatcher][0].Context = map[string][]string{"aws:SecureTransport": {"false"}}
			},
			wantDenied: []string{"dispatcher: sqs:ReceiveMessage " + intake + " aws:SecureTransport=false: explicit deny by QueuePolicy/TLS"},
			wantUnused: []string{"dispatcher: Queues allows sqs:ReceiveMessage on arn:aws:sqs:us-east-1:000000000000:app-*"},
		},
		{
			name: "the resource policy allows what the role does not",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				c[awsaccess.Worker] = append(c[awsaccess.Worker], awsaccess.Call{Action: "s3:GetObject", Resource: bucket + "/shared/x"})
			},
		},
		{
			name: "the resource policy allows the worker's role only",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				c[awsaccess.Dispatcher] = append(c[awsaccess.Dispatcher], awsaccess.Call{Action: "s3:GetObject", Resource: bucket + "/shared/x"})
			},
			wantDenied: []string{"dispatcher: s3:GetObject arn:aws:s3:::app-bucket/shared/x: implicit deny"},
		},
		{
			name: "a listing outside the condition",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				c[awsaccess.Dispatcher][2].Context = map[string][]string{"s3:prefix": {"other/"}}
			},
			wantDenied: []string{"dispatcher: s3:ListBucket arn:aws:s3:::app-bucket s3:prefix=other/: implicit deny"},
			wantUnused: []string{"dispatcher: policy 0 statement 2 allows s3:ListBucket on arn:aws:s3:::app-bucket"},
		},
		{
			name: "a grant with no call",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				c[awsaccess.Worker] = c[awsaccess.Worker][:1]
			},
			wantUnused: []string{"worker: Objects allows s3:PutObject on arn:aws:s3:::app-bucket/app/*"},
		},
		{
			name: "a component with no calls has every grant unused",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				c[awsaccess.KEDA] = nil
			},
			wantUnused: []string{"keda: Count allows sqs:GetQueueAttributes on arn:aws:sqs:us-east-1:000000000000:app-*"},
		},
		{
			name: "a component left out is not checked",
			calls: func(c map[awsaccess.Component][]awsaccess.Call) {
				delete(c, awsaccess.KEDA)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			calls := fullCalls()
			if tt.calls != nil {
				tt.calls(calls)
			}
			rep, err := awsaccess.Check(setup(t), calls)
			if err != nil {
				t.Fatal(err)
			}
			if got := strs(rep.Denied); !reflect.DeepEqual(got, tt.wantDenied) {
				t.Errorf("denied:\n got %q\nwant %q", got, tt.wantDenied)
			}
			if got := strs(rep.Unused); !reflect.DeepEqual(got, tt.wantUnused) {
				t.Errorf("unused:\n got %q\nwant %q", got, tt.wantUnused)
			}
			if rep.Empty() != (tt.wantDenied == nil && tt.wantUnused == nil) {
				t.Errorf("Empty() = %v", rep.Empty())
			}
		})
	}
}

func TestCheckDecisions(t *testing.T) {
	t.Parallel()
	calls := map[awsaccess.Component][]awsaccess.Call{awsaccess.Dispatcher: {
		{Action: "sqs:DeleteQueue", Resource: intake},
		{Action: "sqs:PurgeQueue", Resource: class},
	}}
	rep, err := awsaccess.Check(setup(t), calls)
	if err != nil {
		t.Fatal(err)
	}
	want := []awsaccess.Denial{
		{Component: awsaccess.Dispatcher, Call: calls[awsaccess.Dispatcher][0], Decision: iam.ExplicitDeny, Statement: "KeepIntake"},
		{Component: awsaccess.Dispatcher, Call: calls[awsaccess.Dispatcher][1], Decision: iam.ImplicitDeny},
	}
	if !reflect.DeepEqual(rep.Denied, want) {
		t.Errorf("got %+v\nwant %+v", rep.Denied, want)
	}
}

func TestCheckErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		stack func(awsaccess.Stack) awsaccess.Stack
		calls map[awsaccess.Component][]awsaccess.Call
		want  string
	}{
		{"an unknown component", nil, map[awsaccess.Component][]awsaccess.Call{"karpenter": nil}, `unknown component "karpenter"`},
		{"a call without a resource", nil, map[awsaccess.Component][]awsaccess.Call{awsaccess.Worker: {{Action: "s3:GetObject"}}}, "want an action and a resource"},
		{"a parameter the template lacks", func(s awsaccess.Stack) awsaccess.Stack {
			s.Params = map[string]string{"Nope": "x"}
			return s
		}, nil, "parameter Nope"},
		{"no template", func(s awsaccess.Stack) awsaccess.Stack {
			s.Template += ".missing"
			return s
		}, nil, "reading template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t)
			if tt.stack != nil {
				s = tt.stack(s)
			}
			if _, err := awsaccess.Check(s, tt.calls); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestReportOnly(t *testing.T) {
	t.Parallel()
	rep := awsaccess.Report{
		Denied: []awsaccess.Denial{{Call: awsaccess.Call{Action: "ec2:DescribeInstances"}}, {Call: awsaccess.Call{Action: "sqs:SendMessage"}}},
		Unused: []awsaccess.Grant{{Action: "ec2:DescribeInstances"}, {Action: "s3:GetObject"}},
	}
	got := rep.Only("sqs", "s3")
	want := awsaccess.Report{Denied: rep.Denied[1:], Unused: rep.Unused[1:]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestIAMAction(t *testing.T) {
	t.Parallel()
	tests := []struct{ service, operation, want string }{
		{"sqs", "SendMessageBatch", "sqs:SendMessage"},
		{"sqs", "DeleteMessageBatch", "sqs:DeleteMessage"},
		{"sqs", "ChangeMessageVisibilityBatch", "sqs:ChangeMessageVisibility"},
		{"SQS", "ReceiveMessage", "sqs:ReceiveMessage"},
		{"s3", "HeadObject", "s3:GetObject"},
		{"s3", "DeleteObjects", "s3:DeleteObject"},
		{"s3", "ListObjectsV2", "s3:ListBucket"},
		{"s3", "PutObject", "s3:PutObject"},
	}
	for _, tt := range tests {
		if got := awsaccess.IAMAction(tt.service, tt.operation); got != tt.want {
			t.Errorf("IAMAction(%q, %q) = %q, want %q", tt.service, tt.operation, got, tt.want)
		}
	}
}

func strs[T interface{ String() string }](items []T) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.String())
	}
	return out
}
