package iam

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Set qualifiers of a condition operator, for multivalued context keys.
const (
	forAnyValue  = "ForAnyValue"
	forAllValues = "ForAllValues"
)

// comparison is one base operator: whether one context value matches one
// policy value.
type comparison struct {
	// negated operators (StringNotEquals, ...) match a context value that
	// matches none of the policy values.
	negated bool
	match   func(ctx, policy string) bool
	// check validates a policy value; nil accepts any.
	check func(policy string) error
}

var comparisons = map[string]comparison{
	"StringEquals":              {match: func(c, p string) bool { return c == p }},
	"StringNotEquals":           {negated: true, match: func(c, p string) bool { return c == p }},
	"StringEqualsIgnoreCase":    {match: strings.EqualFold},
	"StringNotEqualsIgnoreCase": {negated: true, match: strings.EqualFold},
	"StringLike":                {match: func(c, p string) bool { return Match(p, c) }},
	"StringNotLike":             {negated: true, match: func(c, p string) bool { return Match(p, c) }},
	"ArnEquals":                 {match: func(c, p string) bool { return MatchARN(p, c) }},
	"ArnLike":                   {match: func(c, p string) bool { return MatchARN(p, c) }},
	"ArnNotEquals":              {negated: true, match: func(c, p string) bool { return MatchARN(p, c) }},
	"ArnNotLike":                {negated: true, match: func(c, p string) bool { return MatchARN(p, c) }},
	"NumericEquals":             numeric(false, func(c, p float64) bool { return c == p }),
	"NumericNotEquals":          numeric(true, func(c, p float64) bool { return c == p }),
	"NumericLessThan":           numeric(false, func(c, p float64) bool { return c < p }),
	"NumericLessThanEquals":     numeric(false, func(c, p float64) bool { return c <= p }),
	"NumericGreaterThan":        numeric(false, func(c, p float64) bool { return c > p }),
	"NumericGreaterThanEquals":  numeric(false, func(c, p float64) bool { return c >= p }),
	"Bool":                      {match: strings.EqualFold, check: checkBool},
}

func numeric(negated bool, cmp func(c, p float64) bool) comparison {
	return comparison{
		negated: negated,
		match: func(c, p string) bool {
			cv, err := strconv.ParseFloat(c, 64)
			if err != nil {
				return false
			}
			pv, err := strconv.ParseFloat(p, 64)
			return err == nil && cmp(cv, pv)
		},
		check: func(p string) error {
			if _, err := strconv.ParseFloat(p, 64); err != nil {
				return fmt.Errorf("%q is not a number", p)
			}
			return nil
		},
	}
}

func checkBool(p string) error {
	if !strings.EqualFold(p, "true") && !strings.EqualFold(p, "false") {
		return fmt.Errorf("%q is not true or false", p)
	}
	return nil
}

// operator is a parsed condition operator such as
// "ForAllValues:StringLikeIfExists".
type operator struct {
	name     string
	set      string // "", forAnyValue or forAllValues
	ifExists bool
	null     bool
	cmp      comparison
}

func parseOperator(s string) (operator, error) {
	op := operator{name: s}
	base := s
	if q, rest, ok := strings.Cut(s, ":"); ok {
		if q != forAnyValue && q != forAllValues {
			return op, fmt.Errorf("unknown set qualifier %q (want ForAnyValue or ForAllValues)", q)
		}
		op.set, base = q, rest
	}
	if base == "Null" {
		if op.set != "" {
			return op, errors.New("the Null operator takes no set qualifier")
		}
		op.null = true
		return op, nil
	}
	if b, ok := strings.CutSuffix(base, "IfExists"); ok {
		op.ifExists, base = true, b
	}
	cmp, ok := comparisons[base]
	if !ok {
		return op, fmt.Errorf("unknown condition operator %q", base)
	}
	op.cmp = cmp
	return op, nil
}

// block is one compiled condition block: an operator and its keys.
type block struct {
	op   operator
	keys map[string]Values
}

func compileBlock(name string, keys map[string]Values) (block, error) {
	op, err := parseOperator(name)
	if err != nil {
		return block{}, err
	}
	if len(keys) == 0 {
		return block{}, fmt.Errorf("no condition keys")
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		vals := keys[k]
		if len(vals) == 0 {
			return block{}, fmt.Errorf("%s: no values", k)
		}
		for _, v := range vals {
			check := op.cmp.check
			if op.null {
				check = checkBool
			}
			if check != nil {
				if err := check(v); err != nil {
					return block{}, fmt.Errorf("%s: %w", k, err)
				}
			}
		}
	}
	return block{op: op, keys: keys}, nil
}

// matches reports whether every key of the block matches the context.
func (b block) matches(ctx map[string][]string) bool {
	for key, want := range b.keys {
		if !b.op.key(lookup(ctx, key), want) {
			return false
		}
	}
	return true
}

// key evaluates one condition key, whose context values are got (none when
// the key is absent), against the policy's values.
func (op operator) key(got, want Values) bool {
	if op.null {
		for _, w := range want {
			if strings.EqualFold(w, "true") == (len(got) == 0) {
				return true
			}
		}
		return false
	}
	// one reports whether a single context value satisfies the operator.
	one := func(c string) bool {
		m := slices.ContainsFunc(want, func(p string) bool { return op.cmp.match(c, p) })
		return m != op.cmp.negated
	}
	if len(got) == 0 {
		switch {
		case op.ifExists:
			return true
		case op.set == forAllValues:
			return true // vacuously: every one of no values
		case op.set == forAnyValue:
			return false
		}
		// IAM: a missing key matches no value, so a negated operator is true.
		return op.cmp.negated
	}
	switch {
	case op.set == forAllValues:
		return all(got, one)
	case op.set == forAnyValue:
		return slices.ContainsFunc(got, one)
	case op.cmp.negated:
		// "the value is none of these": every value of the key.
		return all(got, one)
	}
	return slices.ContainsFunc(got, one)
}

func all(vals []string, f func(string) bool) bool {
	for _, v := range vals {
		if !f(v) {
			return false
		}
	}
	return true
}

// lookup finds a context key; IAM condition key names are
// case-insensitive.
func lookup(ctx map[string][]string, key string) Values {
	if v, ok := ctx[key]; ok {
		return v
	}
	for k, v := range ctx {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}
