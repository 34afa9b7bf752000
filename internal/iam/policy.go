package iam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Effects of a statement.
const (
	Allow = "Allow"
	Deny  = "Deny"
)

// Policy is an IAM policy document: identity-based, resource-based or a
// role's trust policy. In JSON and YAML, Statement may be one statement or a
// list of them.
type Policy struct {
	Version   string      `json:"Version,omitempty" yaml:"Version,omitempty"`
	ID        string      `json:"Id,omitempty" yaml:"Id,omitempty"`
	Statement []Statement `json:"Statement" yaml:"Statement"`
}

// Statement is one statement of a policy.
type Statement struct {
	Sid          string     `json:"Sid,omitempty" yaml:"Sid,omitempty"`
	Effect       string     `json:"Effect" yaml:"Effect"`
	Principal    Principal  `json:"Principal,omitempty" yaml:"Principal,omitempty"`
	NotPrincipal Principal  `json:"NotPrincipal,omitempty" yaml:"NotPrincipal,omitempty"`
	Action       Values     `json:"Action,omitempty" yaml:"Action,omitempty"`
	NotAction    Values     `json:"NotAction,omitempty" yaml:"NotAction,omitempty"`
	Resource     Values     `json:"Resource,omitempty" yaml:"Resource,omitempty"`
	NotResource  Values     `json:"NotResource,omitempty" yaml:"NotResource,omitempty"`
	Condition    Conditions `json:"Condition,omitempty" yaml:"Condition,omitempty"`
}

// Values is a list of strings that JSON and YAML may also give as a single
// string. Numbers and booleans are kept as their text, as IAM does:
// "aws:SecureTransport": false means "false".
type Values []string

// Principal names who a resource-based or trust policy applies to, by
// principal type ("AWS", "Service", "Federated", "CanonicalUser"). The JSON
// and YAML "*" stands for {"AWS": ["*"]}, as in IAM.
type Principal map[string]Values

// Conditions are a statement's condition blocks: operator (such as
// "StringEquals" or "ForAnyValue:StringLike") -> condition key -> values.
type Conditions map[string]map[string]Values

// UnmarshalJSON accepts one statement or a list of them.
func (p *Policy) UnmarshalJSON(data []byte) error {
	var raw struct {
		Version   string          `json:"Version"`
		ID        string          `json:"Id"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	p.Version, p.ID, p.Statement = raw.Version, raw.ID, nil
	s := bytes.TrimSpace(raw.Statement)
	switch {
	case len(s) == 0 || bytes.Equal(s, []byte("null")):
		return nil
	case s[0] == '{':
		var one Statement
		if err := json.Unmarshal(s, &one); err != nil {
			return fmt.Errorf("Statement: %w", err)
		}
		p.Statement = []Statement{one}
	default:
		if err := json.Unmarshal(s, &p.Statement); err != nil {
			return fmt.Errorf("Statement: %w", err)
		}
	}
	return nil
}

// UnmarshalYAML accepts one statement or a list of them.
func (p *Policy) UnmarshalYAML(node *yaml.Node) error {
	var raw struct {
		Version   string    `yaml:"Version"`
		ID        string    `yaml:"Id"`
		Statement yaml.Node `yaml:"Statement"`
	}
	if err := node.Decode(&raw); err != nil {
		return err
	}
	p.Version, p.ID, p.Statement = raw.Version, raw.ID, nil
	switch raw.Statement.Kind {
	case 0:
		return nil
	case yaml.MappingNode:
		var one Statement
		if err := raw.Statement.Decode(&one); err != nil {
			return fmt.Errorf("Statement: %w", err)
		}
		p.Statement = []Statement{one}
	default:
		if err := raw.Statement.Decode(&p.Statement); err != nil {
			return fmt.Errorf("Statement: %w", err)
		}
	}
	return nil
}

// UnmarshalJSON rejects fields IAM does not know, so that a misspelt
// "Actions" is an error rather than a statement that matches nothing.
func (s *Statement) UnmarshalJSON(data []byte) error {
	type plain Statement
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v plain
	if err := dec.Decode(&v); err != nil {
		return err
	}
	*s = Statement(v)
	return nil
}

// UnmarshalJSON accepts a scalar or a list of scalars.
func (v *Values) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			return err
		}
		out := make(Values, 0, len(items))
		for _, item := range items {
			s, err := jsonScalar(item)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		*v = out
		return nil
	}
	s, err := jsonScalar(data)
	if err != nil {
		return err
	}
	*v = Values{s}
	return nil
}

func jsonScalar(data []byte) (string, error) {
	var x any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return "", err
	}
	switch x := x.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", fmt.Errorf("want a string, number or boolean, got %s", data)
}

// UnmarshalYAML accepts a scalar or a list of scalars.
func (v *Values) UnmarshalYAML(node *yaml.Node) error {
	switch node.Kind {
	case yaml.ScalarNode:
		*v = Values{node.Value}
		return nil
	case yaml.SequenceNode:
		out := make(Values, 0, len(node.Content))
		for _, item := range node.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a scalar", item.Line)
			}
			out = append(out, item.Value)
		}
		*v = out
		return nil
	}
	return fmt.Errorf("line %d: want a scalar or a list of scalars", node.Line)
}

// UnmarshalJSON accepts "*" or an object of principal type -> values.
func (p *Principal) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		if s != "*" {
			return fmt.Errorf("principal %q: only \"*\" may be given as a string", s)
		}
		*p = Principal{"AWS": {"*"}}
		return nil
	}
	var m map[string]Values
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	*p = m
	return nil
}

// UnmarshalYAML accepts "*" or a mapping of principal type -> values.
func (p *Principal) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		if node.Value != "*" {
			return fmt.Errorf("line %d: principal %q: only \"*\" may be given as a string", node.Line, node.Value)
		}
		*p = Principal{"AWS": {"*"}}
		return nil
	}
	var m map[string]Values
	if err := node.Decode(&m); err != nil {
		return err
	}
	*p = m
	return nil
}

// Validate reports every problem that keeps the policy's statements from
// being evaluated: an Effect other than Allow or Deny, a statement with
// neither or both of Action and NotAction, both Resource and NotResource,
// both Principal and NotPrincipal, a malformed action, an unknown condition
// operator, or a condition value its operator cannot read.
func (p Policy) Validate() error {
	var errs []error
	for i := range p.Statement {
		if err := p.Statement[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("statement %d%s: %w", i, sidSuffix(p.Statement[i].Sid), err))
		}
	}
	return errors.Join(errs...)
}

func sidSuffix(sid string) string {
	if sid == "" {
		return ""
	}
	return " (" + sid + ")"
}

// Validate reports every problem of one statement (see Policy.Validate).
func (s *Statement) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Effect != Allow && s.Effect != Deny {
		bad("Effect %q: want Allow or Deny", s.Effect)
	}
	switch {
	case len(s.Action) == 0 && len(s.NotAction) == 0:
		bad("no Action or NotAction")
	case len(s.Action) > 0 && len(s.NotAction) > 0:
		bad("both Action and NotAction")
	}
	for _, a := range append(append(Values(nil), s.Action...), s.NotAction...) {
		if err := validAction(a); err != nil {
			errs = append(errs, err)
		}
	}
	if len(s.Resource) > 0 && len(s.NotResource) > 0 {
		bad("both Resource and NotResource")
	}
	if s.Principal != nil && s.NotPrincipal != nil {
		bad("both Principal and NotPrincipal")
	}
	for _, op := range slices.Sorted(maps.Keys(s.Condition)) {
		if _, err := compileBlock(op, s.Condition[op]); err != nil {
			errs = append(errs, fmt.Errorf("condition %s: %w", op, err))
		}
	}
	return errors.Join(errs...)
}

func validAction(a string) error {
	if a == "*" {
		return nil
	}
	for i := 0; i < len(a); i++ {
		if a[i] == ':' {
			if i == 0 || i == len(a)-1 {
				break
			}
			return nil
		}
	}
	return fmt.Errorf("action %q: want service:Action or *", a)
}
