// Package argo_test validates the Argo Workflows manifests jobfleet ships:
// kubeconform -strict against JSON schemas generated from Argo's full CRDs,
// and what the manifests promise: the step retries only on jobfleet's own
// errors, never waits on a node jobfleet's pools launched, and the example
// DAG chains prepare, a sweep, evaluate and a conditional register through
// the step's inputs.
package argo_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/jobfleet/jobfleet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var manifests = []string{"jobfleet-job.yaml", "train-sweep.yaml"}

func TestManifestsValidateAgainstArgoCRDs(t *testing.T) {
	schemas := t.TempDir()
	files, err := testenv.ArgoCRDFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		testenv.WriteCRDSchemas(t, f, schemas)
	}
	args := []string{"-strict", "-summary", "-output", "text",
		"-schema-location", filepath.Join(schemas, "{{.Group}}_{{.ResourceKind}}_{{.ResourceAPIVersion}}.json")}
	out, err := exec.Command(testenv.Tool(t, "kubeconform"), append(args, manifests...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("Valid: %d", len(manifests))) {
		t.Errorf("kubeconform: %v\n%s", err, out)
	}

	// The schemas are strict: a misspelt field is refused.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data, _ := os.ReadFile("jobfleet-job.yaml")
	if err := os.WriteFile(bad, bytes.Replace(data, []byte("retryStrategy:"), []byte("retryStrategies:"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testenv.Tool(t, "kubeconform"), append(args, bad)...).CombinedOutput(); err == nil {
		t.Errorf("kubeconform accepted a misspelt field:\n%s", out)
	}
}

// Just enough of Argo's types to check what the manifests promise.
type (
	parameter struct {
		Name      string  `json:"name"`
		Value     *string `json:"value"`
		ValueFrom *struct {
			Path    string  `json:"path"`
			Default *string `json:"default"`
		} `json:"valueFrom"`
	}
	task struct {
		Name        string `json:"name"`
		Depends     string `json:"depends"`
		When        string `json:"when"`
		WithParam   string `json:"withParam"`
		TemplateRef struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		} `json:"templateRef"`
		Arguments struct {
			Parameters []parameter `json:"parameters"`
		} `json:"arguments"`
	}
	template struct {
		Name   string `json:"name"`
		Inputs struct {
			Parameters []parameter `json:"parameters"`
		} `json:"inputs"`
		Outputs struct {
			Parameters []parameter `json:"parameters"`
		} `json:"outputs"`
		RetryStrategy *struct {
			Expression string `json:"expression"`
		} `json:"retryStrategy"`
		Affinity    map[string]any `json:"affinity"`
		Parallelism *int           `json:"parallelism"`
		Container   *struct {
			Command []string `json:"command"`
			Args    []string `json:"args"`
		} `json:"container"`
		DAG *struct {
			Tasks []task `json:"tasks"`
		} `json:"dag"`
	}
	manifest struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Templates []template `json:"templates"`
		} `json:"spec"`
	}
)

func load(t *testing.T, file string) *manifest {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return &m
}

func (m *manifest) template(name string) *template {
	for i := range m.Spec.Templates {
		if m.Spec.Templates[i].Name == name {
			return &m.Spec.Templates[i]
		}
	}
	return nil
}

func TestStepPromises(t *testing.T) {
	step := load(t, "jobfleet-job.yaml").template("submit")
	if step == nil || step.Container == nil {
		t.Fatal("no submit template with a container")
	}
	if got := append(step.Container.Command, step.Container.Args[:2]...); !slices.Equal(got, []string{"/jobfleet", "submit", "--wait"}) {
		t.Errorf("the step runs %v, not jobfleet submit --wait", got)
	}
	if step.RetryStrategy == nil || step.RetryStrategy.Expression != "asInt(lastRetry.exitCode) == 3" {
		t.Errorf("the step retries on %+v, not only on exit 3", step.RetryStrategy)
	}
	aff, _ := yaml.Marshal(step.Affinity)
	if !strings.Contains(string(aff), "key: karpenter.sh/nodepool") || !strings.Contains(string(aff), "operator: DoesNotExist") {
		t.Errorf("the step may wait on a node jobfleet's pools launched:\n%s", aff)
	}
	for _, want := range []string{"--outputs-dir=/tmp/jobfleet-outputs", "--id={{inputs.parameters.id}}"} {
		if !slices.Contains(step.Container.Args, want) {
			t.Errorf("the step's args lack %s", want)
		}
	}
	// Outputs are read where --outputs-dir writes them.
	for _, p := range step.Outputs.Parameters {
		if p.ValueFrom == nil || !strings.HasPrefix(p.ValueFrom.Path, "/tmp/jobfleet-outputs/") {
			t.Errorf("output %s is not read from the outputs directory", p.Name)
		}
	}
}

func TestExampleDAG(t *testing.T) {
	step := load(t, "jobfleet-job.yaml")
	submit := step.template("submit")
	inputs := map[string]bool{} // name -> required
	for _, p := range submit.Inputs.Parameters {
		inputs[p.Name] = p.Value == nil
	}
	outputs := map[string]bool{}
	for _, p := range submit.Outputs.Parameters {
		outputs[p.Name] = true
	}
	wf := load(t, "train-sweep.yaml")
	main := wf.template("main")
	if main == nil || main.DAG == nil {
		t.Fatal("no main DAG")
	}
	if main.Parallelism == nil || *main.Parallelism < 1 {
		t.Error("the sweep's parallelism is not bounded")
	}
	tasks := map[string]task{}
	for _, tk := range main.DAG.Tasks {
		tasks[tk.Name] = tk
		if tk.TemplateRef.Name != step.Metadata.Name || tk.TemplateRef.Template != "submit" {
			t.Errorf("task %s does not use %s/submit", tk.Name, step.Metadata.Name)
		}
		given := map[string]bool{}
		for _, p := range tk.Arguments.Parameters {
			if _, ok := inputs[p.Name]; !ok {
				t.Errorf("task %s passes %s, which the step does not take", tk.Name, p.Name)
			}
			given[p.Name] = true
		}
		for name, required := range inputs {
			if required && !given[name] {
				t.Errorf("task %s leaves the required input %s out", tk.Name, name)
			}
		}
	}
	chain := []struct{ name, depends string }{{"prepare", ""}, {"train", "prepare"}, {"evaluate", "train"}, {"register", "evaluate"}}
	for _, c := range chain {
		tk, ok := tasks[c.name]
		if !ok || tk.Depends != c.depends {
			t.Errorf("task %s depends on %q, want %q", c.name, tk.Depends, c.depends)
		}
	}
	if tasks["train"].WithParam == "" {
		t.Error("train is not a sweep (withParam)")
	}
	if w := tasks["register"].When; !strings.Contains(w, "tasks.evaluate.outputs.parameters.metric") || !strings.Contains(w, ">=") {
		t.Errorf("register runs when %q, not when the metric passes", w)
	}
	for _, tk := range main.DAG.Tasks {
		for _, p := range tk.Arguments.Parameters {
			for _, ref := range []string{"tasks.prepare.outputs.parameters.", "tasks.train.outputs.parameters.", "tasks.evaluate.outputs.parameters."} {
				if i := strings.Index(*p.Value, ref); i >= 0 {
					name := strings.TrimSuffix(strings.SplitN((*p.Value)[i+len(ref):], "}", 2)[0], "}")
					if !outputs[name] {
						t.Errorf("task %s reads output %s, which the step does not have", tk.Name, name)
					}
				}
			}
		}
	}
}
