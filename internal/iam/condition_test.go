package iam_test

import (
	"testing"

	"github.com/jobfleet/jobfleet/internal/iam"
)

// TestConditionOperators evaluates one condition block against one context
// key, with every operator and qualifier the package knows.
func TestConditionOperators(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		op     string
		policy []string
		ctx    []string // nil: the key is absent
		want   bool
	}{
		{"StringEquals matches", "StringEquals", []string{"a", "b"}, []string{"b"}, true},
		{"StringEquals is case-sensitive", "StringEquals", []string{"a"}, []string{"A"}, false},
		{"StringEquals on a missing key", "StringEquals", []string{"a"}, nil, false},
		{"StringEqualsIfExists on a missing key", "StringEqualsIfExists", []string{"a"}, nil, true},
		{"StringEqualsIfExists on a present key", "StringEqualsIfExists", []string{"a"}, []string{"b"}, false},
		{"StringNotEquals on another value", "StringNotEquals", []string{"a", "b"}, []string{"c"}, true},
		{"StringNotEquals on a listed value", "StringNotEquals", []string{"a", "b"}, []string{"b"}, false},
		{"StringNotEquals on a missing key", "StringNotEquals", []string{"a"}, nil, true},
		{"StringEqualsIgnoreCase", "StringEqualsIgnoreCase", []string{"Jobfleet"}, []string{"JOBFLEET"}, true},
		{"StringNotEqualsIgnoreCase", "StringNotEqualsIgnoreCase", []string{"Jobfleet"}, []string{"JOBFLEET"}, false},
		{"StringLike with *", "StringLike", []string{"jobfleet/*"}, []string{"jobfleet/pods/x.json"}, true},
		{"StringLike * matches nothing too", "StringLike", []string{"jobfleet/*"}, []string{"jobfleet/"}, true},
		{"StringLike with ?", "StringLike", []string{"job?leet"}, []string{"jobfleet"}, true},
		{"StringLike ? is one character", "StringLike", []string{"job?leet"}, []string{"jobleet"}, false},
		{"StringLike anchors both ends", "StringLike", []string{"jobfleet/*"}, []string{"x/jobfleet/a"}, false},
		{"StringLike is case-sensitive", "StringLike", []string{"jobfleet/*"}, []string{"JOBFLEET/a"}, false},
		{"StringNotLike", "StringNotLike", []string{"jobfleet/*"}, []string{"other/a"}, true},
		{"StringNotLike on a match", "StringNotLike", []string{"jobfleet/*"}, []string{"jobfleet/a"}, false},
		{"StringNotLikeIfExists on a missing key", "StringNotLikeIfExists", []string{"jobfleet/*"}, nil, true},
		{"ArnLike by segment", "ArnLike", []string{"arn:aws:events:*:123456789012:rule/*"}, []string{"arn:aws:events:us-east-2:123456789012:rule/r"}, true},
		{"ArnLike: * does not span segments", "ArnLike", []string{"arn:aws:events:*:rule/*"}, []string{"arn:aws:events:us-east-2:123456789012:rule/r"}, false},
		{"ArnLike: another account", "ArnLike", []string{"arn:aws:events:*:123456789012:rule/*"}, []string{"arn:aws:events:us-east-2:999999999999:rule/r"}, false},
		{"ArnEquals exact", "ArnEquals", []string{"arn:aws:events:us-east-2:123456789012:rule/r"}, []string{"arn:aws:events:us-east-2:123456789012:rule/r"}, true},
		{"ArnEquals another rule", "ArnEquals", []string{"arn:aws:events:us-east-2:123456789012:rule/r"}, []string{"arn:aws:events:us-east-2:123456789012:rule/s"}, false},
		{"ArnEquals on a non-ARN", "ArnEquals", []string{"arn:aws:events:us-east-2:123456789012:rule/r"}, []string{"rule/r"}, false},
		{"ArnNotEquals", "ArnNotEquals", []string{"arn:aws:iam::1:role/a"}, []string{"arn:aws:iam::1:role/b"}, true},
		{"ArnNotLike on a match", "ArnNotLike", []string{"arn:aws:iam::1:role/*"}, []string{"arn:aws:iam::1:role/b"}, false},
		{"Bool true", "Bool", []string{"true"}, []string{"true"}, true},
		{"Bool false", "Bool", []string{"false"}, []string{"true"}, false},
		{"Bool on a missing key", "Bool", []string{"false"}, nil, false},
		{"BoolIfExists on a missing key", "BoolIfExists", []string{"false"}, nil, true},
		{"Null true on a missing key", "Null", []string{"true"}, nil, true},
		{"Null true on a present key", "Null", []string{"true"}, []string{"x"}, false},
		{"Null false on a present key", "Null", []string{"false"}, []string{"x"}, true},
		{"Null false on a missing key", "Null", []string{"false"}, nil, false},
		{"NumericLessThan", "NumericLessThan", []string{"10"}, []string{"9"}, true},
		{"NumericLessThan at the bound", "NumericLessThan", []string{"10"}, []string{"10"}, false},
		{"NumericLessThanEquals at the bound", "NumericLessThanEquals", []string{"10"}, []string{"10"}, true},
		{"NumericGreaterThan", "NumericGreaterThan", []string{"10"}, []string{"10.5"}, true},
		{"NumericGreaterThan below", "NumericGreaterThan", []string{"10"}, []string{"3"}, false},
		{"NumericGreaterThanEquals", "NumericGreaterThanEquals", []string{"10"}, []string{"10"}, true},
		{"NumericEquals", "NumericEquals", []string{"10"}, []string{"10.0"}, true},
		{"NumericNotEquals", "NumericNotEquals", []string{"10"}, []string{"11"}, true},
		{"Numeric on a non-number", "NumericLessThan", []string{"10"}, []string{"nine"}, false},
		{"NumericLessThan on a missing key", "NumericLessThan", []string{"10"}, nil, false},
		{"NumericLessThanIfExists on a missing key", "NumericLessThanIfExists", []string{"10"}, nil, true},
		{"ForAnyValue: one of several", "ForAnyValue:StringEquals", []string{"a"}, []string{"x", "a"}, true},
		{"ForAnyValue: none", "ForAnyValue:StringEquals", []string{"a"}, []string{"x", "y"}, false},
		{"ForAnyValue on a missing key", "ForAnyValue:StringEquals", []string{"a"}, nil, false},
		{"ForAllValues: all listed", "ForAllValues:StringEquals", []string{"a", "b"}, []string{"a", "b"}, true},
		{"ForAllValues: one not listed", "ForAllValues:StringEquals", []string{"a", "b"}, []string{"a", "c"}, false},
		{"ForAllValues on a missing key", "ForAllValues:StringEquals", []string{"a"}, nil, true},
		{"ForAllValues:StringLike", "ForAllValues:StringLike", []string{"jobfleet:*"}, []string{"jobfleet:ready", "jobfleet:managed"}, true},
		{"ForAnyValue:StringNotLike", "ForAnyValue:StringNotLike", []string{"jobfleet:*"}, []string{"jobfleet:ready", "owner"}, true},
		{"ForAllValues:StringNotEquals", "ForAllValues:StringNotEquals", []string{"a"}, []string{"b", "a"}, false},
		{"ForAnyValue:StringEqualsIfExists on a missing key", "ForAnyValue:StringEqualsIfExists", []string{"a"}, nil, true},
		{"unqualified on several values: any", "StringEquals", []string{"a"}, []string{"x", "a"}, true},
		{"unqualified negated on several values: all", "StringNotEquals", []string{"a"}, []string{"x", "a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := iam.Statement{
				Effect: iam.Allow, Action: iam.Values{"s3:GetObject"}, Resource: iam.Values{"*"},
				Condition: iam.Conditions{tt.op: {"test:Key": tt.policy}},
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			req := iam.Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/k"}
			if tt.ctx != nil {
				req.Context = map[string][]string{"test:Key": tt.ctx}
			}
			if got := s.Matches(req); got != tt.want {
				t.Errorf("%s %v against %v: got %v, want %v", tt.op, tt.policy, tt.ctx, got, tt.want)
			}
		})
	}
}

// TestConditionsAreANDed: every key of a block and every block must match.
func TestConditionsAreANDed(t *testing.T) {
	t.Parallel()
	s := iam.Statement{
		Effect: iam.Allow, Action: iam.Values{"sts:AssumeRoleWithWebIdentity"},
		Condition: iam.Conditions{
			"StringEquals": {
				"oidc.example/id/1:sub": {"system:serviceaccount:jobfleet:jobfleet-worker"},
				"oidc.example/id/1:aud": {"sts.amazonaws.com"},
			},
			"Bool": {"aws:SecureTransport": {"true"}},
		},
	}
	full := map[string][]string{
		"oidc.example/id/1:sub": {"system:serviceaccount:jobfleet:jobfleet-worker"},
		"oidc.example/id/1:aud": {"sts.amazonaws.com"},
		"aws:SecureTransport":   {"true"},
	}
	if !s.Matches(iam.Request{Action: "sts:AssumeRoleWithWebIdentity", Context: full}) {
		t.Fatal("the full context does not match")
	}
	for _, drop := range []string{"oidc.example/id/1:sub", "oidc.example/id/1:aud", "aws:SecureTransport"} {
		ctx := map[string][]string{}
		for k, v := range full {
			if k != drop {
				ctx[k] = v
			}
		}
		if s.Matches(iam.Request{Action: "sts:AssumeRoleWithWebIdentity", Context: ctx}) {
			t.Errorf("matches without %s", drop)
		}
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"", "", true},
		{"", "x", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"a*a", "aaa", true},
		{"*.json", "x/y.json", true},
		{"*.json", "x/y.json.gz", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"jobfleet-*", "jobfleet-", true},
		{"jobfleet-*", "jobfleet", false},
		// A * in the pattern stays a wildcard where s has a * too.
		{"*b", "*ab", true},
		{"a*c", "a*bc", true},
		{"arn:aws:s3:::bucket/*.json", "arn:aws:s3:::bucket/*/x.json", true},
		{"*", "*", true},
		{"a*", "b*", false},
	}
	for _, tt := range tests {
		if got := iam.Match(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
	if !iam.MatchFold("SQS:Send*", "sqs:sendmessage") {
		t.Error("MatchFold is case-sensitive")
	}
}
