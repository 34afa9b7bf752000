package testenv_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/jobfleet/jobfleet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestKubeServesKEDA checks that the test API server is up with KEDA's
// ScaledJob resource installed.
func TestKubeServesKEDA(t *testing.T) {
	k := testenv.StartKube(t)
	ns := k.Namespace(t)
	gvr := schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledjobs"}
	list, err := k.Dynamic.Resource(gvr).Namespace(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing ScaledJobs: %v", err)
	}
	if len(list.Items) != 0 {
		t.Errorf("a new namespace holds %d ScaledJobs", len(list.Items))
	}
	v, err := k.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion == "" {
		t.Error("no server version")
	}
	t.Logf("kube-apiserver %s", v.GitVersion)
}
