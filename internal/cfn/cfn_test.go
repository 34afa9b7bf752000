package cfn_test

import (
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/jobfleet/jobfleet/internal/cfn"
	"github.com/jobfleet/jobfleet/internal/iam"
)

const testTemplate = `
AWSTemplateFormatVersion: 2010-09-09
Description: cfn's test template
Parameters:
  Name:
    Type: String
    Default: app
    AllowedPattern: "[a-z-]+"
  Issuer:
    Type: String
    Default: ""
  Days:
    Type: Number
    Default: 30
    MinValue: 1
  Zones:
    Type: CommaDelimitedList
    Default: "a, b"
Mappings:
  Sizes:
    us-east-2: {Small: "1", Large: "9"}
Conditions:
  HasIssuer: !Not [!Equals [!Ref Issuer, ""]]
  NoIssuer: !Not [!Condition HasIssuer]
  Both: !And [!Condition HasIssuer, !Equals [!Ref Name, app]]
  Either: !Or [!Condition HasIssuer, !Equals [!Ref "AWS::Region", us-east-2]]
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub ${Name}-intake
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetter.Arn
        maxReceiveCount: !Ref Days
  DeadLetter:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Join ["-", [!Ref Name, dead, letter]]
  Bucket:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
    Properties:
      Tags:
        - {Key: region, Value: !Ref "AWS::Region"}
        - !If [HasIssuer, {Key: issuer, Value: !Ref Issuer}, !Ref "AWS::NoValue"]
  OnlyWithIssuer:
    Type: AWS::SQS::Queue
    Condition: HasIssuer
    Properties:
      QueueName: !Sub ${Name}-issuer
  Role:
    Type: AWS::IAM::Role
    Properties:
      Path: /apps/
      AssumeRolePolicyDocument: !If
        - HasIssuer
        - !Sub |
          {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": "arn:${AWS::Partition}:iam::${AWS::AccountId}:oidc-provider/${Issuer}"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"${Issuer}:sub": "system:serviceaccount:ns:sa"}}}]}
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Principal: {Service: pods.eks.amazonaws.com}
              Action: [sts:AssumeRole, sts:TagSession]
      Policies:
        - PolicyName: queues
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Action: sqs:SendMessage
                Resource: [!GetAtt Queue.Arn, !GetAtt DeadLetter.Arn]
  Extra:
    Type: AWS::IAM::Policy
    Properties:
      PolicyName: extra
      Roles: [!Ref Role]
      PolicyDocument:
        Statement:
          Effect: Allow
          Action: s3:GetObject
          Resource: !Sub "${Bucket.Arn}/${Name}/*"
Outputs:
  QueueUrl:
    Value: !Ref Queue
  Literal:
    Value: !Sub
      - "${!Literal}-${Size}-${AWS::StackName}"
      - Size: !FindInMap [Sizes, !Ref "AWS::Region", Large]
  Second:
    Value: !Select [1, !Ref Zones]
  Split:
    Value: !Select [2, !Split [",", "x,y,z"]]
  Encoded:
    Value: !Base64 abc
  Zones:
    Value: !Join [",", !GetAZs ""]
  IssuerQueue:
    Condition: HasIssuer
    Value: !GetAtt OnlyWithIssuer.QueueUrl
  Conditions:
    Value: !Join [",", [!If [Both, both, not-both], !If [Either, either, neither], !If [NoIssuer, no-issuer, issuer]]]
`

func env(params map[string]string) cfn.Env {
	return cfn.Env{Region: "us-east-2", AccountID: "123456789012", StackName: "test", Parameters: params}
}

func resolve(t *testing.T, e cfn.Env) *cfn.Resolved {
	t.Helper()
	tmpl, err := cfn.Parse([]byte(testTemplate))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	r, err := tmpl.Resolve(e)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return r
}

func TestParseShortForms(t *testing.T) {
	t.Parallel()
	tmpl, err := cfn.Parse([]byte(testTemplate))
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.FormatVersion != "2010-09-09" {
		t.Errorf("FormatVersion %q: an unquoted date must stay a string", tmpl.FormatVersion)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"!Sub scalar", tmpl.Resources["Queue"].Properties["QueueName"], map[string]any{"Fn::Sub": "${Name}-intake"}},
		{"!GetAtt dotted", tmpl.Resources["Queue"].Properties["RedrivePolicy"].(map[string]any)["deadLetterTargetArn"], map[string]any{"Fn::GetAtt": []any{"DeadLetter", "Arn"}}},
		{"!Ref", tmpl.Outputs["QueueUrl"].Value, map[string]any{"Ref": "Queue"}},
		{"!Join with nested !Ref", tmpl.Resources["DeadLetter"].Properties["QueueName"], map[string]any{"Fn::Join": []any{"-", []any{map[string]any{"Ref": "Name"}, "dead", "letter"}}}},
		{"!Not of !Equals", tmpl.Conditions["HasIssuer"], map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "Issuer"}, ""}}}}},
		{"!Condition", tmpl.Conditions["NoIssuer"], map[string]any{"Fn::Not": []any{map[string]any{"Condition": "HasIssuer"}}}},
		{"a number stays a number", tmpl.Resources["Queue"].Properties["RedrivePolicy"].(map[string]any)["maxReceiveCount"], map[string]any{"Ref": "Days"}},
		{"a resource attribute", tmpl.Resources["Bucket"].DeletionPolicy, "Retain"},
		{"a resource condition", tmpl.Resources["OnlyWithIssuer"].Condition, "HasIssuer"},
		{"a numeric default becomes a string", *tmpl.Parameters["Days"].Default, "30"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	withIssuer := resolve(t, env(map[string]string{"Issuer": "oidc.eks.us-east-2.amazonaws.com/id/ABC"}))
	without := resolve(t, env(nil))
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"queue Ref is its URL", withIssuer.Outputs["QueueUrl"], "https://sqs.us-east-2.amazonaws.com/123456789012/app-intake"},
		{"GetAtt Arn in a property", withIssuer.Resources["Queue"].Properties["RedrivePolicy"], map[string]any{"deadLetterTargetArn": "arn:aws:sqs:us-east-2:123456789012:app-dead-letter", "maxReceiveCount": "30"}},
		{"Join", withIssuer.Resources["DeadLetter"].Properties["QueueName"], "app-dead-letter"},
		{"Sub with variables, a literal and a pseudo parameter", withIssuer.Outputs["Literal"], "${Literal}-9-test"},
		{"Select of a list parameter", withIssuer.Outputs["Second"], "b"},
		{"Select of Split", withIssuer.Outputs["Split"], "z"},
		{"Base64", withIssuer.Outputs["Encoded"], "YWJj"},
		{"GetAZs", withIssuer.Outputs["Zones"], "us-east-2a,us-east-2b,us-east-2c"},
		{"If keeps a list item", withIssuer.Resources["Bucket"].Properties["Tags"], []any{map[string]any{"Key": "region", "Value": "us-east-2"}, map[string]any{"Key": "issuer", "Value": "oidc.eks.us-east-2.amazonaws.com/id/ABC"}}},
		{"If with NoValue drops a list item", without.Resources["Bucket"].Properties["Tags"], []any{map[string]any{"Key": "region", "Value": "us-east-2"}}},
		{"conditions with an issuer", withIssuer.Outputs["Conditions"], "both,either,issuer"},
		{"conditions without", without.Outputs["Conditions"], "not-both,either,no-issuer"},
		{"a conditional output", withIssuer.Outputs["IssuerQueue"], "https://sqs.us-east-2.amazonaws.com/123456789012/app-issuer"},
		{"a conditional output left out", without.Outputs["IssuerQueue"], nil},
		{"the condition map", without.Conditions, map[string]bool{"HasIssuer": false, "NoIssuer": true, "Both": false, "Either": true}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
	if _, ok := without.Resources["OnlyWithIssuer"]; ok {
		t.Error("a resource whose condition is false is created")
	}
}

func TestNamesAndAttributes(t *testing.T) {
	t.Parallel()
	given := env(nil)
	given.Names = map[string]string{"Bucket": "my-bucket"}
	r := resolve(t, given)
	generated := resolve(t, env(nil))
	tests := []struct {
		name       string
		r          *cfn.Resolved
		id, attr   string
		want       string
		wantPrefix string
	}{
		{name: "bucket Ref", r: r, id: "Bucket", want: "my-bucket"},
		{name: "bucket Arn", r: r, id: "Bucket", attr: "Arn", want: "arn:aws:s3:::my-bucket"},
		{name: "bucket regional domain", r: r, id: "Bucket", attr: "RegionalDomainName", want: "my-bucket.s3.us-east-2.amazonaws.com"},
		{name: "generated bucket name", r: generated, id: "Bucket", wantPrefix: "test-bucket-"},
		{name: "queue Arn", r: r, id: "Queue", attr: "Arn", want: "arn:aws:sqs:us-east-2:123456789012:app-intake"},
		{name: "queue name", r: r, id: "Queue", attr: "QueueName", want: "app-intake"},
		{name: "role Arn with its path", r: r, id: "Role", attr: "Arn", wantPrefix: "arn:aws:iam::123456789012:role/apps/test-Role-"},
		{name: "a parameter", r: r, id: "Name", want: "app"},
		{name: "a pseudo parameter", r: r, id: "AWS::Partition", want: "aws"},
	}
	for _, tt := range tests {
		var got string
		var err error
		if tt.attr == "" {
			got, err = tt.r.Ref(tt.id)
		} else {
			got, err = tt.r.GetAtt(tt.id, tt.attr)
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if tt.want != "" && got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
		if tt.wantPrefix != "" && !strings.HasPrefix(got, tt.wantPrefix) {
			t.Errorf("%s: got %q, want a name starting %q", tt.name, got, tt.wantPrefix)
		}
	}
	again := resolve(t, env(nil))
	a, _ := generated.Ref("Bucket")
	b, _ := again.Ref("Bucket")
	if a != b || a != strings.ToLower(a) {
		t.Errorf("generated bucket names %q and %q: want stable and lower case", a, b)
	}
	if _, err := generated.GetAtt("OnlyWithIssuer", "Arn"); err == nil {
		t.Error("GetAtt of a resource that is not created succeeded")
	}
	if _, err := r.GetAtt("Queue", "NoSuchAttribute"); err == nil {
		t.Error("GetAtt of an unknown attribute succeeded")
	}
	withAttr := env(nil)
	withAttr.Attributes = map[string]map[string]any{"Queue": {"Custom": "x"}}
	if got, err := resolve(t, withAttr).GetAtt("Queue", "Custom"); err != nil || got != "x" {
		t.Errorf("Env.Attributes: got %q, %v", got, err)
	}
}

// TestResolvedIsSafeForParallelTests: Ref and GetAtt from many goroutines
// (run with -race).
func TestResolvedIsSafeForParallelTests(t *testing.T) {
	t.Parallel()
	r := resolve(t, env(nil))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := r.GetAtt("Role", "Arn"); err != nil {
				t.Error(err)
			}
			if _, err := r.Ref("Queue"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestRolePolicies(t *testing.T) {
	t.Parallel()
	for _, issuer := range []string{"", "oidc.eks.us-east-2.amazonaws.com/id/ABC"} {
		r := resolve(t, env(map[string]string{"Issuer": issuer}))
		policies, err := r.RolePolicies("Role")
		if err != nil {
			t.Fatal(err)
		}
		if len(policies) != 2 {
			t.Fatalf("got %d policies, want the inline one and the AWS::IAM::Policy", len(policies))
		}
		allowed := []iam.Request{
			{Action: "sqs:SendMessage", Resource: "arn:aws:sqs:us-east-2:123456789012:app-intake"},
			{Action: "s3:GetObject", Resource: "arn:aws:s3:::" + must(r.Ref("Bucket")) + "/app/key"},
		}
		for _, req := range allowed {
			if d, _ := iam.Evaluate(policies, req); d != iam.Allowed {
				t.Errorf("%+v: %v", req, d)
			}
		}
		if d, _ := iam.Evaluate(policies, iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::" + must(r.Ref("Bucket")) + "/other/key"}); d != iam.ImplicitDeny {
			t.Errorf("another prefix: %v", d)
		}
		trust, err := r.TrustPolicy("Role")
		if err != nil {
			t.Fatal(err)
		}
		irsa := iam.Request{
			Principal: iam.Caller{Type: "Federated", ID: "arn:aws:iam::123456789012:oidc-provider/" + issuer},
			Action:    "sts:AssumeRoleWithWebIdentity",
			Context:   map[string][]string{issuer + ":sub": {"system:serviceaccount:ns:sa"}},
		}
		pods := iam.Request{Principal: iam.Caller{Type: "Service", ID: "pods.eks.amazonaws.com"}, Action: "sts:AssumeRole"}
		wantIRSA, wantPods := iam.Allowed, iam.ImplicitDeny
		if issuer == "" {
			wantIRSA, wantPods = iam.ImplicitDeny, iam.Allowed
		}
		if d, _ := iam.Evaluate([]iam.Policy{trust}, irsa); d != wantIRSA {
			t.Errorf("issuer %q: web identity: %v, want %v", issuer, d, wantIRSA)
		}
		if d, _ := iam.Evaluate([]iam.Policy{trust}, pods); d != wantPods {
			t.Errorf("issuer %q: pod identity: %v, want %v", issuer, d, wantPods)
		}
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func TestRolePoliciesRefusesWhatItCannotSee(t *testing.T) {
	t.Parallel()
	for _, prop := range []string{"ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]", "PermissionsBoundary: arn:aws:iam::123456789012:policy/b"} {
		tmpl, err := cfn.Parse([]byte(`
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {Statement: [{Effect: Allow, Principal: {Service: ec2.amazonaws.com}, Action: sts:AssumeRole}]}
      ` + prop + `
`))
		if err != nil {
			t.Fatal(err)
		}
		r, err := tmpl.Resolve(env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.RolePolicies("Role"); err == nil {
			t.Errorf("RolePolicies accepted a role with %s", prop)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		template string
		params   map[string]string
		want     []string
	}{
		{
			name:     "an unknown Ref names the resource and path",
			template: "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      RedrivePolicy:\n        deadLetterTargetArn: !Ref Nope\n",
			want:     []string{`resource Q: Properties.RedrivePolicy.deadLetterTargetArn.Ref: no parameter or resource "Nope"`},
		},
		{
			name:     "GetAtt of a resource that is not created",
			template: "Conditions:\n  Never: !Equals [a, b]\nResources:\n  A:\n    Type: AWS::SQS::Queue\n    Condition: Never\n  B:\n    Type: AWS::SQS::Queue\n    Properties:\n      Tags: [{Key: k, Value: !GetAtt A.Arn}]\n",
			want:     []string{"resource B: Properties.Tags[0].Value.Fn::GetAtt: resource A is not created (its condition Never is false)"},
		},
		{
			name:     "an unknown attribute",
			template: "Resources:\n  A:\n    Type: AWS::SQS::Queue\n  B:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !GetAtt A.Nope\n",
			want:     []string{`resource B: Properties.QueueName.Fn::GetAtt: resource A (AWS::SQS::Queue) has no attribute "Nope"`},
		},
		{
			name:     "an unsupported function",
			template: "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !ImportValue other-stack-name\n",
			want:     []string{"resource A: Properties.QueueName.Fn::ImportValue: the function is not supported"},
		},
		{
			name:     "an unknown Sub variable",
			template: "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Sub ${Nope}-x\n",
			want:     []string{`resource A: Properties.QueueName.Fn::Sub: ${Nope}: no parameter or resource "Nope"`},
		},
		{
			name:     "an unclosed Sub variable",
			template: "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Sub ${Nope-x\n",
			want:     []string{"unclosed ${"},
		},
		{
			name:     "every error at once",
			template: "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Ref X\n  B:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Ref Y\n",
			want:     []string{`resource A: Properties.QueueName.Ref: no parameter or resource "X"`, `resource B: Properties.QueueName.Ref: no parameter or resource "Y"`},
		},
		{
			name:     "an unknown condition",
			template: "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Condition: Nope\n",
			want:     []string{`resource A: Condition: no condition "Nope"`},
		},
		{
			name:     "a circular condition",
			template: "Conditions:\n  A: !Not [!Condition A]\nResources:\n  Q:\n    Type: AWS::SQS::Queue\n",
			want:     []string{"condition A refers to itself"},
		},
		{
			name:     "a parameter breaking its pattern",
			template: "Parameters:\n  P:\n    Type: String\n    AllowedPattern: '[a-z]+'\nResources:\n  Q:\n    Type: AWS::SQS::Queue\n",
			params:   map[string]string{"P": "Upper"},
			want:     []string{`parameter P: "Upper" does not match AllowedPattern [a-z]+`},
		},
		{
			name:     "a parameter without a value",
			template: "Parameters:\n  P:\n    Type: String\nResources:\n  Q:\n    Type: AWS::SQS::Queue\n",
			want:     []string{"parameter P: no value given and no Default"},
		},
		{
			name:     "a number out of range",
			template: "Parameters:\n  P:\n    Type: Number\n    Default: 0\n    MinValue: 1\nResources:\n  Q:\n    Type: AWS::SQS::Queue\n",
			want:     []string{"parameter P: 0 is below MinValue 1"},
		},
		{
			name:     "an unknown parameter",
			template: "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n",
			params:   map[string]string{"Nope": "x"},
			want:     []string{"parameter Nope: the template has no such parameter"},
		},
		{
			name:     "an invalid role policy",
			template: "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      AssumeRolePolicyDocument: {Statement: [{Effect: Allow, Principal: {Service: ec2.amazonaws.com}, Action: sts:AssumeRole}]}\n      Policies:\n        - PolicyName: p\n          PolicyDocument: {Statement: [{Effect: Allow, Action: s3:GetObject, Resource: '*', Condition: {DateLessThan: {aws:CurrentTime: '2030-01-01'}}}]}\n",
			want:     []string{`resource R: Properties.Policies[0].PolicyDocument: statement 0: condition DateLessThan: unknown condition operator "DateLessThan"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := cfn.Parse([]byte(tt.template))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			r, err := tmpl.Resolve(env(tt.params))
			if err == nil && r.Resources["R"].Type == "AWS::IAM::Role" {
				_, err = r.RolePolicies("R")
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, template, want string
	}{
		{"an unknown tag", "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Reff X\n", "line 5: unknown tag !Reff"},
		{"a misspelt resource attribute", "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Propertes: {}\n", `resource A: unknown resource attribute "Propertes"`},
		{"a resource without a type", "Resources:\n  A:\n    Properties: {}\n", "resource A: no Type"},
		{"an unknown section", "Resource:\n  A:\n    Type: AWS::SQS::Queue\n", `unknown top-level section "Resource"`},
		{"a duplicate key", "Resources:\n  A:\n    Type: AWS::SQS::Queue\n  A:\n    Type: AWS::SQS::Queue\n", "duplicate key"},
		{"a bad GetAtt", "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !GetAtt Nodot\n", `!GetAtt "Nodot": want Resource.Attribute`},
		{"a transform", "Transform: AWS::Serverless-2016-10-31\nResources:\n  A:\n    Type: AWS::SQS::Queue\n", "transforms are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := cfn.Parse([]byte(tt.template))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
