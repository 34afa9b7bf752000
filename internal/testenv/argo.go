package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// GVRs of Argo Workflows' resources.
var (
	Workflows         = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}
	WorkflowTemplates = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflowtemplates"}
)

var (
	argoOnce sync.Once
	argoErr  error
)

// StartArgo installs Argo Workflows' CRDs in the cluster and starts its
// workflow-controller (built from its Go module by `make controlplane`),
// once per test binary. The pod runner runs the step pods it creates, with
// Argo's executor (argoexec) in their init, main and wait containers.
func (c *Cluster) StartArgo(t testing.TB) {
	t.Helper()
	argoOnce.Do(func() { argoErr = c.startArgo(t) })
	if argoErr != nil {
		t.Fatalf("starting Argo's workflow-controller: %v", argoErr)
	}
}

func (c *Cluster) startArgo(t testing.TB) error {
	if os.Geteuid() != 0 {
		return errors.New("the pod runner runs Argo's step pods in mount and PID namespaces of their own, which needs root")
	}
	// The binaries make controlplane builds are named by the version its
	// wrapper module pins: it must be the one these tests expect.
	mod, err := os.ReadFile(filepath.Join(moduleRoot(t), "deploy", "local", "controlplane", "argo", "go.mod"))
	if err != nil {
		return err
	}
	if !strings.Contains(string(mod), "github.com/argoproj/argo-workflows/v3 "+ArgoVersion+"\n") {
		return fmt.Errorf("deploy/local/controlplane/argo/go.mod does not pin Argo %s, the version testenv.ArgoVersion names: change both together", ArgoVersion)
	}
	dir, err := moduleDir("github.com/argoproj/argo-workflows/v3@" + ArgoVersion)
	if err != nil {
		return err
	}
	crds, err := filepath.Glob(filepath.Join(dir, "manifests", "base", "crds", "minimal", "argoproj.io_*.yaml"))
	if err != nil || len(crds) == 0 {
		return fmt.Errorf("no Argo CRDs in %s: %v", dir, err)
	}
	if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{Paths: crds, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("installing Argo's CRDs: %w", err)
	}
	// The controller's configuration: its metrics on a free port.
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "workflow-controller-configmap", Namespace: "default"},
		Data: map[string]string{
			"metricsConfig":   "enabled: false\nport: " + strconv.Itoa(freePort()),
			"telemetryConfig": "enabled: false\nport: " + strconv.Itoa(freePort()),
		},
	}
	if _, err := c.Typed.CoreV1().ConfigMaps("default").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	bin, err := ControlPlaneBin(t, "all")
	if err != nil {
		return err
	}
	return c.start("workflow-controller", filepath.Join(bin, "workflow-controller-"+ArgoVersion),
		[]string{"--kubeconfig=" + c.Kubeconfig, "--loglevel=info", "--executor-image=argoexec:" + ArgoVersion},
		[]string{"LEADER_ELECTION_DISABLE=true", "ARGO_EXECUTOR_PLUGINS=false"})
}

// argoExec is the local argoexec binary the pod runner runs for Argo's
// executor containers.
func argoExec(bin string) string { return filepath.Join(bin, "argoexec-"+ArgoVersion) }
