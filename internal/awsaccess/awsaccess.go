package awsaccess

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/jobfleet/jobfleet/internal/cfn"
	"github.com/jobfleet/jobfleet/internal/iam"
)

// Component is one of jobfleet's AWS callers, each with its own role.
type Component string

// Components.
const (
	Dispatcher Component = "dispatcher"
	Worker     Component = "worker"
	KEDA       Component = "keda"
)

// roles are the logical IDs of the components' roles in the template.
var roles = map[Component]string{
	Dispatcher: "DispatcherRole",
	Worker:     "WorkerRole",
	KEDA:       "KedaTriggerRole",
}

// Call is one AWS call a component made.
type Call struct {
	// Action is the IAM action, such as "sqs:SendMessage" (see IAMAction).
	Action string
	// Resource is the ARN acted on, such as
	// "arn:aws:sqs:us-east-1:000000000000:jfe2e-intake", or "*".
	Resource string
	// Context holds the request's condition keys, such as "s3:prefix" of
	// an s3:ListBucket. aws:SecureTransport is "true" unless given.
	Context map[string][]string
}

func (c Call) String() string {
	s := c.Action + " " + c.Resource
	for _, k := range slices.Sorted(maps.Keys(c.Context)) {
		s += fmt.Sprintf(" %s=%s", k, strings.Join(c.Context[k], ","))
	}
	return s
}

// Stack is a deployment of the template.
type Stack struct {
	// Template is the template's path.
	Template string
	// Params are the stack's parameter values; the others take their
	// defaults.
	Params          map[string]string
	Region, Account string
}

// Report is what Check found. Both lists are sorted.
type Report struct {
	// Denied are the calls that the policies do not allow.
	Denied []Denial
	// Unused are the grants that no call used.
	Unused []Grant
}

// Denial is a call that a component made and its role, with the target's
// resource policy, does not allow.
type Denial struct {
	Component Component
	Call      Call
	Decision  iam.Decision
	// Statement names the statement that decided (the Deny, or the one
	// that cannot be evaluated); empty for an implicit deny.
	Statement string
}

func (d Denial) String() string {
	s := fmt.Sprintf("%s: %s: %v", d.Component, d.Call, d.Decision)
	if d.Statement != "" {
		s += " by " + d.Statement
	}
	return s
}

// Grant is one action of one Allow statement of a component's role.
type Grant struct {
	Component Component
	// Statement is the statement's Sid, or its position in the role's
	// policies when it has none.
	Statement string
	Action    string
	Resources []string
}

func (g Grant) String() string {
	return fmt.Sprintf("%s: %s allows %s on %s", g.Component, g.Statement, g.Action, strings.Join(g.Resources, ", "))
}

// Empty reports whether every call was allowed and every grant used.
func (r Report) Empty() bool { return len(r.Denied) == 0 && len(r.Unused) == 0 }

// Only keeps the findings about the given services' actions ("sqs",
// "s3"), for a recorder that sees only some services' calls.
func (r Report) Only(services ...string) Report {
	in := func(action string) bool {
		svc, _, _ := strings.Cut(action, ":")
		return slices.ContainsFunc(services, func(s string) bool { return strings.EqualFold(s, svc) })
	}
	var out Report
	for _, d := range r.Denied {
		if in(d.Call.Action) {
			out.Denied = append(out.Denied, d)
		}
	}
	for _, g := range r.Unused {
		if in(g.Action) {
			out.Unused = append(out.Unused, g)
		}
	}
	return out
}

// Check evaluates each component's calls against its role in the stack. A
// component absent from calls is not checked; one present with no calls
// has every grant unused.
func Check(s Stack, calls map[Component][]Call) (Report, error) {
	tmpl, err := cfn.Load(s.Template)
	if err != nil {
		return Report{}, err
	}
	res, err := tmpl.Resolve(cfn.Env{Region: s.Region, AccountID: s.Account, Parameters: s.Params})
	if err != nil {
		return Report{}, fmt.Errorf("resolving %s: %w", s.Template, err)
	}
	targets, labels, err := resourcePolicies(res)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	for _, comp := range slices.Sorted(maps.Keys(calls)) {
		if err := check(res, targets, labels, comp, calls[comp], &rep); err != nil {
			return Report{}, err
		}
	}
	slices.SortFunc(rep.Denied, func(a, b Denial) int {
		return cmp.Or(cmp.Compare(a.Component, b.Component), cmp.Compare(a.Call.String(), b.Call.String()))
	})
	slices.SortFunc(rep.Unused, func(a, b Grant) int {
		return cmp.Or(cmp.Compare(a.Component, b.Component), cmp.Compare(a.Statement, b.Statement), cmp.Compare(a.Action, b.Action))
	})
	return rep, nil
}

// check adds one component's findings to rep.
func check(res *cfn.Resolved, targets *resourcePolicySet, labels map[*iam.Statement]string, comp Component, calls []Call, rep *Report) error {
	roleID, ok := roles[comp]
	if !ok {
		return fmt.Errorf("unknown component %q", comp)
	}
	identity, err := res.RolePolicies(roleID)
	if err != nil {
		return fmt.Errorf("the %s's role: %w", comp, err)
	}
	arn, err := res.GetAtt(roleID, "Arn")
	if err != nil {
		return fmt.Errorf("the %s's role: %w", comp, err)
	}
	for i := range identity {
		for j := range identity[i].Statement {
			labels[&identity[i].Statement[j]] = statementName(identity[i].Statement[j].Sid, i, j)
		}
	}
	// allowed are the requests of the calls the policies allow.
	var allowed []iam.Request
	for _, c := range calls {
		if c.Action == "" || c.Resource == "" {
			return fmt.Errorf("%s: call %q: want an action and a resource", comp, c)
		}
		req := iam.Request{Principal: iam.Caller{Type: "AWS", ID: arn}, Action: c.Action, Resource: c.Resource, Context: withTLS(c.Context)}
		d, s := iam.Evaluate(append(slices.Clip(identity), targets.of(c.Resource)...), req)
		if d == iam.Allowed {
			allowed = append(allowed, req)
			continue
		}
		rep.Denied = append(rep.Denied, Denial{Component: comp, Call: c, Decision: d, Statement: labels[s]})
	}
	for i := range identity {
		for j := range identity[i].Statement {
			s := &identity[i].Statement[j]
			if s.Effect != iam.Allow {
				continue
			}
			actions := s.Action
			if len(s.NotAction) > 0 {
				actions = iam.Values{"*"} // every action but NotAction: used by any call it allows
			}
			for _, a := range actions {
				used := slices.ContainsFunc(allowed, func(req iam.Request) bool {
					return iam.MatchFold(a, req.Action) && s.Matches(req)
				})
				if !used {
					rep.Unused = append(rep.Unused, Grant{Component: comp, Statement: labels[s], Action: a, Resources: s.Resource})
				}
			}
		}
	}
	return nil
}

func statementName(sid string, policy, statement int) string {
	if sid != "" {
		return sid
	}
	return fmt.Sprintf("policy %d statement %d", policy, statement)
}

// withTLS returns ctx with aws:SecureTransport "true" unless it is set.
func withTLS(ctx map[string][]string) map[string][]string {
	out := map[string][]string{"aws:SecureTransport": {"true"}}
	for k, v := range ctx {
		if strings.EqualFold(k, "aws:SecureTransport") {
			delete(out, "aws:SecureTransport")
		}
		out[k] = v
	}
	return out
}

// resourcePolicySet holds the stack's resource policies by the ARN they
// protect: a queue's, or a bucket's (which also covers its objects).
type resourcePolicySet struct {
	queues  map[string][]iam.Policy
	buckets map[string][]iam.Policy
}

// of returns the resource policies that apply to a call on resource.
func (r *resourcePolicySet) of(resource string) []iam.Policy {
	if p, ok := r.queues[resource]; ok {
		return p
	}
	bucket, _, _ := strings.Cut(resource, "/")
	return r.buckets[bucket]
}

// resourcePolicies collects the stack's queue and bucket policies, and
// names their statements "<logical ID>/<Sid>".
func resourcePolicies(res *cfn.Resolved) (*resourcePolicySet, map[*iam.Statement]string, error) {
	set := &resourcePolicySet{queues: map[string][]iam.Policy{}, buckets: map[string][]iam.Policy{}}
	labels := map[*iam.Statement]string{}
	var errs []error
	add := func(id string) (iam.Policy, bool) {
		p, err := cfn.PolicyDocument(res.Resources[id].Properties["PolicyDocument"])
		if err != nil {
			errs = append(errs, fmt.Errorf("resource %s: Properties.PolicyDocument: %w", id, err))
			return p, false
		}
		for j := range p.Statement {
			labels[&p.Statement[j]] = id + "/" + statementName(p.Statement[j].Sid, 0, j)
		}
		return p, true
	}
	for _, id := range res.OfType("AWS::SQS::QueuePolicy") {
		p, ok := add(id)
		if !ok {
			continue
		}
		urls, _ := res.Resources[id].Properties["Queues"].([]any)
		for _, u := range urls {
			arn, err := queueARN(res.Env.Partition, u)
			if err != nil {
				errs = append(errs, fmt.Errorf("resource %s: Properties.Queues: %w", id, err))
				continue
			}
			set.queues[arn] = append(set.queues[arn], p)
		}
	}
	for _, id := range res.OfType("AWS::S3::BucketPolicy") {
		p, ok := add(id)
		if !ok {
			continue
		}
		name, _ := res.Resources[id].Properties["Bucket"].(string)
		if name == "" {
			errs = append(errs, fmt.Errorf("resource %s: Properties.Bucket: want a bucket name", id))
			continue
		}
		arn := "arn:" + res.Env.Partition + ":s3:::" + name
		set.buckets[arn] = append(set.buckets[arn], p)
	}
	return set, labels, errors.Join(errs...)
}

// queueARN turns a queue URL, https://sqs.<region>.<suffix>/<account>/<name>,
// into the queue's ARN.
func queueARN(partition string, v any) (string, error) {
	s, _ := v.(string)
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%v is not a queue URL", v)
	}
	region := strings.Split(u.Host, ".")
	account, name, ok := strings.Cut(strings.Trim(u.Path, "/"), "/")
	if len(region) < 2 || region[0] != "sqs" || !ok || name == "" {
		return "", fmt.Errorf("%v is not a queue URL", v)
	}
	return fmt.Sprintf("arn:%s:sqs:%s:%s:%s", partition, region[1], account, name), nil
}

// batchActions are the API operations IAM authorizes as another action.
var batchActions = map[string]string{
	"sqs:SendMessageBatch":             "sqs:SendMessage",
	"sqs:DeleteMessageBatch":           "sqs:DeleteMessage",
	"sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
	"s3:HeadObject":                    "s3:GetObject",
	"s3:DeleteObjects":                 "s3:DeleteObject",
	"s3:ListObjectsV2":                 "s3:ListBucket",
	"s3:ListObjects":                   "s3:ListBucket",
	"s3:HeadBucket":                    "s3:ListBucket",
}

// IAMAction is the IAM action that authorizes an API operation of a
// service: IAMAction("sqs", "SendMessageBatch") is "sqs:SendMessage", and
// IAMAction("sqs", "ReceiveMessage") is "sqs:ReceiveMessage".
func IAMAction(service, operation string) string {
	a := strings.ToLower(service) + ":" + operation
	if b, ok := batchActions[a]; ok {
		return b
	}
	return a
}
