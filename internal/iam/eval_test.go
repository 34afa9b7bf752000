package iam_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jobfleet/jobfleet/internal/iam"
)

func mustPolicy(t *testing.T, doc string) iam.Policy {
	t.Helper()
	var p iam.Policy
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("parsing policy: %v", err)
	}
	return p
}

// workerLike is shaped like jobfleet's roles: allows scoped by resource and
// condition, and explicit denies carved out of a wildcard.
const workerLike = `{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "ClassQueues", "Effect": "Allow",
     "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
     "Resource": "arn:aws:sqs:us-east-2:123456789012:jobfleet-*"},
    {"Sid": "NotIntake", "Effect": "Deny",
     "Action": "sqs:*",
     "Resource": "arn:aws:sqs:us-east-2:123456789012:jobfleet-intake"},
    {"Sid": "Objects", "Effect": "Allow",
     "Action": "s3:Get*",
     "Resource": "arn:aws:s3:::bucket/jobfleet/*"},
    {"Sid": "List", "Effect": "Allow",
     "Action": "s3:ListBucket",
     "Resource": "arn:aws:s3:::bucket",
     "Condition": {"StringLike": {"s3:prefix": ["jobfleet/*"]}}},
    {"Sid": "TLS", "Effect": "Deny",
     "Action": "*",
     "Resource": "*",
     "Condition": {"Bool": {"aws:SecureTransport": false}}}
  ]
}`

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tls := map[string][]string{"aws:SecureTransport": {"true"}}
	withPrefix := func(p string) map[string][]string {
		return map[string][]string{"aws:SecureTransport": {"true"}, "s3:prefix": {p}}
	}
	tests := []struct {
		name string
		req  iam.Request
		want iam.Decision
		sid  string
	}{
		{"allowed on a class queue", iam.Request{Action: "sqs:ReceiveMessage", Resource: "arn:aws:sqs:us-east-2:123456789012:jobfleet-train-gpu-16gi", Context: tls}, iam.Allowed, "ClassQueues"},
		{"actions ignore case", iam.Request{Action: "SQS:deletemessage", Resource: "arn:aws:sqs:us-east-2:123456789012:jobfleet-x", Context: tls}, iam.Allowed, "ClassQueues"},
		{"an action not granted", iam.Request{Action: "sqs:SendMessage", Resource: "arn:aws:sqs:us-east-2:123456789012:jobfleet-x", Context: tls}, iam.ImplicitDeny, ""},
		{"a queue outside the wildcard", iam.Request{Action: "sqs:ReceiveMessage", Resource: "arn:aws:sqs:us-east-2:123456789012:payments", Context: tls}, iam.ImplicitDeny, ""},
		{"another region", iam.Request{Action: "sqs:ReceiveMessage", Resource: "arn:aws:sqs:eu-west-1:123456789012:jobfleet-x", Context: tls}, iam.ImplicitDeny, ""},
		{"explicit deny wins over the wildcard allow", iam.Request{Action: "sqs:ReceiveMessage", Resource: "arn:aws:sqs:us-east-2:123456789012:jobfleet-intake", Context: tls}, iam.ExplicitDeny, "NotIntake"},
		{"action wildcard", iam.Request{Action: "s3:GetObjectTagging", Resource: "arn:aws:s3:::bucket/jobfleet/a", Context: tls}, iam.Allowed, "Objects"},
		{"action wildcard is a prefix only", iam.Request{Action: "s3:PutObject", Resource: "arn:aws:s3:::bucket/jobfleet/a", Context: tls}, iam.ImplicitDeny, ""},
		{"resources are case-sensitive", iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::bucket/JOBFLEET/a", Context: tls}, iam.ImplicitDeny, ""},
		{"another prefix", iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::bucket/other/jobfleet/a", Context: tls}, iam.ImplicitDeny, ""},
		{"list under the prefix", iam.Request{Action: "s3:ListBucket", Resource: "arn:aws:s3:::bucket", Context: withPrefix("jobfleet/classes/")}, iam.Allowed, "List"},
		{"list another prefix", iam.Request{Action: "s3:ListBucket", Resource: "arn:aws:s3:::bucket", Context: withPrefix("other/")}, iam.ImplicitDeny, ""},
		{"list without a prefix", iam.Request{Action: "s3:ListBucket", Resource: "arn:aws:s3:::bucket", Context: tls}, iam.ImplicitDeny, ""},
		{"condition key names ignore case", iam.Request{Action: "s3:ListBucket", Resource: "arn:aws:s3:::bucket", Context: map[string][]string{"aws:securetransport": {"true"}, "S3:Prefix": {"jobfleet/x"}}}, iam.Allowed, "List"},
		{"plain HTTP is denied", iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::bucket/jobfleet/a", Context: map[string][]string{"aws:SecureTransport": {"false"}}}, iam.ExplicitDeny, "TLS"},
		{"bool values ignore case", iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::bucket/jobfleet/a", Context: map[string][]string{"aws:SecureTransport": {"FALSE"}}}, iam.ExplicitDeny, "TLS"},
		{"no transport key: the Bool deny does not match", iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::bucket/jobfleet/a"}, iam.Allowed, "Objects"},
	}
	p := mustPolicy(t, workerLike)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, s := iam.Evaluate([]iam.Policy{p}, tt.req)
			if got != tt.want {
				t.Fatalf("Evaluate(%+v) = %v, want %v", tt.req, got, tt.want)
			}
			sid := ""
			if s != nil {
				sid = s.Sid
			}
			if sid != tt.sid {
				t.Errorf("decided by statement %q, want %q", sid, tt.sid)
			}
		})
	}
}

func TestEvaluateNotElements(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, `{"Statement": [
	  {"Sid": "AllButIAM", "Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret/*"}
	]}`)
	tests := []struct {
		name string
		req  iam.Request
		want iam.Decision
	}{
		{"an action outside NotAction", iam.Request{Action: "sqs:SendMessage", Resource: "arn:aws:sqs:us-east-2:1:q"}, iam.Allowed},
		{"an action in NotAction", iam.Request{Action: "iam:PassRole", Resource: "arn:aws:iam::1:role/r"}, iam.ImplicitDeny},
		{"a resource in NotResource", iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::secret/key"}, iam.ImplicitDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, _ := iam.Evaluate([]iam.Policy{p}, tt.req); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEvaluatePrincipals(t *testing.T) {
	t.Parallel()
	queue := "arn:aws:sqs:us-east-2:123456789012:jobfleet-interruptions"
	p := mustPolicy(t, `{"Statement": [
	  {"Sid": "Events", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": "`+queue+`",
	   "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:events:us-east-2:123456789012:rule/jobfleet-*"}}},
	  {"Sid": "Account", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sqs:GetQueueAttributes", "Resource": "`+queue+`"},
	  {"Sid": "DenyHTTP", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "`+queue+`",
	   "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
	]}`)
	events := iam.Caller{Type: "Service", ID: "events.amazonaws.com"}
	rule := func(arn string) map[string][]string {
		return map[string][]string{"aws:SecureTransport": {"true"}, "aws:SourceArn": {arn}}
	}
	tests := []struct {
		name string
		req  iam.Request
		want iam.Decision
	}{
		{"EventBridge from our rule", iam.Request{Principal: events, Action: "sqs:SendMessage", Resource: queue, Context: rule("arn:aws:events:us-east-2:123456789012:rule/jobfleet-spot")}, iam.Allowed},
		{"EventBridge from another account's rule", iam.Request{Principal: events, Action: "sqs:SendMessage", Resource: queue, Context: rule("arn:aws:events:us-east-2:999999999999:rule/jobfleet-spot")}, iam.ImplicitDeny},
		{"EventBridge without a source", iam.Request{Principal: events, Action: "sqs:SendMessage", Resource: queue, Context: map[string][]string{"aws:SecureTransport": {"true"}}}, iam.ImplicitDeny},
		{"another service", iam.Request{Principal: iam.Caller{Type: "Service", ID: "sns.amazonaws.com"}, Action: "sqs:SendMessage", Resource: queue, Context: rule("arn:aws:events:us-east-2:123456789012:rule/jobfleet-spot")}, iam.ImplicitDeny},
		{"a role of the account", iam.Request{Principal: iam.Caller{Type: "AWS", ID: "arn:aws:iam::123456789012:role/x"}, Action: "sqs:GetQueueAttributes", Resource: queue}, iam.Allowed},
		{"a role of another account", iam.Request{Principal: iam.Caller{Type: "AWS", ID: "arn:aws:iam::999999999999:role/x"}, Action: "sqs:GetQueueAttributes", Resource: queue}, iam.ImplicitDeny},
		{"the * principal denies everyone over HTTP", iam.Request{Principal: events, Action: "sqs:SendMessage", Resource: queue, Context: map[string][]string{"aws:SecureTransport": {"false"}, "aws:SourceArn": {"arn:aws:events:us-east-2:123456789012:rule/jobfleet-spot"}}}, iam.ExplicitDeny},
		{"no caller matches no named principal", iam.Request{Action: "sqs:SendMessage", Resource: queue, Context: rule("arn:aws:events:us-east-2:123456789012:rule/jobfleet-spot")}, iam.ImplicitDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, _ := iam.Evaluate([]iam.Policy{p}, tt.req); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEvaluateNotPrincipal(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, `{"Statement": [
	  {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::1:role/admin"}, "Action": "s3:DeleteBucket", "Resource": "*"},
	  {"Effect": "Allow", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "*"}
	]}`)
	admin := iam.Request{Principal: iam.Caller{Type: "AWS", ID: "arn:aws:iam::1:role/admin"}, Action: "s3:DeleteBucket", Resource: "arn:aws:s3:::b"}
	other := admin
	other.Principal.ID = "arn:aws:iam::1:role/other"
	if got, _ := iam.Evaluate([]iam.Policy{p}, admin); got != iam.Allowed {
		t.Errorf("admin: got %v, want allowed", got)
	}
	if got, _ := iam.Evaluate([]iam.Policy{p}, other); got != iam.ExplicitDeny {
		t.Errorf("other: got %v, want explicit deny", got)
	}
}

// TestEvaluateInvalid: a statement that cannot be evaluated never lets a
// request through, even when another statement allows it.
func TestEvaluateInvalid(t *testing.T) {
	t.Parallel()
	allowAll := `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}`
	tests := []struct {
		name string
		bad  string
	}{
		{"unknown operator", `{"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*", "Condition": {"StringSortOf": {"aws:x": "y"}}}`},
		{"unsupported date operator", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}}`},
		{"unknown set qualifier", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"ForSomeValues:StringLike": {"aws:x": "y"}}}`},
		{"a qualified Null", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"ForAnyValue:Null": {"aws:x": "true"}}}`},
		{"a number that is not", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"NumericLessThan": {"s3:max-keys": "ten"}}}`},
		{"a Bool that is not", `{"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "no"}}}`},
		{"a condition key without values", `{"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*", "Condition": {"StringEquals": {"aws:x": []}}}`},
		{"an Effect of neither", `{"Effect": "allow", "Action": "s3:GetObject", "Resource": "*"}`},
		{"no action", `{"Effect": "Allow", "Resource": "*"}`},
		{"both Action and NotAction", `{"Effect": "Allow", "Action": "s3:GetObject", "NotAction": "s3:PutObject", "Resource": "*"}`},
		{"both Resource and NotResource", `{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "NotResource": "arn:aws:s3:::b"}`},
		{"an action without a service", `{"Effect": "Allow", "Action": "GetObject", "Resource": "*"}`},
	}
	req := iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/k", Context: map[string][]string{"aws:x": {"y"}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustPolicy(t, `{"Statement": [`+allowAll+`, `+tt.bad+`]}`)
			if err := p.Validate(); err == nil {
				t.Errorf("Validate accepted %s", tt.bad)
			}
			got, s := iam.Evaluate([]iam.Policy{p}, req)
			if got != iam.Invalid {
				t.Fatalf("got %v, want invalid", got)
			}
			if s == nil || s != &p.Statement[1] {
				t.Errorf("the invalid statement is not the one returned: %+v", s)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, `{"Statement": [
	  {"Sid": "One", "Effect": "Maybe", "Action": "s3:GetObject"},
	  {"Sid": "Two", "Effect": "Allow", "Action": "s3:GetObject", "Condition": {"Nope": {"k": "v"}}}
	]}`)
	err := p.Validate()
	if err == nil {
		t.Fatal("Validate accepted two broken statements")
	}
	for _, want := range []string{`statement 0 (One): Effect "Maybe"`, `statement 1 (Two): condition Nope: unknown condition operator "Nope"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not report %q", err, want)
		}
	}
}
