package iam

import (
	"regexp"
	"slices"
	"strings"
)

// Request is one API call to evaluate.
type Request struct {
	// Principal is who makes the call. Leave it zero to evaluate
	// identity-based policies, whose statements name no principal.
	Principal Caller
	// Action is the IAM action, such as "sqs:SendMessage". Note that IAM
	// authorizes some API calls as another action: SendMessageBatch as
	// sqs:SendMessage, DeleteObjects as s3:DeleteObject, HeadObject as
	// s3:GetObject, ListObjectsV2 as s3:ListBucket.
	Action string
	// Resource is the ARN the call acts on, or "*".
	Resource string
	// Context holds the request's condition keys, such as
	// "aws:SecureTransport": {"true"} or "s3:prefix": {"jobfleet/x/"}.
	Context map[string][]string
}

// Caller is the principal that makes a request: Type is the key of a
// policy's Principal element ("AWS", "Service", "Federated") and ID its
// value (a role ARN, "events.amazonaws.com", an OIDC provider ARN).
type Caller struct {
	Type, ID string
}

// Decision is the outcome of an evaluation.
type Decision int

// Decisions.
const (
	// ImplicitDeny: no statement allows the request.
	ImplicitDeny Decision = iota
	// Allowed: a statement allows the request and none denies it.
	Allowed
	// ExplicitDeny: a Deny statement matches the request.
	ExplicitDeny
	// Invalid: a statement cannot be evaluated (see Policy.Validate), so
	// nothing is decided. It is never treated as Allowed.
	Invalid
)

func (d Decision) String() string {
	switch d {
	case ImplicitDeny:
		return "implicit deny"
	case Allowed:
		return "allowed"
	case ExplicitDeny:
		return "explicit deny"
	case Invalid:
		return "invalid policy"
	}
	return "unknown decision"
}

// Evaluate decides a request against a set of policies. It returns the
// statement that decided: the denying statement for ExplicitDeny, the first
// allowing statement for Allowed, the first statement that cannot be
// evaluated for Invalid, and nil for ImplicitDeny.
func Evaluate(policies []Policy, req Request) (Decision, *Statement) {
	// Validate everything first: a broken statement anywhere must not let an
	// evaluation pass, whether or not it would have matched.
	for i := range policies {
		for j := range policies[i].Statement {
			if s := &policies[i].Statement[j]; s.Validate() != nil {
				return Invalid, s
			}
		}
	}
	var allow *Statement
	for i := range policies {
		for j := range policies[i].Statement {
			s := &policies[i].Statement[j]
			if !s.Matches(req) {
				continue
			}
			if s.Effect == Deny {
				return ExplicitDeny, s
			}
			if allow == nil {
				allow = s
			}
		}
	}
	if allow != nil {
		return Allowed, allow
	}
	return ImplicitDeny, nil
}

// Matches reports whether the statement applies to the request: its
// principal, action, resource and every condition match. Its Effect says
// what follows. A statement that does not validate matches nothing; call
// Validate (or use Evaluate, which does) to tell the two apart.
func (s *Statement) Matches(req Request) bool {
	if s.Validate() != nil {
		return false
	}
	if !s.matchesPrincipal(req.Principal) || !s.matchesAction(req.Action) || !s.matchesResource(req.Resource) {
		return false
	}
	for op, keys := range s.Condition {
		b, err := compileBlock(op, keys)
		if err != nil || !b.matches(req.Context) {
			return false
		}
	}
	return true
}

func (s *Statement) matchesAction(action string) bool {
	in := func(patterns Values) bool {
		return slices.ContainsFunc(patterns, func(p string) bool { return MatchFold(p, action) })
	}
	if len(s.NotAction) > 0 {
		return !in(s.NotAction)
	}
	return in(s.Action)
}

func (s *Statement) matchesResource(resource string) bool {
	in := func(patterns Values) bool {
		return slices.ContainsFunc(patterns, func(p string) bool { return Match(p, resource) })
	}
	switch {
	case len(s.NotResource) > 0:
		return !in(s.NotResource)
	case len(s.Resource) > 0:
		return in(s.Resource)
	}
	return true // a trust policy names no resource: the role itself
}

func (s *Statement) matchesPrincipal(c Caller) bool {
	switch {
	case s.NotPrincipal != nil:
		return !s.NotPrincipal.Matches(c)
	case s.Principal != nil:
		return s.Principal.Matches(c)
	}
	return true
}

// Matches reports whether the principal element names the caller: "*"
// names everyone, an account ID or account root ARN names every ARN in that
// account, and any other value names exactly one caller of its type.
func (p Principal) Matches(c Caller) bool {
	for typ, ids := range p {
		for _, id := range ids {
			if typ == "AWS" && id == "*" {
				return true
			}
			if typ != c.Type {
				continue
			}
			if id == c.ID {
				return true
			}
			if acct := rootAccount(id); acct != "" && typ == "AWS" && arnAccount(c.ID) == acct {
				return true
			}
		}
	}
	return false
}

var (
	accountID   = regexp.MustCompile(`^[0-9]{12}$`)
	accountRoot = regexp.MustCompile(`^arn:[a-z-]+:iam::([0-9]{12}):root$`)
)

// rootAccount returns the account an account-wide principal names, or "".
func rootAccount(id string) string {
	if accountID.MatchString(id) {
		return id
	}
	if m := accountRoot.FindStringSubmatch(id); m != nil {
		return m[1]
	}
	return ""
}

func arnAccount(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return ""
	}
	return parts[4]
}
