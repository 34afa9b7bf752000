package cfn

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// nameProperties are the properties that set a resource's physical name,
// by type.
var nameProperties = map[string]string{
	"AWS::SQS::Queue":         "QueueName",
	"AWS::S3::Bucket":         "BucketName",
	"AWS::IAM::Role":          "RoleName",
	"AWS::IAM::ManagedPolicy": "ManagedPolicyName",
	"AWS::IAM::Policy":        "PolicyName",
	"AWS::Events::Rule":       "Name",
	"AWS::SNS::Topic":         "TopicName",
}

// maxNameLength bounds generated names, by type.
var maxNameLength = map[string]int{
	"AWS::SQS::Queue":         80,
	"AWS::S3::Bucket":         63,
	"AWS::IAM::Role":          64,
	"AWS::IAM::ManagedPolicy": 128,
	"AWS::Events::Rule":       64,
	"AWS::SNS::Topic":         256,
}

// physicalName is a created resource's name: its name property, else
// Env.Names, else generated from the stack name and logical ID.
func (r *resolver) physicalName(id string) (string, error) {
	if n, ok := r.names[id]; ok {
		return n, nil
	}
	res, ok := r.t.Resources[id]
	if !ok {
		return "", fmt.Errorf("no resource %q", id)
	}
	if prop := nameProperties[res.Type]; prop != "" {
		if raw, ok := res.Properties[prop]; ok {
			if r.nameBusy[id] {
				return "", fmt.Errorf("resource %s: Properties.%s refers to the resource's own name", id, prop)
			}
			r.nameBusy[id] = true
			v, err := r.value(raw, "Properties."+prop)
			delete(r.nameBusy, id)
			if err != nil {
				return "", fmt.Errorf("resource %s: %w", id, err)
			}
			if v != noValue {
				if !isScalar(v) || scalarString(v) == "" {
					return "", fmt.Errorf("resource %s: Properties.%s: want a name, got %v", id, prop, v)
				}
				r.names[id] = scalarString(v)
				return r.names[id], nil
			}
		}
	}
	if n, ok := r.env.Names[id]; ok {
		r.names[id] = n
		return n, nil
	}
	r.names[id] = r.generatedName(id, res.Type)
	return r.names[id], nil
}

// generatedName is a stable stand-in for the name CloudFormation would
// generate: <stack>-<logical id>-<hash>, cut to the type's limit.
func (r *resolver) generatedName(id, typ string) string {
	suffix := stableID(r.env.StackName + "/" + id)[:12]
	base := r.env.StackName + "-" + id
	if limit, ok := maxNameLength[typ]; ok && len(base)+1+len(suffix) > limit {
		base = base[:limit-1-len(suffix)]
	}
	name := base + "-" + suffix
	if typ == "AWS::S3::Bucket" {
		name = strings.ToLower(name)
	}
	return name
}

// stableID is a deterministic stand-in for an ID AWS would generate.
func stableID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func (r *resolver) urlSuffix() string {
	if strings.HasPrefix(r.env.Partition, "aws-cn") {
		return "amazonaws.com.cn"
	}
	return "amazonaws.com"
}

func (r *resolver) queueURL(name string) string {
	return fmt.Sprintf("https://sqs.%s.%s/%s/%s", r.env.Region, r.urlSuffix(), r.env.AccountID, name)
}

// resourceRef is what Ref gives for a created resource.
func (r *resolver) resourceRef(id string) (any, error) {
	name, err := r.physicalName(id)
	if err != nil {
		return nil, err
	}
	switch r.t.Resources[id].Type {
	case "AWS::SQS::Queue":
		return r.queueURL(name), nil
	case "AWS::IAM::ManagedPolicy", "AWS::SNS::Topic", "AWS::EKS::PodIdentityAssociation":
		return r.attribute(id, map[string]string{
			"AWS::IAM::ManagedPolicy":          "PolicyArn",
			"AWS::SNS::Topic":                  "TopicArn",
			"AWS::EKS::PodIdentityAssociation": "AssociationArn",
		}[r.t.Resources[id].Type])
	}
	return name, nil
}

// attribute is what Fn::GetAtt gives for a created resource's attribute.
func (r *resolver) attribute(id, attr string) (any, error) {
	if v, ok := r.env.Attributes[id][attr]; ok {
		return v, nil
	}
	res := r.t.Resources[id]
	name, err := r.physicalName(id)
	if err != nil {
		return nil, err
	}
	p, region, acct := r.env.Partition, r.env.Region, r.env.AccountID
	switch res.Type + "." + attr {
	case "AWS::SQS::Queue.Arn":
		return fmt.Sprintf("arn:%s:sqs:%s:%s:%s", p, region, acct, name), nil
	case "AWS::SQS::Queue.QueueName":
		return name, nil
	case "AWS::SQS::Queue.QueueUrl":
		return r.queueURL(name), nil
	case "AWS::S3::Bucket.Arn":
		return fmt.Sprintf("arn:%s:s3:::%s", p, name), nil
	case "AWS::S3::Bucket.DomainName":
		return fmt.Sprintf("%s.s3.%s", name, r.urlSuffix()), nil
	case "AWS::S3::Bucket.RegionalDomainName":
		return fmt.Sprintf("%s.s3.%s.%s", name, region, r.urlSuffix()), nil
	case "AWS::IAM::Role.Arn", "AWS::IAM::ManagedPolicy.PolicyArn":
		path, err := r.iamPath(id)
		if err != nil {
			return nil, err
		}
		kind := "role"
		if res.Type == "AWS::IAM::ManagedPolicy" {
			kind = "policy"
		}
		return fmt.Sprintf("arn:%s:iam::%s:%s%s%s", p, acct, kind, path, name), nil
	case "AWS::IAM::Role.RoleId":
		return "AROA" + stableID(r.env.StackName + "/" + id)[:17], nil
	case "AWS::Events::Rule.Arn":
		return fmt.Sprintf("arn:%s:events:%s:%s:rule/%s", p, region, acct, name), nil
	case "AWS::SNS::Topic.TopicArn":
		return fmt.Sprintf("arn:%s:sns:%s:%s:%s", p, region, acct, name), nil
	case "AWS::SNS::Topic.TopicName":
		return name, nil
	case "AWS::EKS::PodIdentityAssociation.AssociationId":
		return "a-" + strings.ToLower(stableID(r.env.StackName + "/" + id)[:17]), nil
	case "AWS::EKS::PodIdentityAssociation.AssociationArn":
		cluster, err := r.str(res.Properties["ClusterName"], "Properties.ClusterName")
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", id, err)
		}
		assoc := "a-" + strings.ToLower(stableID(r.env.StackName + "/" + id)[:17])
		return fmt.Sprintf("arn:%s:eks:%s:%s:podidentityassociation/%s/%s", p, region, acct, cluster, assoc), nil
	}
	return nil, fmt.Errorf("resource %s (%s) has no attribute %q that cfn computes; give it in Env.Attributes", id, res.Type, attr)
}

// iamPath is a role's or policy's Path, "/" by default.
func (r *resolver) iamPath(id string) (string, error) {
	raw, ok := r.t.Resources[id].Properties["Path"]
	if !ok {
		return "/", nil
	}
	path, err := r.str(raw, "Properties.Path")
	if err != nil {
		return "", fmt.Errorf("resource %s: %w", id, err)
	}
	if !strings.HasPrefix(path, "/") || !strings.HasSuffix(path, "/") {
		return "", fmt.Errorf("resource %s: Properties.Path %q: want /.../", id, path)
	}
	return path, nil
}
