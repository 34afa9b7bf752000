package testenv

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

//go:embed e2e/kwok.yaml e2e/instance-types.json
var e2eFiles embed.FS

// Cluster is the end-to-end stack: the API server with KEDA's and
// Karpenter's CRDs, kube-controller-manager (the Job controller),
// kube-scheduler, KWOK for simulated nodes, the KEDA operator, Karpenter's
// KWOK provider, and a pod runner that runs each job pod's command as a
// local process, as a kubelet would.
type Cluster struct {
	*Kube
	Typed kubernetes.Interface
	// Kubeconfig is a kubeconfig file for processes the test starts.
	Kubeconfig string
	// Runner runs the pods.
	Runner *PodRunner
	// Logs is where each component's output is written.
	Logs string

	procs   []*exec.Cmd
	nodesMu sync.Mutex
	nodes   map[string]NodeInfo
}

var (
	clusterOnce   sync.Once
	clusterShared *Cluster
	clusterErr    error
)

// GVRs of KEDA's and Karpenter's resources.
var (
	ScaledJobs = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledjobs"}
	NodePools  = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}
	NodeClaims = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}
)

// StartCluster returns the test binary's end-to-end stack, building its
// binaries (cached by version) and starting it the first time. The pod
// runner runs pods with the environment env adds to, so that workers reach
// the test's SQS and S3 servers.
func StartCluster(t testing.TB, env []string) *Cluster {
	t.Helper()
	clusterOnce.Do(func() {
		clusterShared, clusterErr = startCluster(t, env)
	})
	if clusterErr != nil {
		t.Fatalf("starting the end-to-end stack: %v", clusterErr)
	}
	return clusterShared
}

func startCluster(t testing.TB, env []string) (*Cluster, error) {
	bin, err := ControlPlaneBin(t, "all")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	k := StartKube(t)
	typed, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "jobfleet-e2e-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Kube: k, Typed: typed, Logs: filepath.Join(dir, "logs")}
	onStop(func() {
		c.stop()
		os.RemoveAll(dir)
	})
	if err := os.MkdirAll(c.Logs, 0o755); err != nil {
		return nil, err
	}
	// The stack outlives the test that starts it: its files are its own.
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := k.WriteKubeconfig(c.Kubeconfig); err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, name := range []string{"kwok.yaml", "instance-types.json"} {
		data, err := e2eFiles.ReadFile("e2e/" + name)
		if err != nil {
			return nil, err
		}
		files[name] = filepath.Join(dir, name)
		if err := os.WriteFile(files[name], data, 0o644); err != nil {
			return nil, err
		}
	}
	for _, ns := range []string{"keda", "karpenter"} {
		if _, err := typed.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	ports := func() string { return strconv.Itoa(freePort()) }
	kedaHealth, karpenterHealth := ports(), ports()
	certs := filepath.Join(dir, "keda-certs")
	if err := writeCerts(certs); err != nil {
		return nil, err
	}
	kubeEnv := []string{"KUBECONFIG=" + c.Kubeconfig}
	components := []struct {
		name string
		bin  string
		args []string
		env  []string
	}{
		{"kube-controller-manager", "kube-controller-manager-" + KubeVersion, []string{
			"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--secure-port=0",
			"--controllers=job-controller,deployment-controller,replicaset-controller,garbage-collector-controller,pod-garbage-collector-controller,namespace-controller,ttl-after-finished-controller,node-lifecycle-controller",
			"--concurrent-job-syncs=10",
		}, nil},
		{"kube-scheduler", "kube-scheduler-" + KubeVersion, []string{
			"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--secure-port=0",
		}, nil},
		{"kwok", "kwok-" + KwokVersion, []string{
			"--kubeconfig=" + c.Kubeconfig, "--config=" + files["kwok.yaml"], "--server-address=",
		}, nil},
		{"keda-operator", "keda-operator-" + KedaVersion, []string{
			"--enable-cert-rotation=false", "--enable-webhook-patching=false", "--leader-elect=false",
			"--metrics-bind-address=127.0.0.1:" + ports(), "--health-probe-bind-address=127.0.0.1:" + kedaHealth,
			"--zap-log-level=info", "--cert-dir=" + certs, "--metrics-service-bind-address=127.0.0.1:" + ports(),
			"--ca-dir=" + certs,
		}, append(kubeEnv, "WATCH_NAMESPACE=", "POD_NAMESPACE=keda", "KEDA_CLUSTER_OBJECT_NAMESPACE=keda",
			"AWS_REGION="+Region, "AWS_ACCESS_KEY_ID="+KEDAAccessKey, "AWS_SECRET_ACCESS_KEY="+SecretKey)},
		{"karpenter", "karpenter-kwok-" + KarpenterVersion, nil, append(kubeEnv,
			"DISABLE_LEADER_ELECTION=true", "SYSTEM_NAMESPACE=karpenter", "INSTANCE_TYPES_FILE_PATH="+files["instance-types.json"],
			"METRICS_PORT="+ports(), "HEALTH_PROBE_PORT="+karpenterHealth, "LOG_LEVEL=info",
			"BATCH_IDLE_DURATION=200ms", "BATCH_MAX_DURATION=2s")},
	}
	for _, comp := range components {
		if err := c.start(comp.name, filepath.Join(bin, comp.bin), comp.args, comp.env); err != nil {
			return nil, err
		}
	}
	for name, port := range map[string]string{"keda-operator": kedaHealth, "karpenter": karpenterHealth} {
		if err := awaitReady(name, "http://127.0.0.1:"+port+"/readyz", time.Minute); err != nil {
			return nil, fmt.Errorf("%w; its log ends:\n%s", err, c.Log(name, 2000))
		}
	}
	if err := c.createSystemNode(); err != nil {
		return nil, err
	}
	entrypoints := map[string]string{
		// A job pod's worker, copied from the image by the init container.
		"/opt/jobfleet/jobfleet": Build(t, "./cmd/jobfleet-worker"),
		// The image's own entrypoint, as the chart's dispatcher runs it.
		"/jobfleet": Build(t, "./cmd/jobfleet"),
		// Argo's executor, in its step pods' init and wait containers.
		"argoexec": argoExec(bin),
	}
	runner, err := NewPodRunner(typed, entrypoints, filepath.Join(dir, "pods"), env)
	if err != nil {
		return nil, err
	}
	runner.Kubeconfig = func(namespace, serviceAccount, path string) error {
		return k.WriteServiceAccountKubeconfig(namespace, serviceAccount, path)
	}
	runner.NSExec = Build(t, "./internal/testenv/nsexec")
	c.Runner = runner
	ctx, cancel := context.WithCancel(context.Background())
	onStop(func() { cancel(); runner.Wait() })
	if err := runner.Start(ctx); err != nil {
		return nil, err
	}
	if err := c.watchNodes(ctx); err != nil {
		return nil, err
	}
	t.Logf("the end-to-end stack was ready in %v", time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

// awaitReady polls a component's readiness endpoint until it answers 200.
func awaitReady(name, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not ready after %v (%s: %v)", name, timeout, url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a component, its output to a log file.
func (c *Cluster) start(name, bin string, args, env []string) error {
	logFile, err := os.Create(filepath.Join(c.Logs, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr(syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	return nil
}

func (c *Cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// Log returns the last bytes of a component's log, for failure messages.
func (c *Cluster) Log(name string, n int) string {
	tail, err := tailFile(filepath.Join(c.Logs, name+".log"), n)
	if err != nil {
		return err.Error()
	}
	return tail
}

// tailFile returns the last n bytes of a file.
func tailFile(path string, n int) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data), nil
}

// Apply creates or updates objects, server-side, as jobfleet's field
// manager: the end-to-end tests apply the NodePools `jobfleet nodepools`
// renders. Each test may apply the same objects; the result is the same.
func (c *Cluster) Apply(t testing.TB, objs []*unstructured.Unstructured) {
	t.Helper()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Typed.Discovery()))
	for _, obj := range objs {
		data, err := json.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		gvk := obj.GroupVersionKind()
		// The CRDs were installed as the stack started; their resources may
		// take a moment to be served.
		var last error
		err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				mapper.Reset()
				last = err
				return false, nil
			}
			_, err = c.Dynamic.Resource(mapping.Resource).Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "jobfleet", Force: ptr.To(true)})
			if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
				return false, err
			}
			last = err
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("applying %s %s: %v (last: %v)", gvk.Kind, obj.GetName(), err, last)
		}
	}
}

// KEDAAccessKey is the access key ID of the KEDA operator's AWS calls
// (KEDA's SQS triggers read class queue lengths as the operator), told
// apart from the workers' (AccessKey) in recorded calls.
const KEDAAccessKey = "keda"

// SystemNode is a simulated node outside Karpenter's pools, labelled
// LabelSystemNode=true, for what must always run (the dispatcher installed
// by the Helm chart), so that it never keeps a pool from scaling to zero.
const (
	SystemNode      = "jobfleet-system"
	LabelSystemNode = "jobfleet.io/system"
)

// createSystemNode registers SystemNode with KWOK, which keeps it ready.
func (c *Cluster) createSystemNode() error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        SystemNode,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{
				LabelSystemNode: "true", corev1.LabelHostname: SystemNode, corev1.LabelOSStable: "linux",
				corev1.LabelArchStable: "amd64", corev1.LabelTopologyZone: Region + "a", "type": "kwok",
			},
		},
		Status: corev1.NodeStatus{
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"), corev1.ResourcePods: resource.MustParse("110"),
			},
		},
	}
	node.Status.Allocatable = node.Status.Capacity
	_, err := c.Typed.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the system node: %w", err)
	}
	return nil
}

// LabelInstanceID is the label through which jobfleet's interruption
// handler finds the node of an EC2 instance when the node's provider id
// names none, as with the KWOK provider's kwok://<name>.
const LabelInstanceID = "jobfleet.io/instance-id"

// InstanceID is the simulated EC2 instance id of a node, which the cluster
// labels every node with as it registers, as a node bootstrap would.
func InstanceID(node string) string {
	sum := sha256.Sum256([]byte(node))
	return "i-" + hex.EncodeToString(sum[:])[:17]
}

// NodeInfo is what the cluster remembers of a node, which consolidation
// may have deleted by the time a test looks.
type NodeInfo struct {
	NodePool, CapacityType, InstanceType, Zone, InstanceID, Arch string
	GPUs                                                         int64
	// Spread is the node's jobfleet.io/capacity-spread value, in a split
	// pool.
	Spread string
}

// Node returns what the cluster saw of a node, false if it never saw it.
func (c *Cluster) Node(name string) (NodeInfo, bool) {
	c.nodesMu.Lock()
	defer c.nodesMu.Unlock()
	n, ok := c.nodes[name]
	return n, ok
}

// watchNodes remembers every node and gives each its LabelInstanceID
// label.
func (c *Cluster) watchNodes(ctx context.Context) error {
	c.nodes = map[string]NodeInfo{}
	factory := informers.NewSharedInformerFactory(c.Typed, time.Minute)
	inf := factory.Core().V1().Nodes().Informer()
	seen := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		gpus := n.Status.Allocatable[corev1.ResourceName("nvidia.com/gpu")]
		c.nodesMu.Lock()
		c.nodes[n.Name] = NodeInfo{
			NodePool: n.Labels["karpenter.sh/nodepool"], CapacityType: n.Labels["karpenter.sh/capacity-type"],
			InstanceType: n.Labels["node.kubernetes.io/instance-type"], Zone: n.Labels["topology.kubernetes.io/zone"],
			InstanceID: n.Labels[LabelInstanceID], GPUs: gpus.Value(), Arch: n.Labels[corev1.LabelArchStable],
			Spread: n.Labels["jobfleet.io/capacity-spread"],
		}
		c.nodesMu.Unlock()
		if n.Labels[LabelInstanceID] != InstanceID(n.Name) {
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, LabelInstanceID, InstanceID(n.Name))
			_, _ = c.Typed.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, obj any) { seen(obj) }}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	go func() { <-ctx.Done(); factory.Shutdown() }()
	return nil
}
