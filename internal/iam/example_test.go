package iam_test

import (
	"encoding/json"
	"fmt"

	"github.com/jobfleet/jobfleet/internal/iam"
)

func ExampleEvaluate() {
	var p iam.Policy
	_ = json.Unmarshal([]byte(`{
	  "Version": "2012-10-17",
	  "Statement": [
	    {"Sid": "Objects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::bucket/jobfleet/*"},
	    {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::bucket",
	     "Condition": {"StringLike": {"s3:prefix": "jobfleet/*"}}}
	  ]
	}`), &p)
	for _, req := range []iam.Request{
		{Action: "s3:PutObject", Resource: "arn:aws:s3:::bucket/jobfleet/jobs/j1/run.json"},
		{Action: "s3:GetObject", Resource: "arn:aws:s3:::bucket/other/key"},
		{Action: "s3:ListBucket", Resource: "arn:aws:s3:::bucket", Context: map[string][]string{"s3:prefix": {"jobfleet/records/"}}},
		{Action: "s3:ListBucket", Resource: "arn:aws:s3:::bucket"},
	} {
		d, s := iam.Evaluate([]iam.Policy{p}, req)
		by := ""
		if s != nil {
			by = " by " + s.Sid
		}
		fmt.Printf("%s %s: %v%s\n", req.Action, req.Resource, d, by)
	}
	// Output:
	// s3:PutObject arn:aws:s3:::bucket/jobfleet/jobs/j1/run.json: allowed by Objects
	// s3:GetObject arn:aws:s3:::bucket/other/key: implicit deny
	// s3:ListBucket arn:aws:s3:::bucket: allowed by List
	// s3:ListBucket arn:aws:s3:::bucket: implicit deny
}
