package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// PodRunner plays the kubelet for jobfleet's pods on simulated nodes: job
// pods and the pods of the dispatcher the Helm chart installs. It runs each
// pod's first container as a local process (the real `jobfleet worker` or
// `jobfleet dispatcher`, the pod's environment resolved as a kubelet
// would), inside a memory cgroup limited to the container's limit where
// the host allows, and reports the pod's status from the process. A
// deleted or evicted pod gets SIGTERM, then SIGKILL when its grace period
// runs out.
//
// What a container image would hold is mapped to local files: a command's
// executable through the entrypoints, a ConfigMap or emptyDir volume to a
// directory of the pod's own (paths under a mount point in the command and
// environment are rewritten to it), and a service account's token to a
// kubeconfig that authenticates as the account (KUBECONFIG).
type PodRunner struct {
	client      kubernetes.Interface
	entrypoints map[string]string
	dir         string
	env         []string
	cgroups     bool

	// Kubeconfig, if set, writes to path a kubeconfig that authenticates
	// as a service account; pods whose account token would be mounted get
	// it as KUBECONFIG.
	Kubeconfig func(namespace, serviceAccount, path string) error
	// NSExec is the nsexec helper (./internal/testenv/nsexec) Argo's pods
	// run their containers through.
	NSExec string

	binOnce sync.Once // imageBin
	binDir  string
	binErr  error

	mu   sync.Mutex
	pods map[types.UID]*runningPod
	done map[types.UID]bool
	wg   sync.WaitGroup
}

type runningPod struct {
	namespace, name string
	uid             types.UID
	cmd             *exec.Cmd
	dir             string
	cgroup          string
	exited          chan struct{}
	deleting        bool

	// procs are the running processes of a pod of several containers
	// (Argo's); stopped says none is to start any more.
	procsMu sync.Mutex
	procs   map[*exec.Cmd]bool
	stopped bool
}

// signal sends sig to the process groups of every container of the pod;
// a pod of several containers starts none after SIGTERM or SIGKILL.
func (p *runningPod) signal(sig syscall.Signal) {
	if p.cmd != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	p.stopped = true
	for c := range p.procs {
		_ = syscall.Kill(-c.Process.Pid, sig)
	}
}

// cgroupRoot is where the runner makes the pods' cgroups (cgroup v1).
const cgroupRoot = "/sys/fs/cgroup/memory/jobfleet-pods"

// ImageEntrypoint is the entrypoint of jobfleet's image, which runs a
// container that has no command of its own.
const ImageEntrypoint = "/jobfleet"

// NewPodRunner returns a runner of pods. entrypoints maps an executable's
// path in the image (a container's command[0], or ImageEntrypoint) to the
// local binary to run instead; other commands run as they are.
func NewPodRunner(client kubernetes.Interface, entrypoints map[string]string, dir string, env []string) (*PodRunner, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &PodRunner{client: client, entrypoints: entrypoints, dir: dir, env: env, pods: map[types.UID]*runningPod{}, done: map[types.UID]bool{}}
	if err := os.MkdirAll(cgroupRoot, 0o755); err == nil {
		r.cgroups = true
	}
	return r, nil
}

// EnforcesMemory reports whether pods run under memory cgroups limited to
// their containers' limits, so that exceeding one is an OOM kill.
func (r *PodRunner) EnforcesMemory() bool { return r.cgroups }

// Start watches jobfleet's pods until ctx ends.
func (r *PodRunner) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(r.client, time.Minute)
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.sync(ctx, obj) },
		UpdateFunc: func(_, obj any) { r.sync(ctx, obj) },
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	go func() { <-ctx.Done(); factory.Shutdown() }()
	return nil
}

// Wait waits for every process the runner started.
func (r *PodRunner) Wait() {
	r.mu.Lock()
	for _, p := range r.pods {
		p.signal(syscall.SIGKILL)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *PodRunner) sync(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" || !runs(pod) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pods[pod.UID]
	switch {
	case p == nil && pod.DeletionTimestamp != nil:
		if !r.done[pod.UID] || pod.Status.Phase != corev1.PodPending {
			// Nothing runs: finish the deletion, as a kubelet does.
			go r.remove(ctx, pod.Namespace, pod.Name, pod.UID)
		}
	case p == nil && !r.done[pod.UID] && pod.Status.Phase == corev1.PodPending:
		start := r.start
		if isArgo(pod) {
			start = r.startArgo
		}
		if err := start(ctx, pod); err != nil {
			r.done[pod.UID] = true
			go r.finish(ctx, pod.Namespace, pod.Name, pod.UID, 128, "StartError: "+err.Error())
		}
	case p != nil:
		r.writeAnnotations(p, pod)
		if pod.DeletionTimestamp != nil && !p.deleting {
			p.deleting = true
			grace := int64(30)
			if pod.DeletionGracePeriodSeconds != nil {
				grace = *pod.DeletionGracePeriodSeconds
			}
			p.signal(syscall.SIGTERM)
			go func() {
				select {
				case <-p.exited:
				case <-time.After(time.Duration(grace) * time.Second):
					p.signal(syscall.SIGKILL)
				}
			}()
		}
	}
}

// mountVolumes makes a directory of the pod's own for each ConfigMap and
// emptyDir volume the container mounts, and returns what rewrites paths
// under their mount points to those directories in the arguments and
// environment. Other volumes are not mounted.
func (r *PodRunner) mountVolumes(ctx context.Context, pod *corev1.Pod, c corev1.Container, dir string) (*strings.Replacer, error) {
	var pairs []string
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			return nil, fmt.Errorf("volume mount %s names no volume", m.Name)
		}
		// A job pod's checkpoint and downward-API files come from
		// JOBFLEET_CHECKPOINT_DIR and JOBFLEET_REASON_FILE instead.
		local, err := r.volumeDir(ctx, pod, pod.Spec.Volumes[i], dir)
		if err != nil {
			return nil, err
		}
		if local != "" {
			pairs = append(pairs, strings.TrimSuffix(m.MountPath, "/"), local)
		}
	}
	return strings.NewReplacer(pairs...), nil
}

// volumeDir makes the directory of the pod's own that stands for one of
// its volumes: an emptyDir's, empty and writable by all as a kubelet makes
// it, or a ConfigMap's, holding its keys as files. It returns "" for the
// volumes the runner does not provide.
func (r *PodRunner) volumeDir(ctx context.Context, pod *corev1.Pod, v corev1.Volume, dir string) (string, error) {
	if v.ConfigMap == nil && v.EmptyDir == nil {
		return "", nil
	}
	local := filepath.Join(dir, "volumes", v.Name)
	if err := os.MkdirAll(local, 0o777); err != nil {
		return "", err
	}
	if v.ConfigMap != nil {
		cm, err := r.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("volume %s: %w", v.Name, err)
		}
		for key, data := range cm.Data {
			if err := os.WriteFile(filepath.Join(local, key), []byte(data), 0o644); err != nil {
				return "", err
			}
		}
	}
	return local, nil
}

// podEnv is a container's environment before its own variables: the
// runner's environment without the credentials of whoever runs the tests
// (a pod reaches the API server as its service account or not at all) and
// without the variables extra sets, then extra, the runner's additions,
// and the account's kubeconfig when the pod has one.
func (r *PodRunner) podEnv(kubeconfig string, extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return name == "KUBECONFIG" || name == "JOBFLEET_KUBECONFIG" || slices.ContainsFunc(extra, func(e string) bool { return strings.HasPrefix(e, name+"=") })
	})
	env = append(append(env, extra...), r.env...)
	if kubeconfig != "" {
		env = append(env, "KUBECONFIG="+kubeconfig)
	}
	return env
}

// serviceAccountKubeconfig writes a kubeconfig for the pod's service
// account where a kubelet would mount the account's token, and returns its
// path ("" where none would be mounted).
func (r *PodRunner) serviceAccountKubeconfig(ctx context.Context, pod *corev1.Pod, dir string) (string, error) {
	if r.Kubeconfig == nil || pod.Spec.ServiceAccountName == "" || (pod.Spec.AutomountServiceAccountToken != nil && !*pod.Spec.AutomountServiceAccountToken) {
		return "", nil
	}
	sa, err := r.client.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, pod.Spec.ServiceAccountName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// No account, no token: the pod reaches no API server (KUBECONFIG
		// is not inherited).
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if pod.Spec.AutomountServiceAccountToken == nil && sa.AutomountServiceAccountToken != nil && !*sa.AutomountServiceAccountToken {
		return "", nil
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := r.Kubeconfig(pod.Namespace, sa.Name, path); err != nil {
		return "", err
	}
	return path, nil
}

// runs reports whether the runner runs a pod: jobfleet's job pods, the
// dispatcher's as the chart installs them, and Argo Workflows' step pods.
func runs(pod *corev1.Pod) bool {
	return pod.Labels["app.kubernetes.io/managed-by"] == "jobfleet" || pod.Labels["app.kubernetes.io/name"] == "jobfleet" || isArgo(pod)
}

// writeAnnotations keeps the downward-API annotations file up to date.
func (r *PodRunner) writeAnnotations(p *runningPod, pod *corev1.Pod) {
	keys := make([]string, 0, len(pod.Annotations))
	for k := range pod.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q\n", k, pod.Annotations[k])
	}
	tmp := filepath.Join(p.dir, ".annotations")
	if os.WriteFile(tmp, []byte(b.String()), 0o644) == nil {
		_ = os.Rename(tmp, filepath.Join(p.dir, "annotations"))
	}
}

// start runs a pod's container; r.mu is held.
func (r *PodRunner) start(ctx context.Context, pod *corev1.Pod) error {
	if len(pod.Spec.Containers) == 0 {
		return fmt.Errorf("pod %s has no container", pod.Name)
	}
	c := pod.Spec.Containers[0]
	dir := filepath.Join(r.dir, pod.Namespace, pod.Name)
	for _, sub := range []string{"checkpoint", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	p := &runningPod{namespace: pod.Namespace, name: pod.Name, uid: pod.UID, dir: dir, exited: make(chan struct{})}
	r.writeAnnotations(p, pod)
	mounts, err := r.mountVolumes(ctx, pod, c, dir)
	if err != nil {
		return err
	}
	kubeconfig, err := r.serviceAccountKubeconfig(ctx, pod, dir)
	if err != nil {
		return err
	}
	// A temp directory of the pod's own, as a container's /tmp is: what a
	// killed process leaves there goes with the pod's directory.
	env := r.podEnv(kubeconfig, "TMPDIR="+filepath.Join(dir, "tmp"))
	for _, e := range c.Env {
		env = append(env, e.Name+"="+mounts.Replace(envValue(pod, e)))
	}
	// The volumes of the pod are directories of its own here.
	env = append(env, "JOBFLEET_CHECKPOINT_DIR="+filepath.Join(dir, "checkpoint"), "JOBFLEET_REASON_FILE="+filepath.Join(dir, "annotations"))
	args := append(slices.Clone(c.Command), c.Args...)
	if len(c.Command) == 0 {
		args = append([]string{ImageEntrypoint}, c.Args...)
	}
	if bin, ok := r.entrypoints[args[0]]; ok {
		args[0] = bin
	}
	for i := range args[1:] {
		args[i+1] = mounts.Replace(args[i+1])
	}
	if limit := c.Resources.Limits.Memory(); r.cgroups && !limit.IsZero() {
		cg := filepath.Join(cgroupRoot, string(pod.UID))
		if err := os.MkdirAll(cg, 0o755); err == nil {
			if err := os.WriteFile(filepath.Join(cg, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit.Value(), 10)), 0o644); err == nil {
				p.cgroup = cg
				args = append([]string{"/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(cg, "cgroup.procs")}, args...)
			}
		}
	}
	logFile, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		return err
	}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = childAttr(syscall.SIGKILL)
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	r.pods[pod.UID] = p
	r.setRunning(ctx, pod)
	r.wg.Go(func() {
		err := p.cmd.Wait()
		logFile.Close()
		close(p.exited)
		code, reason := 0, "Completed"
		if err != nil {
			code, reason = 1, "Error"
			if exitErr, ok := err.(*exec.ExitError); ok {
				status := exitErr.Sys().(syscall.WaitStatus)
				code = status.ExitStatus()
				if status.Signaled() {
					code = 128 + int(status.Signal())
				}
			}
			if p.cgroup != "" && oomKilled(p.cgroup) {
				reason = "OOMKilled"
			}
		}
		if p.cgroup != "" {
			_ = os.Remove(p.cgroup)
		}
		r.mu.Lock()
		delete(r.pods, p.uid)
		r.done[p.uid] = true
		deleting := p.deleting
		r.mu.Unlock()
		r.finish(ctx, p.namespace, p.name, p.uid, code, reason)
		if deleting {
			r.remove(ctx, p.namespace, p.name, p.uid)
		}
	})
	return nil
}

// envValue is an environment variable's value as a kubelet resolves it:
// its value, or the pod field it names (the downward API).
func envValue(pod *corev1.Pod, e corev1.EnvVar) string {
	if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil {
		return e.Value
	}
	switch e.ValueFrom.FieldRef.FieldPath {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "spec.nodeName":
		return pod.Spec.NodeName
	}
	return e.Value
}

func oomKilled(cgroup string) bool {
	data, err := os.ReadFile(filepath.Join(cgroup, "memory.oom_control"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}

func (r *PodRunner) setRunning(ctx context.Context, pod *corev1.Pod) {
	now := metav1.Now()
	r.updateStatus(ctx, pod.Namespace, pod.Name, pod.UID, func(s *corev1.PodStatus) {
		s.Phase, s.StartTime = corev1.PodRunning, &now
		s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Ready: true, Started: ptrTrue(),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}, Image: pod.Spec.Containers[0].Image}}
	})
}

// finish reports a pod's container as terminated.
func (r *PodRunner) finish(ctx context.Context, namespace, name string, uid types.UID, code int, reason string) {
	now := metav1.Now()
	r.updateStatus(ctx, namespace, name, uid, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodSucceeded
		if code != 0 {
			s.Phase = corev1.PodFailed
		}
		s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: now}}
		cname := "job"
		if len(s.ContainerStatuses) > 0 {
			cname = s.ContainerStatuses[0].Name
		}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: cname, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason, FinishedAt: now},
		}}}
	})
}

func (r *PodRunner) updateStatus(ctx context.Context, namespace, name string, uid types.UID, f func(*corev1.PodStatus)) {
	_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := r.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
		if pod.UID != uid {
			return nil
		}
		f(&pod.Status)
		_, err = r.client.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
}

// remove finishes a deletion once nothing runs, as a kubelet does.
func (r *PodRunner) remove(ctx context.Context, namespace, name string, uid types.UID) {
	zero := int64(0)
	_ = r.client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
}

func ptrTrue() *bool { t := true; return &t }

// Output returns the end of the output of each pod the runner ran in a
// namespace, by pod name, for failure messages.
func (r *PodRunner) Output(namespace string, n int) map[string]string {
	out := map[string]string{}
	dirs, _ := os.ReadDir(filepath.Join(r.dir, namespace))
	for _, d := range dirs {
		if tail, err := tailFile(filepath.Join(r.dir, namespace, d.Name(), "output.log"), n); err == nil {
			out[d.Name()] = tail
		}
	}
	return out
}
