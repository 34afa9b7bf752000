package contract_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/internal/contract"
)

func fullEnv() contract.WorkerEnv {
	return contract.WorkerEnv{
		Queue: "https://sqs.us-east-1.amazonaws.com/1/jobfleet-train-gpu-16gi", Intake: "https://sqs.us-east-1.amazonaws.com/1/intake",
		DeadLetter: "https://sqs.us-east-1.amazonaws.com/1/dead", Records: "https://sqs.us-east-1.amazonaws.com/1/records",
		EventsTopic: "arn:aws:sns:us-east-1:1:jobfleet-events",
		Bucket:      "jobfleet-data", Prefix: "fleet", JobType: "train", MaxAttempts: 4,
		CheckpointDir: "/ckpt", CheckpointInterval: 90 * time.Second, GracePeriod: 100 * time.Second, UploadGrace: time.Minute,
		MaxRuntime: 36 * time.Hour, VisibilityTimeout: 3 * time.Minute, IdleTimeout: 15 * time.Second, MaxJobs: 2,
		Memory: 16 << 30, Cgroup: "container", CgroupParent: "/sys/fs/cgroup/x", ReasonFile: "/etc/podinfo/annotations",
		Pod: "train-abc", PodNamespace: "jobs", Node: "ip-10-0-0-1", InstanceType: "g5.xlarge", CapacityType: "spot",
		Zone: "us-east-1a", Pool: "gpu", Size: "16gi", GPUs: 4,
	}
}

func lookupIn(vars []contract.EnvVar) func(string) (string, bool) {
	m := map[string]string{}
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return func(name string) (string, bool) { v, ok := m[name]; return v, ok }
}

// TestWorkerEnvRoundTrip writes every setting and reads it back unchanged.
func TestWorkerEnvRoundTrip(t *testing.T) {
	t.Parallel()
	for _, want := range []contract.WorkerEnv{fullEnv(), {Queue: "http://127.0.0.1:4566/000000000000/q"}, {}} {
		vars := want.Environ()
		got, err := contract.ParseWorkerEnv(lookupIn(vars))
		if err != nil {
			t.Fatalf("reading %v: %v", vars, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
}

// TestWorkerEnvCoversEveryField fails when a field is added to WorkerEnv
// without a variable: the round trip would then silently lose it.
func TestWorkerEnvCoversEveryField(t *testing.T) {
	t.Parallel()
	env := fullEnv()
	v := reflect.ValueOf(env)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if name == "DownwardAPI" {
			continue
		}
		if v.Field(i).IsZero() {
			t.Errorf("fullEnv leaves %s unset; set it so the round trip covers it", name)
		}
	}
}

func TestWorkerEnvDownwardAPI(t *testing.T) {
	t.Parallel()
	env := fullEnv()
	env.DownwardAPI = true
	paths := map[string]string{}
	for _, v := range env.Environ() {
		if v.FieldPath != "" {
			paths[v.Name] = v.FieldPath
			if v.Value != "" {
				t.Errorf("%s has both a value and a field path", v.Name)
			}
		}
	}
	want := map[string]string{"JOBFLEET_POD_NAME": "metadata.name", "JOBFLEET_POD_NAMESPACE": "metadata.namespace", "JOBFLEET_NODE_NAME": "spec.nodeName"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("downward-API variables = %v, want %v", paths, want)
	}
}

func TestParseWorkerEnvNamesEveryBadVariable(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		contract.EnvQueue:              "jobfleet-train",
		"JOBFLEET_MAX_RUNTIME":         "-1h",
		"JOBFLEET_IDLE_TIMEOUT":        "0s",
		"JOBFLEET_MAX_ATTEMPTS":        "zero",
		"JOBFLEET_MEMORY":              "lots",
		"JOBFLEET_CGROUP":              "v3",
		"JOBFLEET_CHECKPOINT_INTERVAL": "5 minutes",
	}
	_, err := contract.ParseWorkerEnv(func(n string) (string, bool) { v, ok := bad[n]; return v, ok })
	if err == nil {
		t.Fatal("ParseWorkerEnv accepted bad values")
	}
	for name := range bad {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("the error does not name %s: %v", name, err)
		}
	}
}

func TestWorkerEnvHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	help := contract.WorkerEnvHelp()
	for _, v := range fullEnv().Environ() {
		if !strings.Contains(help, v.Name) {
			t.Errorf("the help does not list %s", v.Name)
		}
	}
}
