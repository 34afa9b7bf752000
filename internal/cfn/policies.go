package cfn

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/jobfleet/jobfleet/internal/iam"
)

// PolicyDocument converts a resolved policy document into an iam.Policy. The
// document may be a mapping or a JSON string; CloudFormation accepts both,
// and a string is the way to build condition keys from parameters, as an
// IRSA trust policy's "<issuer>:sub" does. The policy must validate.
func PolicyDocument(v any) (iam.Policy, error) {
	var data []byte
	switch v := v.(type) {
	case string:
		data = []byte(v)
	case map[string]any:
		var err error
		if data, err = json.Marshal(v); err != nil {
			return iam.Policy{}, err
		}
	default:
		return iam.Policy{}, fmt.Errorf("want a policy document, got %T", v)
	}
	var p iam.Policy
	if err := json.Unmarshal(data, &p); err != nil {
		return iam.Policy{}, fmt.Errorf("decoding the policy document: %w", err)
	}
	if len(p.Statement) == 0 {
		return iam.Policy{}, fmt.Errorf("the policy document has no statements")
	}
	if err := p.Validate(); err != nil {
		return iam.Policy{}, err
	}
	return p, nil
}

// RolePolicies returns the permissions policies of a created role: its
// inline Policies, and the AWS::IAM::Policy and AWS::IAM::ManagedPolicy
// resources of the template whose Roles name it. A role with
// ManagedPolicyArns or a PermissionsBoundary is an error, because those
// documents are not in the template and an evaluation without them would
// be wrong.
func (res *Resolved) RolePolicies(logicalID string) ([]iam.Policy, error) {
	role, err := res.role(logicalID)
	if err != nil {
		return nil, err
	}
	for _, prop := range []string{"ManagedPolicyArns", "PermissionsBoundary"} {
		if v, ok := role.Properties[prop]; ok {
			return nil, fmt.Errorf("resource %s: Properties.%s (%v): its policies are not in the template, so they cannot be evaluated", logicalID, prop, v)
		}
	}
	var out []iam.Policy
	inline, _ := role.Properties["Policies"].([]any)
	for i, item := range inline {
		path := fmt.Sprintf("resource %s: Properties.Policies[%d]", logicalID, i)
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want a mapping, got %T", path, item)
		}
		p, err := PolicyDocument(m["PolicyDocument"])
		if err != nil {
			return nil, fmt.Errorf("%s.PolicyDocument: %w", path, err)
		}
		out = append(out, p)
	}
	name, err := res.Ref(logicalID)
	if err != nil {
		return nil, err
	}
	for _, id := range append(res.OfType("AWS::IAM::Policy"), res.OfType("AWS::IAM::ManagedPolicy")...) {
		roles, _ := res.Resources[id].Properties["Roles"].([]any)
		if !slices.Contains(roles, any(name)) {
			continue
		}
		p, err := PolicyDocument(res.Resources[id].Properties["PolicyDocument"])
		if err != nil {
			return nil, fmt.Errorf("resource %s: Properties.PolicyDocument: %w", id, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resource %s: the role has no policies", logicalID)
	}
	return out, nil
}

// TrustPolicy returns a created role's AssumeRolePolicyDocument.
func (res *Resolved) TrustPolicy(logicalID string) (iam.Policy, error) {
	role, err := res.role(logicalID)
	if err != nil {
		return iam.Policy{}, err
	}
	p, err := PolicyDocument(role.Properties["AssumeRolePolicyDocument"])
	if err != nil {
		return iam.Policy{}, fmt.Errorf("resource %s: Properties.AssumeRolePolicyDocument: %w", logicalID, err)
	}
	return p, nil
}

func (res *Resolved) role(logicalID string) (Resource, error) {
	role, ok := res.Resources[logicalID]
	if !ok {
		return Resource{}, fmt.Errorf("no created resource %q", logicalID)
	}
	if role.Type != "AWS::IAM::Role" {
		return Resource{}, fmt.Errorf("resource %s is a %s, not an AWS::IAM::Role", logicalID, role.Type)
	}
	return role, nil
}
