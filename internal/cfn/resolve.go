package cfn

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Env is what resolving a template needs besides the template: where the
// stack is, its parameter values, and the names of its resources.
type Env struct {
	// Region and AccountID are required.
	Region    string
	AccountID string
	// Partition is "aws" when empty.
	Partition string
	// StackName is "stack" when empty.
	StackName string
	// Parameters are the values given; the others take their Default.
	Parameters map[string]string
	// Names are the physical names of resources the template leaves
	// unnamed, by logical ID. A resource that is neither named by the
	// template nor here gets a stable generated name.
	Names map[string]string
	// Attributes supply Fn::GetAtt values, by logical ID and attribute,
	// for attributes this package does not compute.
	Attributes map[string]map[string]any
}

func (e Env) withDefaults() Env {
	if e.Partition == "" {
		e.Partition = "aws"
	}
	if e.StackName == "" {
		e.StackName = "stack"
	}
	return e
}

// Resolved is a template resolved for one Env.
type Resolved struct {
	Env Env
	// Parameters are the effective parameter values: a string, or a []any
	// of strings for list types.
	Parameters map[string]any
	// Conditions are the values of the template's conditions.
	Conditions map[string]bool
	// Resources are the resources the stack creates (those whose
	// Condition holds), with every intrinsic function in their Properties
	// replaced by its value.
	Resources map[string]Resource
	// Outputs are the values of the outputs whose Condition holds.
	Outputs map[string]any

	mu sync.Mutex
	r  *resolver
}

// noValue is AWS::NoValue: the key or list item holding it is removed.
type noValueType struct{}

var noValue = noValueType{}

type resolver struct {
	t        *Template
	env      Env
	params   map[string]any
	conds    map[string]bool
	condBusy map[string]bool
	names    map[string]string
	nameBusy map[string]bool
}

// Resolve evaluates the template for env. It reports every problem at once:
// parameter values that break their constraints, unknown parameters,
// conditions, resources or attributes, and functions it does not support,
// each with the resource (or output, or condition) and property path.
func (t *Template) Resolve(env Env) (*Resolved, error) {
	env = env.withDefaults()
	if env.Region == "" || env.AccountID == "" {
		return nil, errors.New("resolving the template: Env.Region and Env.AccountID are required")
	}
	r := &resolver{
		t: t, env: env, params: map[string]any{},
		conds: map[string]bool{}, condBusy: map[string]bool{},
		names: map[string]string{}, nameBusy: map[string]bool{},
	}
	if err := r.parameters(); err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(t.Conditions)) {
		if _, err := r.condition(name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := &Resolved{
		Env: env, Parameters: r.params, Conditions: r.conds,
		Resources: map[string]Resource{}, Outputs: map[string]any{}, r: r,
	}
	for _, id := range slices.Sorted(maps.Keys(t.Resources)) {
		res := t.Resources[id]
		created, err := r.created(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !created {
			continue
		}
		for _, dep := range res.DependsOn {
			if _, ok := t.Resources[dep]; !ok {
				errs = append(errs, fmt.Errorf("resource %s: DependsOn: no resource %q", id, dep))
			}
		}
		if _, err := r.physicalName(id); err != nil {
			errs = append(errs, err)
			continue
		}
		props, err := r.value(res.Properties, "Properties")
		if err != nil {
			errs = append(errs, fmt.Errorf("resource %s: %w", id, err))
			continue
		}
		res.Properties, _ = props.(map[string]any)
		out.Resources[id] = res
	}
	for _, name := range slices.Sorted(maps.Keys(t.Outputs)) {
		o := t.Outputs[name]
		if o.Condition != "" {
			ok, err := r.condition(o.Condition)
			if err != nil {
				errs = append(errs, fmt.Errorf("output %s: Condition: %w", name, err))
				continue
			}
			if !ok {
				continue
			}
		}
		v, err := r.value(o.Value, "Value")
		if err != nil {
			errs = append(errs, fmt.Errorf("output %s: %w", name, err))
			continue
		}
		if v != noValue {
			out.Outputs[name] = v
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Ref returns what Ref gives for a parameter, pseudo parameter or created
// resource, which must be a string.
func (res *Resolved) Ref(name string) (string, error) {
	res.mu.Lock()
	defer res.mu.Unlock()
	v, err := res.r.ref(name)
	if err != nil {
		return "", fmt.Errorf("Ref %s: %w", name, err)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("Ref %s is a %T, not a string", name, v)
	}
	return s, nil
}

// GetAtt returns an attribute of a created resource, which must be a
// string.
func (res *Resolved) GetAtt(id, attr string) (string, error) {
	res.mu.Lock()
	defer res.mu.Unlock()
	if _, err := res.r.resource(id); err != nil {
		return "", err
	}
	v, err := res.r.attribute(id, attr)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s.%s is a %T, not a string", id, attr, v)
	}
	return s, nil
}

// OfType returns the logical IDs of the created resources of a type,
// sorted.
func (res *Resolved) OfType(typ string) []string {
	var ids []string
	for id, r := range res.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// parameters computes the effective parameter values and checks their
// constraints.
func (r *resolver) parameters() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, name := range slices.Sorted(maps.Keys(r.env.Parameters)) {
		if _, ok := r.t.Parameters[name]; !ok {
			bad("parameter %s: the template has no such parameter", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.t.Parameters)) {
		p := r.t.Parameters[name]
		s, given := r.env.Parameters[name]
		if !given {
			if p.Default == nil {
				bad("parameter %s: no value given and no Default", name)
				continue
			}
			s = *p.Default
		}
		if len(p.AllowedValues) > 0 && !slices.Contains(p.AllowedValues, s) {
			bad("parameter %s: %q is not one of AllowedValues %q", name, s, p.AllowedValues)
		}
		if p.AllowedPattern != "" {
			re, err := regexp.Compile("^(?:" + p.AllowedPattern + ")$")
			if err != nil {
				bad("parameter %s: AllowedPattern: %v", name, err)
			} else if !re.MatchString(s) {
				bad("parameter %s: %q does not match AllowedPattern %s", name, s, p.AllowedPattern)
			}
		}
		n := utf8.RuneCountInString(s)
		if p.MinLength != nil && n < *p.MinLength {
			bad("parameter %s: %q is shorter than MinLength %d", name, s, *p.MinLength)
		}
		if p.MaxLength != nil && n > *p.MaxLength {
			bad("parameter %s: %q is longer than MaxLength %d", name, s, *p.MaxLength)
		}
		switch {
		case p.Type == "Number":
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				bad("parameter %s: %q is not a number", name, s)
				continue
			}
			if p.MinValue != nil && f < *p.MinValue {
				bad("parameter %s: %s is below MinValue %v", name, s, *p.MinValue)
			}
			if p.MaxValue != nil && f > *p.MaxValue {
				bad("parameter %s: %s is above MaxValue %v", name, s, *p.MaxValue)
			}
			r.params[name] = s
		case p.Type == "CommaDelimitedList" || strings.HasPrefix(p.Type, "List<"):
			list := []any{}
			if s != "" {
				for _, item := range strings.Split(s, ",") {
					list = append(list, strings.TrimSpace(item))
				}
			}
			r.params[name] = list
		default:
			r.params[name] = s
		}
	}
	return errors.Join(errs...)
}

// condition evaluates a named condition once.
func (r *resolver) condition(name string) (bool, error) {
	if v, ok := r.conds[name]; ok {
		return v, nil
	}
	expr, ok := r.t.Conditions[name]
	if !ok {
		return false, fmt.Errorf("no condition %q", name)
	}
	if r.condBusy[name] {
		return false, fmt.Errorf("condition %s refers to itself", name)
	}
	r.condBusy[name] = true
	defer delete(r.condBusy, name)
	v, err := r.cond(expr, name)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	r.conds[name] = v
	return v, nil
}

// cond evaluates a condition function.
func (r *resolver) cond(expr any, path string) (bool, error) {
	fn, arg, ok := single(expr)
	if !ok {
		return false, fmt.Errorf("%s: want a condition function (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition), got %v", path, expr)
	}
	path += "." + fn
	switch fn {
	case "Condition":
		name, ok := arg.(string)
		if !ok {
			return false, fmt.Errorf("%s: want a condition name", path)
		}
		return r.condition(name)
	case "Fn::Equals":
		args, err := list(arg, 2, 2, path)
		if err != nil {
			return false, err
		}
		a, err := r.value(args[0], path+"[0]")
		if err != nil {
			return false, err
		}
		b, err := r.value(args[1], path+"[1]")
		if err != nil {
			return false, err
		}
		return equal(a, b), nil
	case "Fn::Not":
		args, err := list(arg, 1, 1, path)
		if err != nil {
			return false, err
		}
		v, err := r.cond(args[0], path+"[0]")
		return !v, err
	case "Fn::And", "Fn::Or":
		args, err := list(arg, 2, 10, path)
		if err != nil {
			return false, err
		}
		and := fn == "Fn::And"
		for i, a := range args {
			v, err := r.cond(a, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return false, err
			}
			if v != and {
				return v, nil
			}
		}
		return and, nil
	}
	return false, fmt.Errorf("%s: not a condition function", path)
}

func equal(a, b any) bool {
	if isScalar(a) && isScalar(b) {
		return scalarString(a) == scalarString(b)
	}
	return reflect.DeepEqual(a, b)
}

func isScalar(v any) bool {
	switch v.(type) {
	case string, int, float64, bool:
		return true
	}
	return false
}

// created reports whether the stack creates a resource: its Condition holds.
func (r *resolver) created(id string) (bool, error) {
	res, ok := r.t.Resources[id]
	if !ok {
		return false, fmt.Errorf("no resource %q", id)
	}
	if res.Condition == "" {
		return true, nil
	}
	v, err := r.condition(res.Condition)
	if err != nil {
		return false, fmt.Errorf("resource %s: Condition: %w", id, err)
	}
	return v, nil
}

// resource returns a resource that the stack creates, or why it cannot be
// referred to.
func (r *resolver) resource(id string) (Resource, error) {
	res, ok := r.t.Resources[id]
	if !ok {
		return Resource{}, fmt.Errorf("no resource %q", id)
	}
	created, err := r.created(id)
	if err != nil {
		return Resource{}, err
	}
	if !created {
		return Resource{}, fmt.Errorf("resource %s is not created (its condition %s is false)", id, res.Condition)
	}
	return res, nil
}

// single returns the function and argument of an intrinsic: a mapping with
// one key that is Ref, Condition or Fn::*.
func single(v any) (string, any, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return "", nil, false
	}
	for k, arg := range m {
		if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
			return k, arg, true
		}
	}
	return "", nil, false
}

func list(v any, minLen, maxLen int, path string) ([]any, error) {
	l, ok := v.([]any)
	if !ok || len(l) < minLen || len(l) > maxLen {
		if minLen == maxLen {
			return nil, fmt.Errorf("%s: want a list of %d, got %v", path, minLen, v)
		}
		return nil, fmt.Errorf("%s: want a list of %d to %d, got %v", path, minLen, maxLen, v)
	}
	return l, nil
}

// value resolves every intrinsic function in v. It returns noValue for
// AWS::NoValue, which the enclosing mapping or list drops.
func (r *resolver) value(v any, path string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if fn, arg, ok := single(v); ok && fn != "Condition" {
			return r.intrinsic(fn, arg, path+"."+fn)
		}
		out := make(map[string]any, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			x, err := r.value(v[k], path+"."+k)
			if err != nil {
				return nil, err
			}
			if x != noValue {
				out[k] = x
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(v))
		for i, item := range v {
			x, err := r.value(item, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if x != noValue {
				out = append(out, x)
			}
		}
		return out, nil
	}
	return v, nil
}

func (r *resolver) str(v any, path string) (string, error) {
	x, err := r.value(v, path)
	if err != nil {
		return "", err
	}
	if !isScalar(x) {
		return "", fmt.Errorf("%s: want a string, got %v", path, x)
	}
	return scalarString(x), nil
}

func (r *resolver) intrinsic(fn string, arg any, path string) (any, error) {
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("%s: want a name, got %v", path, arg)
		}
		v, err := r.ref(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return v, nil
	case "Fn::GetAtt":
		var id, attr string
		switch a := arg.(type) {
		case string:
			var ok bool
			if id, attr, ok = strings.Cut(a, "."); !ok {
				return nil, fmt.Errorf("%s: %q: want Resource.Attribute", path, a)
			}
		default:
			args, err := list(arg, 2, 2, path)
			if err != nil {
				return nil, err
			}
			var ok bool
			if id, ok = args[0].(string); !ok {
				return nil, fmt.Errorf("%s[0]: want a resource name, got %v", path, args[0])
			}
			if attr, err = r.str(args[1], path+"[1]"); err != nil {
				return nil, err
			}
		}
		if _, err := r.resource(id); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		v, err := r.attribute(id, attr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return v, nil
	case "Fn::Sub":
		return r.sub(arg, path)
	case "Fn::Join":
		args, err := list(arg, 2, 2, path)
		if err != nil {
			return nil, err
		}
		sep, err := r.str(args[0], path+"[0]")
		if err != nil {
			return nil, err
		}
		items, err := r.value(args[1], path+"[1]")
		if err != nil {
			return nil, err
		}
		l, ok := items.([]any)
		if !ok {
			return nil, fmt.Errorf("%s[1]: want a list, got %v", path, items)
		}
		parts := make([]string, len(l))
		for i, item := range l {
			if !isScalar(item) {
				return nil, fmt.Errorf("%s[1][%d]: want a string, got %v", path, i, item)
			}
			parts[i] = scalarString(item)
		}
		return strings.Join(parts, sep), nil
	case "Fn::If":
		args, err := list(arg, 3, 3, path)
		if err != nil {
			return nil, err
		}
		name, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("%s[0]: want a condition name, got %v", path, args[0])
		}
		v, err := r.condition(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		// Only the branch taken is resolved: the other may refer to
		// resources the condition leaves out.
		if v {
			return r.value(args[1], path+"[1]")
		}
		return r.value(args[2], path+"[2]")
	case "Fn::Select":
		args, err := list(arg, 2, 2, path)
		if err != nil {
			return nil, err
		}
		is, err := r.str(args[0], path+"[0]")
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(is)
		if err != nil {
			return nil, fmt.Errorf("%s[0]: %q is not an index", path, is)
		}
		items, err := r.value(args[1], path+"[1]")
		if err != nil {
			return nil, err
		}
		l, ok := items.([]any)
		if !ok || i < 0 || i >= len(l) {
			return nil, fmt.Errorf("%s: index %d out of %v", path, i, items)
		}
		return l[i], nil
	case "Fn::Split":
		args, err := list(arg, 2, 2, path)
		if err != nil {
			return nil, err
		}
		sep, err := r.str(args[0], path+"[0]")
		if err != nil {
			return nil, err
		}
		s, err := r.str(args[1], path+"[1]")
		if err != nil {
			return nil, err
		}
		var out []any
		for _, part := range strings.Split(s, sep) {
			out = append(out, part)
		}
		return out, nil
	case "Fn::FindInMap":
		args, err := list(arg, 3, 3, path)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 3)
		for i := range args {
			if keys[i], err = r.str(args[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return nil, err
			}
		}
		top, _ := r.t.Mappings[keys[0]].(map[string]any)
		second, _ := top[keys[1]].(map[string]any)
		v, ok := second[keys[2]]
		if !ok {
			return nil, fmt.Errorf("%s: no %s.%s.%s in Mappings", path, keys[0], keys[1], keys[2])
		}
		return r.value(v, path)
	case "Fn::Base64":
		s, err := r.str(arg, path)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	case "Fn::GetAZs":
		region, err := r.str(arg, path)
		if err != nil {
			return nil, err
		}
		if region == "" {
			region = r.env.Region
		}
		return []any{region + "a", region + "b", region + "c"}, nil
	case "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or":
		return r.cond(map[string]any{fn: arg}, strings.TrimSuffix(path, "."+fn))
	}
	return nil, fmt.Errorf("%s: the function is not supported", path)
}

// ref is what Ref gives for a name.
func (r *resolver) ref(name string) (any, error) {
	switch name {
	case "AWS::Region":
		return r.env.Region, nil
	case "AWS::AccountId":
		return r.env.AccountID, nil
	case "AWS::Partition":
		return r.env.Partition, nil
	case "AWS::URLSuffix":
		return r.urlSuffix(), nil
	case "AWS::StackName":
		return r.env.StackName, nil
	case "AWS::StackId":
		return fmt.Sprintf("arn:%s:cloudformation:%s:%s:stack/%s/%s", r.env.Partition, r.env.Region, r.env.AccountID, r.env.StackName, stableID(r.env.StackName)), nil
	case "AWS::NoValue":
		return noValue, nil
	case "AWS::NotificationARNs":
		return []any{}, nil
	}
	if v, ok := r.params[name]; ok {
		return v, nil
	}
	if _, ok := r.t.Resources[name]; !ok {
		return nil, fmt.Errorf("no parameter or resource %q", name)
	}
	if _, err := r.resource(name); err != nil {
		return nil, err
	}
	return r.resourceRef(name)
}

// sub evaluates Fn::Sub in either form.
func (r *resolver) sub(arg any, path string) (any, error) {
	var tmpl string
	vars := map[string]any{}
	switch a := arg.(type) {
	case string:
		tmpl = a
	case []any:
		if len(a) != 2 {
			return nil, fmt.Errorf("%s: want a string or [string, variables]", path)
		}
		s, ok := a[0].(string)
		if !ok {
			return nil, fmt.Errorf("%s[0]: want a string, got %v", path, a[0])
		}
		tmpl = s
		m, ok := a[1].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s[1]: want a mapping of variables, got %v", path, a[1])
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			v, err := r.value(m[k], path+"[1]."+k)
			if err != nil {
				return nil, err
			}
			vars[k] = v
		}
	default:
		return nil, fmt.Errorf("%s: want a string or [string, variables], got %v", path, arg)
	}
	var b strings.Builder
	for {
		i := strings.Index(tmpl, "${")
		if i < 0 {
			b.WriteString(tmpl)
			return b.String(), nil
		}
		b.WriteString(tmpl[:i])
		rest := tmpl[i+2:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return nil, fmt.Errorf("%s: unclosed ${ in %q", path, tmpl)
		}
		name := rest[:j]
		tmpl = rest[j+1:]
		if lit, ok := strings.CutPrefix(name, "!"); ok {
			b.WriteString("${" + lit + "}") // ${!Literal}
			continue
		}
		v, err := r.subVar(name, vars, path)
		if err != nil {
			return nil, err
		}
		b.WriteString(v)
	}
}

func (r *resolver) subVar(name string, vars map[string]any, path string) (string, error) {
	var v any
	if x, ok := vars[name]; ok {
		v = x
	} else if id, attr, ok := strings.Cut(name, "."); ok {
		if _, err := r.resource(id); err != nil {
			return "", fmt.Errorf("%s: ${%s}: %w", path, name, err)
		}
		x, err := r.attribute(id, attr)
		if err != nil {
			return "", fmt.Errorf("%s: ${%s}: %w", path, name, err)
		}
		v = x
	} else {
		x, err := r.ref(name)
		if err != nil {
			return "", fmt.Errorf("%s: ${%s}: %w", path, name, err)
		}
		v = x
	}
	if !isScalar(v) {
		return "", fmt.Errorf("%s: ${%s} is %v, not a string", path, name, v)
	}
	return scalarString(v), nil
}
