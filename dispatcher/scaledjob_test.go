package dispatcher

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) { testenv.Main(m) }

func testTemplate(ns string) Template {
	return Template{
		Namespace: ns, WorkerImage: "ghcr.io/jobfleet/jobfleet:v0.1.0", ServiceAccount: "jobfleet-worker",
		IntakeURL: "https://sqs.us-east-1.amazonaws.com/123456789012/jobfleet-intake", DeadLetterURL: "https://sqs.us-east-1.amazonaws.com/123456789012/jobfleet-dead-letter",
		RecordsURL: "https://sqs.us-east-1.amazonaws.com/123456789012/jobfleet-records", Bucket: "acme-jobfleet", CheckpointPrefix: "jobfleet", Region: "us-east-1",
	}
}

// TestScaledJobGolden compares generated ScaledJobs with golden files and
// applies each to a real API server, whose schema validation for KEDA's
// CRD must accept it.
func TestScaledJobGolden(t *testing.T) {
	reg := registry(t)
	kube := testenv.StartKube(t)
	ns := kube.Namespace(t)
	cases := []struct {
		name    string
		typ     string
		history jobfleet.History
		tmpl    func(Template) Template
	}{
		{name: "cpu-any", typ: "export"},
		{name: "gpu-do-not-disrupt", typ: "train"},
		{name: "library-mode", typ: "embed"},
		{name: "on-demand-after-interruptions", typ: "export", history: []jobfleet.Attempt{{Attempt: 1, Reason: jobfleet.ReasonInterrupted}, {Attempt: 2, Reason: jobfleet.ReasonInterrupted}}},
		{name: "local-endpoint-trigger-auth", typ: "batch", tmpl: func(t Template) Template {
			t.SQSEndpoint, t.S3Endpoint, t.TriggerAuthentication = "http://127.0.0.1:4566", "http://127.0.0.1:4567", "jobfleet-sqs"
			return t
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			typ, _ := reg.Type(tc.typ)
			pool, _ := reg.Pool(typ.Pool)
			d := Sizing{}.Decide(&jobfleet.Job{Version: 1, ID: "j", Type: tc.typ}, tc.history, typ, pool, nil)
			tmpl := testTemplate("jobs")
			if tc.tmpl != nil {
				tmpl = tc.tmpl(tmpl)
			}
			sj := tmpl.ScaledJob(d.Class, typ, pool, "https://sqs.us-east-1.amazonaws.com/123456789012/"+d.Class.Name("jobfleet"))
			got, err := yaml.Marshal(sj)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "scaledjob-"+tc.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("ScaledJob differs from %s (run with -update after checking):\n%s", golden, got)
			}

			sj.Namespace = ns
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(sj)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: obj}
			_, err = kube.Dynamic.Resource(scaledJobs).Namespace(ns).Apply(t.Context(), sj.Name, u, metav1.ApplyOptions{FieldManager: "jobfleet", Force: true})
			if err != nil {
				t.Fatalf("the API server rejected the ScaledJob: %v", err)
			}
		})
	}
}

// TestScaledJobTellsTheCapacityType: a worker learns its capacity type
// when its class pins it or its pool launches only one kind; a pool that
// launches both leaves it unknown until a notice says.
func TestScaledJobTellsTheCapacityType(t *testing.T) {
	reg := registry(t)
	typ, _ := reg.Type("export")
	base, _ := reg.Pool(typ.Pool)
	capacityEnv := func(c Class, capacityTypes ...string) string {
		pool := *base
		pool.CapacityTypes = capacityTypes
		sj := testTemplate("jobs").ScaledJob(c, typ, &pool, "https://sqs.us-east-1.amazonaws.com/1/q")
		for _, e := range sj.Spec.JobTargetRef.Template.Spec.Containers[0].Env {
			if e.Name == "JOBFLEET_CAPACITY_TYPE" {
				return e.Value
			}
		}
		return ""
	}
	class := Class{Type: typ.Name, Pool: base.Name, Size: base.Sizes[0], Capacity: CapacityAny}
	if got := capacityEnv(class, "spot"); got != "spot" {
		t.Errorf("a spot-only pool: %q", got)
	}
	if got := capacityEnv(class, "spot", "on-demand"); got != "" {
		t.Errorf("a pool of both: %q", got)
	}
	class.Capacity = CapacityOnDemand
	if got := capacityEnv(class, "spot", "on-demand"); got != "on-demand" {
		t.Errorf("an on-demand class: %q", got)
	}
}
