package cfn

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Template is a parsed CloudFormation template. Values under Conditions,
// Mappings, Resources' Properties and Outputs are generic: map[string]any,
// []any, string, int, float64, bool or nil, with intrinsic functions in
// their long form ({"Ref": "X"}, {"Fn::Sub": ...}).
type Template struct {
	FormatVersion string
	Description   string
	Metadata      map[string]any
	Parameters    map[string]Parameter
	Mappings      map[string]any
	Conditions    map[string]any
	Resources     map[string]Resource
	Outputs       map[string]Output
}

// Parameter is a template parameter. CloudFormation passes every value as a
// string; Default is kept as written.
type Parameter struct {
	Type                  string
	Default               *string
	Description           string
	AllowedValues         []string
	AllowedPattern        string
	ConstraintDescription string
	MinLength, MaxLength  *int
	MinValue, MaxValue    *float64
	NoEcho                bool
}

// Resource is a template resource.
type Resource struct {
	Type       string
	Properties map[string]any
	// Condition names the condition that decides whether the resource is
	// created; empty means always.
	Condition           string
	DependsOn           []string
	DeletionPolicy      string
	UpdateReplacePolicy string
	Metadata            map[string]any
}

// Output is a template output.
type Output struct {
	Description any
	Value       any
	Condition   string
	Export      map[string]any
}

// Load reads and parses a template file.
func Load(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading template: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse parses a YAML (or JSON) template, converting short-form tags to
// the long form. It reports every problem of the template's structure
// (unknown sections, misspelt resource attributes, a resource without a
// Type) at once.
func Parse(data []byte) (*Template, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing template: %w", err)
	}
	if doc.Kind == 0 {
		return nil, errors.New("parsing template: empty document")
	}
	v, err := convert(&doc)
	if err != nil {
		return nil, fmt.Errorf("parsing template: %w", err)
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("parsing template: the document is not a mapping")
	}
	d := &decoder{}
	t := &Template{
		Parameters: map[string]Parameter{},
		Conditions: map[string]any{},
		Resources:  map[string]Resource{},
		Outputs:    map[string]Output{},
		Mappings:   map[string]any{},
	}
	for _, key := range slices.Sorted(maps.Keys(root)) {
		val := root[key]
		switch key {
		case "AWSTemplateFormatVersion":
			t.FormatVersion = d.str(key, val)
		case "Description":
			t.Description = d.str(key, val)
		case "Metadata":
			t.Metadata = d.mapping(key, val)
		case "Parameters":
			for name, p := range d.mapping(key, val) {
				t.Parameters[name] = d.parameter("Parameters."+name, p)
			}
		case "Mappings":
			t.Mappings = d.mapping(key, val)
		case "Conditions":
			t.Conditions = d.mapping(key, val)
		case "Resources":
			for name, r := range d.mapping(key, val) {
				t.Resources[name] = d.resource("resource "+name, r)
			}
		case "Outputs":
			for name, o := range d.mapping(key, val) {
				t.Outputs[name] = d.output("output "+name, o)
			}
		case "Transform":
			d.fail("%s: transforms are not supported", key)
		default:
			d.fail("unknown top-level section %q", key)
		}
	}
	if len(t.Resources) == 0 {
		d.fail("the template has no Resources")
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return t, nil
}

// decoder collects the problems of a template's structure.
type decoder struct{ errs []error }

func (d *decoder) fail(format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf(format, args...))
}

func (d *decoder) err() error {
	slices.SortFunc(d.errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(d.errs...)
}

func (d *decoder) str(path string, v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int, float64, bool:
		return scalarString(v)
	case nil:
		return ""
	}
	d.fail("%s: want a string, got %T", path, v)
	return ""
}

func (d *decoder) mapping(path string, v any) map[string]any {
	if v == nil {
		return map[string]any{}
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.fail("%s: want a mapping, got %T", path, v)
		return map[string]any{}
	}
	return m
}

func (d *decoder) strings(path string, v any) []string {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]string, 0, len(v))
		for i, item := range v {
			out = append(out, d.str(fmt.Sprintf("%s[%d]", path, i), item))
		}
		return out
	}
	return []string{d.str(path, v)}
}

func (d *decoder) parameter(path string, v any) Parameter {
	var p Parameter
	for _, key := range slices.Sorted(maps.Keys(d.mapping(path, v))) {
		val := v.(map[string]any)[key]
		kp := path + "." + key
		switch key {
		case "Type":
			p.Type = d.str(kp, val)
		case "Default":
			s := d.str(kp, val)
			p.Default = &s
		case "Description":
			p.Description = d.str(kp, val)
		case "AllowedValues":
			p.AllowedValues = d.strings(kp, val)
		case "AllowedPattern":
			p.AllowedPattern = d.str(kp, val)
		case "ConstraintDescription":
			p.ConstraintDescription = d.str(kp, val)
		case "MinLength", "MaxLength":
			n, err := strconv.Atoi(d.str(kp, val))
			if err != nil {
				d.fail("%s: %v", kp, err)
			}
			if key == "MinLength" {
				p.MinLength = &n
			} else {
				p.MaxLength = &n
			}
		case "MinValue", "MaxValue":
			n, err := strconv.ParseFloat(d.str(kp, val), 64)
			if err != nil {
				d.fail("%s: %v", kp, err)
			}
			if key == "MinValue" {
				p.MinValue = &n
			} else {
				p.MaxValue = &n
			}
		case "NoEcho":
			p.NoEcho = d.str(kp, val) == "true"
		default:
			d.fail("%s: unknown parameter attribute %q", path, key)
		}
	}
	if p.Type == "" {
		d.fail("%s: no Type", path)
	}
	return p
}

func (d *decoder) resource(path string, v any) Resource {
	var r Resource
	for _, key := range slices.Sorted(maps.Keys(d.mapping(path, v))) {
		val := v.(map[string]any)[key]
		kp := path + ": " + key
		switch key {
		case "Type":
			r.Type = d.str(kp, val)
		case "Properties":
			r.Properties = d.mapping(kp, val)
		case "Condition":
			r.Condition = d.str(kp, val)
		case "DependsOn":
			r.DependsOn = d.strings(kp, val)
		case "DeletionPolicy":
			r.DeletionPolicy = d.str(kp, val)
		case "UpdateReplacePolicy":
			r.UpdateReplacePolicy = d.str(kp, val)
		case "Metadata":
			r.Metadata = d.mapping(kp, val)
		case "CreationPolicy", "UpdatePolicy":
			// Kept by CloudFormation for creation and updates; nothing to resolve.
		default:
			d.fail("%s: unknown resource attribute %q", path, key)
		}
	}
	if r.Type == "" {
		d.fail("%s: no Type", path)
	}
	if r.Properties == nil {
		r.Properties = map[string]any{}
	}
	return r
}

func (d *decoder) output(path string, v any) Output {
	var o Output
	for _, key := range slices.Sorted(maps.Keys(d.mapping(path, v))) {
		val := v.(map[string]any)[key]
		kp := path + ": " + key
		switch key {
		case "Description":
			o.Description = val
		case "Value":
			o.Value = val
		case "Condition":
			o.Condition = d.str(kp, val)
		case "Export":
			o.Export = d.mapping(kp, val)
		default:
			d.fail("%s: unknown output attribute %q", path, key)
		}
	}
	if o.Value == nil {
		d.fail("%s: no Value", path)
	}
	return o
}

// shortForms are the short-form tags and the long-form keys they stand for.
var shortForms = map[string]string{
	"!Ref":         "Ref",
	"!Condition":   "Condition",
	"!Sub":         "Fn::Sub",
	"!GetAtt":      "Fn::GetAtt",
	"!Join":        "Fn::Join",
	"!If":          "Fn::If",
	"!Equals":      "Fn::Equals",
	"!Not":         "Fn::Not",
	"!And":         "Fn::And",
	"!Or":          "Fn::Or",
	"!Select":      "Fn::Select",
	"!Split":       "Fn::Split",
	"!FindInMap":   "Fn::FindInMap",
	"!Base64":      "Fn::Base64",
	"!GetAZs":      "Fn::GetAZs",
	"!ImportValue": "Fn::ImportValue",
	"!Cidr":        "Fn::Cidr",
	"!Transform":   "Fn::Transform",
}

// convert turns a YAML node into a generic value, short-form tags into the
// long form.
func convert(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return convert(n.Content[0])
	case yaml.AliasNode:
		return convert(n.Alias)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		fn, ok := shortForms[n.Tag]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown tag %s", n.Line, n.Tag)
		}
		arg, err := convertUntagged(n)
		if err != nil {
			return nil, err
		}
		if n.Tag == "!GetAtt" {
			if s, ok := arg.(string); ok {
				res, attr, ok := strings.Cut(s, ".")
				if !ok || res == "" || attr == "" {
					return nil, fmt.Errorf("line %d: !GetAtt %q: want Resource.Attribute", n.Line, s)
				}
				arg = []any{res, attr}
			}
		}
		return map[string]any{fn: arg}, nil
	}
	return convertUntagged(n)
}

// convertUntagged converts a node's content, ignoring a short-form tag on
// the node itself: the argument of !Sub "x" is the string "x".
func convertUntagged(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a mapping key must be a string", k.Line)
			}
			if k.Value == "<<" {
				return nil, fmt.Errorf("line %d: YAML merge keys are not supported", k.Line)
			}
			if _, dup := m[k.Value]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			val, err := convert(v)
			if err != nil {
				return nil, err
			}
			m[k.Value] = val
		}
		return m, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, item := range n.Content {
			v, err := convert(item)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.ScalarNode:
		if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
			return n.Value, nil // the argument of a short form is a string
		}
		return scalar(n)
	case yaml.AliasNode:
		return convert(n.Alias)
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
}

func scalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return b, nil
	case "!!int":
		var i int
		if err := n.Decode(&i); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return i, nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return f, nil
	}
	// Strings, and timestamps such as 2010-09-09, which CloudFormation
	// reads as strings.
	return n.Value, nil
}

// scalarString is how CloudFormation turns a scalar into a string.
func scalarString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}
