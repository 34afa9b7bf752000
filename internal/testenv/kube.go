package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Kube is a real Kubernetes API server (etcd and kube-apiserver, the
// versions deploy/local/controlplane pins) with KEDA's CRDs installed.
type Kube struct {
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Bin is the directory of the cached control plane binaries.
	Bin string
	env *envtest.Environment
}

var (
	kubeOnce   sync.Once
	kubeShared *Kube
	kubeErr    error
)

// Versions of the control plane binaries, as deploy/local/controlplane
// builds them.
const (
	KubeVersion      = "v1.34.4"
	EtcdVersion      = "v3.6.16"
	KwokVersion      = "v0.7.0"
	KedaVersion      = "v2.17.2"
	KarpenterVersion = "v1.8.0"
	// KarpenterAWSVersion is the AWS provider's module, whose EC2NodeClass
	// CRD the API server installs (the e2e tier runs the KWOK provider).
	KarpenterAWSVersion = "v1.8.2"
)

// CRDFiles are the CRD manifests the API server installs: KEDA's,
// Karpenter's, the KWOK provider's node class and the AWS provider's
// EC2NodeClass, from the module cache.
func CRDFiles() ([]string, error) {
	keda, err := moduleDir("github.com/kedacore/keda/v2")
	if err != nil {
		return nil, err
	}
	karpenter, err := moduleDir("sigs.k8s.io/karpenter@" + KarpenterVersion)
	if err != nil {
		return nil, err
	}
	aws, err := moduleDir("github.com/aws/karpenter-provider-aws@" + KarpenterAWSVersion)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, dir := range []string{filepath.Join(keda, "config", "crd", "bases"), filepath.Join(karpenter, "pkg", "apis", "crds"), filepath.Join(karpenter, "kwok", "apis", "crds")} {
		matches, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil || len(matches) == 0 {
			return nil, fmt.Errorf("no CRDs in %s: %v", dir, err)
		}
		files = append(files, matches...)
	}
	return append(files, filepath.Join(aws, "pkg", "apis", "crds", "karpenter.k8s.aws_ec2nodeclasses.yaml")), nil
}

// Tool returns the path of a tool deploy/tools builds (helm,
// kubeconform), building it the first time on a machine.
func Tool(t testing.TB, name string) string {
	t.Helper()
	buildMuCP.Lock()
	defer buildMuCP.Unlock()
	script := filepath.Join(moduleRoot(t), "deploy", "tools", "build.sh")
	if out, err := exec.Command(script).CombinedOutput(); err != nil {
		t.Fatalf("building the test tools (%s): %v\n%s", script, err, out)
	}
	out, err := exec.Command(script, "--path", name).Output()
	if err != nil {
		t.Fatalf("locating %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// StartKube returns the test binary's API server, starting it (and
// building the binaries, the first time on a machine) when needed.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	kubeOnce.Do(func() {
		kubeShared, kubeErr = startKube(t)
		if kubeErr == nil {
			onStop(func() { _ = kubeShared.env.Stop() })
		}
	})
	if kubeErr != nil {
		t.Fatalf("starting the Kubernetes API server: %v", kubeErr)
	}
	return kubeShared
}

func startKube(t testing.TB) (*Kube, error) {
	bin, err := ControlPlaneBin(t, "core")
	if err != nil {
		return nil, err
	}
	crds, err := CRDFiles()
	if err != nil {
		return nil, err
	}
	// envtest finds its binaries by plain name in one directory.
	assets, err := os.MkdirTemp("", "jobfleet-envtest-")
	if err != nil {
		return nil, err
	}
	onStop(func() { os.RemoveAll(assets) })
	for name, file := range map[string]string{"etcd": "etcd-" + EtcdVersion, "kube-apiserver": "kube-apiserver-" + KubeVersion} {
		if err := os.Symlink(filepath.Join(bin, file), filepath.Join(assets, name)); err != nil {
			return nil, err
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	// Tests poll; client-go's default of 5 requests a second would
	// throttle them, not the server.
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Kube{Config: cfg, Client: client, Dynamic: dyn, Bin: bin, env: env}, nil
}

// Namespace creates a uniquely named namespace for the test.
func (k *Kube) Namespace(t testing.TB) string {
	t.Helper()
	name := UniqueName(t, "t-", 63)
	_, err := k.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = k.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

var buildMuCP sync.Mutex

// ControlPlaneBin returns the directory of the cached control plane
// binaries, running deploy/local/controlplane/build.sh (which builds only
// what is missing) first. what is "core" (etcd, kube-apiserver) or "all".
func ControlPlaneBin(t testing.TB, what string) (string, error) {
	buildMuCP.Lock()
	defer buildMuCP.Unlock()
	root := moduleRoot(t)
	script := filepath.Join(root, "deploy", "local", "controlplane", "build.sh")
	cmd := exec.Command(script, what)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the control plane (%s %s): %v\n%s", script, what, err, out.String())
	}
	dir, err := exec.Command(script, "--print-dir").Output()
	if err != nil {
		return "", fmt.Errorf("locating the control plane binaries: %w", err)
	}
	return strings.TrimSpace(string(dir)), nil
}

// moduleDir returns where a module's source is in the module cache: a
// dependency of this module by path, or any module by path@version.
func moduleDir(module string) (string, error) {
	if path, version, ok := strings.Cut(module, "@"); ok {
		out, err := exec.Command("go", "mod", "download", "-json", module).Output()
		if err != nil {
			return "", fmt.Errorf("downloading module %s: %w", module, err)
		}
		var info struct{ Dir string }
		if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
			return "", fmt.Errorf("locating module %s %s: %v", path, version, err)
		}
		return info.Dir, nil
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		return "", fmt.Errorf("locating module %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		if err := exec.Command("go", "mod", "download", module).Run(); err != nil {
			return "", fmt.Errorf("downloading module %s: %w", module, err)
		}
		return moduleDir(module)
	}
	return dir, nil
}

// Kubeconfig writes a kubeconfig file for the API server, for processes the
// test starts.
func (k *Kube) Kubeconfig(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := k.WriteKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteKubeconfig writes a kubeconfig file for the API server to path.
func (k *Kube) WriteKubeconfig(path string) error {
	return writeKubeconfig(k.Config, "", path)
}

// WriteServiceAccountKubeconfig writes to path a kubeconfig that
// authenticates as a service account (the user
// system:serviceaccount:<namespace>:<name> in the groups a service account
// token carries), so that the API server's RBAC authorizes a process
// exactly as it would the account's pods.
func (k *Kube) WriteServiceAccountKubeconfig(namespace, name, path string) error {
	u, err := k.env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + namespace + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}, k.Config)
	if err != nil {
		return fmt.Errorf("adding service account %s/%s: %w", namespace, name, err)
	}
	// The context's namespace is the account's, as a pod's own namespace
	// file says.
	return writeKubeconfig(u.Config(), namespace, path)
}

func writeKubeconfig(c *rest.Config, namespace, path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test", Namespace: namespace}
	cfg.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

// ArgoVersion is the Argo Workflows release whose CRDs deploy/argo's
// manifests are validated against.
const ArgoVersion = "v3.7.6"

// ArgoCRDFiles are Argo Workflows' full CRDs (with their whole schemas) of
// Workflows and WorkflowTemplates, from the module cache.
func ArgoCRDFiles() ([]string, error) {
	dir, err := moduleDir("github.com/argoproj/argo-workflows/v3@" + ArgoVersion)
	if err != nil {
		return nil, err
	}
	full := filepath.Join(dir, "manifests", "base", "crds", "full")
	return []string{filepath.Join(full, "argoproj.io_workflows.yaml"), filepath.Join(full, "argoproj.io_workflowtemplates.yaml")}, nil
}
