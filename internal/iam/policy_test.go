package iam_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jobfleet/jobfleet/internal/iam"
)

func TestPolicyForms(t *testing.T) {
	t.Parallel()
	want := iam.Policy{
		Version: "2012-10-17",
		Statement: []iam.Statement{{
			Sid: "TLS", Effect: iam.Deny, Principal: iam.Principal{"AWS": {"*"}},
			Action: iam.Values{"sqs:*"}, Resource: iam.Values{"arn:aws:sqs:us-east-2:123456789012:q"},
			Condition: iam.Conditions{"Bool": {"aws:SecureTransport": {"false"}}, "NumericLessThan": {"s3:max-keys": {"10"}}},
		}},
	}
	tests := []struct {
		name   string
		decode func([]byte, any) error
		doc    string
	}{
		{"JSON: one statement, scalars", json.Unmarshal, `{"Version": "2012-10-17", "Statement": {"Sid": "TLS", "Effect": "Deny", "Principal": "*",
		  "Action": "sqs:*", "Resource": "arn:aws:sqs:us-east-2:123456789012:q",
		  "Condition": {"Bool": {"aws:SecureTransport": false}, "NumericLessThan": {"s3:max-keys": 10}}}}`},
		{"JSON: lists", json.Unmarshal, `{"Version": "2012-10-17", "Statement": [{"Sid": "TLS", "Effect": "Deny", "Principal": {"AWS": ["*"]},
		  "Action": ["sqs:*"], "Resource": ["arn:aws:sqs:us-east-2:123456789012:q"],
		  "Condition": {"Bool": {"aws:SecureTransport": ["false"]}, "NumericLessThan": {"s3:max-keys": ["10"]}}}]}`},
		{"YAML: one statement, scalars", yaml.Unmarshal, `
Version: "2012-10-17"
Statement:
  Sid: TLS
  Effect: Deny
  Principal: "*"
  Action: sqs:*
  Resource: arn:aws:sqs:us-east-2:123456789012:q
  Condition:
    Bool: {aws:SecureTransport: false}
    NumericLessThan: {s3:max-keys: 10}
`},
		{"YAML: lists", yaml.Unmarshal, `
Version: "2012-10-17"
Statement:
  - Sid: TLS
    Effect: Deny
    Principal: {AWS: ["*"]}
    Action: [sqs:*]
    Resource: [arn:aws:sqs:us-east-2:123456789012:q]
    Condition:
      Bool: {aws:SecureTransport: ["false"]}
      NumericLessThan: {s3:max-keys: [10]}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got iam.Policy
			if err := tt.decode([]byte(tt.doc), &got); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestPolicyJSONRoundTrip(t *testing.T) {
	t.Parallel()
	in := iam.Policy{Version: "2012-10-17", Statement: []iam.Statement{{
		Effect: iam.Allow, Principal: iam.Principal{"Service": {"events.amazonaws.com"}},
		Action: iam.Values{"sqs:SendMessage"}, Resource: iam.Values{"arn:aws:sqs:us-east-2:1:q"},
	}}}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out iam.Policy
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip: got %+v, want %+v (JSON %s)", out, in, data)
	}
}

func TestPolicyRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
	}{
		{"a misspelt field", `{"Statement": [{"Effect": "Allow", "Actions": "s3:GetObject", "Resource": "*"}]}`},
		{"an object as a value", `{"Statement": [{"Effect": "Allow", "Action": {"s3": "GetObject"}, "Resource": "*"}]}`},
		{"a principal string other than *", `{"Statement": [{"Effect": "Allow", "Principal": "events.amazonaws.com", "Action": "sqs:SendMessage"}]}`},
		{"a nested list", `{"Statement": [{"Effect": "Allow", "Action": [["s3:GetObject"]], "Resource": "*"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var p iam.Policy
			if err := json.Unmarshal([]byte(tt.doc), &p); err == nil {
				t.Errorf("accepted %s as %+v", tt.doc, p)
			}
		})
	}
}
