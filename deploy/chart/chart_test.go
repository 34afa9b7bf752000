// Package chart_test validates jobfleet's Helm chart: helm lint and helm
// template for each example values file, every rendered object decoded
// strictly into its Kubernetes Go type, the custom resources validated by
// kubeconform -strict against JSON schemas generated offline from the
// pinned KEDA and Karpenter CRDs, and the values documented and checked.
package chart_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	karpv1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/internal/testenv"
	"github.com/jobfleet/jobfleet/jobtype"
)

const (
	chartDir    = "jobfleet"
	kubeVersion = "1.34.0"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// examples are the chart's example values files.
func examples(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "examples", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("example values files: %v, %v; want at least 3", files, err)
	}
	return files
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "helm"), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// nodePoolsFile renders `jobfleet nodepools` for an example's registry, as
// an install would pass it with --set-file karpenter.manifests=.
func nodePoolsFile(t *testing.T, example string) string {
	t.Helper()
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var values struct{ Registry string }
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	reg, err := jobtype.Parse(example+" registry", []byte(values.Registry))
	if err != nil {
		t.Fatalf("%s: %v", example, err)
	}
	rendered, err := dispatcher.RenderNodePools(reg, dispatcher.NodeClass{Cluster: "prod", Role: "KarpenterNodeRole-prod"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rendered.WriteYAML(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nodepools.yaml")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// render is helm template of the chart with an example and its NodePools.
func render(t *testing.T, example string) []*unstructured.Unstructured {
	t.Helper()
	out, err := helm(t, "template", "jobfleet", chartDir, "--namespace", "jobfleet", "--kube-version", kubeVersion,
		"-f", example, "--set-file", "karpenter.manifests="+nodePoolsFile(t, example))
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(out, "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s: rendered YAML: %v\n%s", example, err, doc)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

func TestLint(t *testing.T) {
	t.Parallel()
	for _, example := range examples(t) {
		if out, err := helm(t, "lint", "--strict", chartDir, "--kube-version", kubeVersion, "-f", example,
			"--set-file", "karpenter.manifests="+nodePoolsFile(t, example)); err != nil {
			t.Errorf("%s: %v\n%s", example, err, out)
		}
	}
}

// TestRenderedObjectsDecodeStrictly: every object an example renders is
// one the cluster knows, with no field its Go type lacks and none twice:
// Kubernetes' own types, KEDA's and Karpenter's. The rest (the AWS
// provider's EC2NodeClass, the Prometheus Operator's ServiceMonitor) are
// left to kubeconform and must be only those.
func TestRenderedObjectsDecodeStrictly(t *testing.T) {
	t.Parallel()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, kedav1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	scheme.AddKnownTypes(schema.GroupVersion{Group: "karpenter.sh", Version: "v1"}, &karpv1.NodePool{}, &karpv1.NodeClaim{})
	strict := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	for _, example := range examples(t) {
		kinds := map[string]int{}
		for _, obj := range render(t, example) {
			kinds[obj.GetKind()]++
			data, err := json.Marshal(obj.Object)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := strict.Decode(data, nil, nil); err != nil {
				if runtime.IsNotRegisteredError(err) && slices.Contains([]string{"EC2NodeClass", "ServiceMonitor"}, obj.GetKind()) {
					continue
				}
				t.Errorf("%s: %s %s: %v", example, obj.GetKind(), obj.GetName(), err)
			}
		}
		for _, kind := range []string{"Deployment", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "NodePool", "EC2NodeClass"} {
			if kinds[kind] == 0 {
				t.Errorf("%s renders no %s (it renders %v)", example, kind, kinds)
			}
		}
		// Cluster-wide permissions (node taints) only for the interruption
		// handler, which runs only with an interruption queue.
		values, err := os.ReadFile(example)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if strings.Contains(string(values), "interruptionQueue:") {
			want = 1
		}
		for _, kind := range []string{"ClusterRole", "ClusterRoleBinding"} {
			if kinds[kind] != want {
				t.Errorf("%s renders %d %s, want %d (it renders %v)", example, kinds[kind], kind, want, kinds)
			}
		}
	}
}

// TestCustomResourcesValidate runs kubeconform -strict over each example's
// rendered custom resources against JSON schemas generated here, offline,
// from the pinned CRDs the API server installs.
func TestCustomResourcesValidate(t *testing.T) {
	t.Parallel()
	schemas := t.TempDir()
	files, err := testenv.CRDFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		testenv.WriteCRDSchemas(t, f, schemas)
	}
	for _, example := range examples(t) {
		var crs bytes.Buffer
		n := 0
		for _, obj := range render(t, example) {
			if strings.Contains(obj.GetAPIVersion(), "keda.sh") || strings.Contains(obj.GetAPIVersion(), "karpenter") {
				data, err := yaml.Marshal(obj.Object)
				if err != nil {
					t.Fatal(err)
				}
				crs.WriteString("---\n")
				crs.Write(data)
				n++
			}
		}
		if n == 0 {
			t.Fatalf("%s renders no KEDA or Karpenter resources", example)
		}
		cmd := exec.Command(testenv.Tool(t, "kubeconform"), "-strict", "-summary", "-output", "text",
			"-schema-location", filepath.Join(schemas, "{{.Group}}_{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"), "-")
		cmd.Stdin = &crs
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("Valid: %d", n)) {
			t.Errorf("%s: kubeconform: %v\n%s", example, err, out)
		}
	}
}

// TestValuesAreChecked: a missing required value fails naming it; the
// schema refuses a value it does not know and a malformed one.
func TestValuesAreChecked(t *testing.T) {
	t.Parallel()
	minimal := filepath.Join(chartDir, "examples", "minimal.yaml")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no values", args: nil, want: "is required"},
		{name: "no bucket", args: []string{"-f", minimal, "--set", "aws.bucket="}, want: "aws.bucket is required"},
		{name: "no registry", args: []string{"-f", minimal, "--set", "registry="}, want: "registry is required"},
		{name: "unknown value", args: []string{"-f", minimal, "--set", "replica=3"}, want: "additional properties 'replica' not allowed"},
		{name: "queue not a URL", args: []string{"-f", minimal, "--set", "aws.intakeQueue=jobfleet-intake"}, want: "/aws/intakeQueue"},
		{name: "role not an ARN", args: []string{"-f", minimal, "--set", "serviceAccount.worker.roleArn=jobfleet-worker"}, want: "/serviceAccount/worker/roleArn"},
		{name: "bad NodePools", args: []string{"-f", minimal, "--set", "karpenter.manifests=kind: [NodePool"}, want: "karpenter.manifests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := helm(t, append([]string{"template", "jobfleet", chartDir, "--kube-version", kubeVersion}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("helm template: %v; want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// TestEveryValueIsDocumented: each value in values.yaml has a row in the
// chart's README and a place in values.schema.json.
func TestEveryValueIsDocumented(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	schemaData, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(schemaData, &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, v map[string]any, s map[string]any)
	walk = func(prefix string, v map[string]any, s map[string]any) {
		for key, value := range v {
			path := strings.TrimPrefix(prefix+"."+key, ".")
			m, nested := value.(map[string]any)
			if (!nested || len(m) == 0) && !bytes.Contains(readme, []byte("`"+path+"`")) {
				t.Errorf("README.md does not document %s", path)
			}
			sub := property(schema, s, key)
			if sub == nil {
				t.Errorf("values.schema.json has no %s", path)
				continue
			}
			if nested && len(m) > 0 {
				if _, described := sub["properties"]; described {
					walk(path, m, sub)
				}
			}
		}
	}
	walk("", values, schema)
}

// property finds a key's schema, following a $ref to the definitions.
func property(root, s map[string]any, key string) map[string]any {
	props, _ := s["properties"].(map[string]any)
	p, _ := props[key].(map[string]any)
	if ref, ok := p["$ref"].(string); ok {
		defs, _ := root["definitions"].(map[string]any)
		p, _ = defs[strings.TrimPrefix(ref, "#/definitions/")].(map[string]any)
	}
	return p
}
