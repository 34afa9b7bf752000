package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// WriteCRDSchemas converts a CRD's schemas to standalone JSON schemas, one per
// served version, named group_kind_version.json; strict: no property the
// CRD does not define, unless it preserves unknown fields.
func WriteCRDSchemas(t testing.TB, file, dir string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		raw, err := json.Marshal(v.Schema.OpenAPIV3Schema)
		if err != nil {
			t.Fatal(err)
		}
		var schema map[string]any
		if err := json.Unmarshal(raw, &schema); err != nil {
			t.Fatal(err)
		}
		closeObjects(schema)
		props, _ := schema["properties"].(map[string]any)
		if props != nil {
			// Every object carries these, and the CRD leaves them open.
			props["apiVersion"] = map[string]any{"type": "string"}
			props["kind"] = map[string]any{"type": "string"}
			props["metadata"] = map[string]any{"type": "object"}
		}
		out, err := json.Marshal(schema)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%s_%s_%s.json", crd.Spec.Group, strings.ToLower(crd.Spec.Names.Kind), v.Name)
		if err := os.WriteFile(filepath.Join(dir, name), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// closeObjects forbids properties an object schema does not list, and
// turns Kubernetes' schema extensions into JSON schema.
func closeObjects(s map[string]any) {
	if s["x-kubernetes-int-or-string"] == true {
		delete(s, "type")
		s["anyOf"] = []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}
	}
	if s["nullable"] == true {
		if typ, ok := s["type"].(string); ok {
			s["type"] = []any{typ, "null"}
		}
	}
	if props, ok := s["properties"].(map[string]any); ok {
		if _, set := s["additionalProperties"]; !set && s["x-kubernetes-preserve-unknown-fields"] != true {
			s["additionalProperties"] = false
		}
		for _, p := range props {
			if m, ok := p.(map[string]any); ok {
				closeObjects(m)
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties"} {
		if m, ok := s[key].(map[string]any); ok {
			closeObjects(m)
		}
	}
	for _, key := range []string{"anyOf", "allOf", "oneOf"} {
		if list, ok := s[key].([]any); ok {
			for _, item := range list {
				if m, ok := item.(map[string]any); ok {
					closeObjects(m)
				}
			}
		}
	}
}
