package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// argoWorkflowLabel marks the pods of Argo Workflows' steps.
const argoWorkflowLabel = "workflows.argoproj.io/workflow"

func isArgo(pod *corev1.Pod) bool { return pod.Labels[argoWorkflowLabel] != "" }

// startArgo runs an Argo step pod as a kubelet would: its init containers
// one after the other, then all its containers together (Argo's emissary
// wraps the main one, its wait sidecar reports the outputs). Each
// container runs in a mount namespace of its own where the pod's emptyDir
// and ConfigMap volumes are bind-mounted at their mount paths (Argo's
// executor uses /var/run/argo whatever its environment says), through the
// nsexec helper. Commands are mapped through the entrypoints, including the
// command the emissary runs (after its "--"). r.mu is held.
func (r *PodRunner) startArgo(ctx context.Context, pod *corev1.Pod) error {
	if r.NSExec == "" {
		return errors.New("the pod runner has no nsexec helper for Argo's pods")
	}
	dir := filepath.Join(r.dir, pod.Namespace, pod.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kubeconfig, err := r.serviceAccountKubeconfig(ctx, pod, dir)
	if err != nil {
		return err
	}
	// Every volume the runner can provide, once for the whole pod.
	volumes := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		local, err := r.volumeDir(ctx, pod, v, dir)
		if err != nil {
			return err
		}
		if local != "" {
			volumes[v.Name] = local
		}
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "output.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p := &runningPod{namespace: pod.Namespace, name: pod.Name, uid: pod.UID, dir: dir, exited: make(chan struct{})}
	commands := map[string]*exec.Cmd{}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		cmd, err := r.argoCommand(ctx, pod, c, volumes, kubeconfig)
		if err != nil {
			logFile.Close()
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		commands[c.Name] = cmd
	}
	r.pods[pod.UID] = p
	r.wg.Go(func() {
		defer logFile.Close()
		statuses := newArgoStatuses(pod)
		r.updateStatus(ctx, pod.Namespace, pod.Name, pod.UID, statuses.apply)
		code := 0
		for _, c := range pod.Spec.InitContainers {
			statuses.running(c.Name)
			r.updateStatus(ctx, pod.Namespace, pod.Name, pod.UID, statuses.apply)
			code = p.run(commands[c.Name])
			fmt.Fprintf(logFile, "--- init container %s exited %d\n", c.Name, code)
			statuses.terminated(c.Name, code)
			r.updateStatus(ctx, pod.Namespace, pod.Name, pod.UID, statuses.apply)
			if code != 0 {
				break
			}
		}
		if code == 0 {
			var wg sync.WaitGroup
			var mu sync.Mutex
			for _, c := range pod.Spec.Containers {
				statuses.running(c.Name)
			}
			r.updateStatus(ctx, pod.Namespace, pod.Name, pod.UID, statuses.apply)
			for _, c := range pod.Spec.Containers {
				wg.Go(func() {
					exit := p.run(commands[c.Name])
					fmt.Fprintf(logFile, "--- container %s exited %d\n", c.Name, exit)
					mu.Lock()
					statuses.terminated(c.Name, exit)
					if exit != 0 && code == 0 {
						code = exit
					}
					mu.Unlock()
					r.updateStatus(ctx, pod.Namespace, pod.Name, pod.UID, func(s *corev1.PodStatus) {
						mu.Lock()
						defer mu.Unlock()
						statuses.apply(s)
					})
				})
			}
			wg.Wait()
		}
		close(p.exited)
		r.mu.Lock()
		delete(r.pods, p.uid)
		r.done[p.uid] = true
		deleting := p.deleting
		r.mu.Unlock()
		statuses.finished(code)
		r.updateStatus(ctx, pod.Namespace, pod.Name, pod.UID, statuses.apply)
		if deleting {
			r.remove(ctx, p.namespace, p.name, p.uid)
		}
	})
	return nil
}

// run runs one container's process to its end and returns its exit code;
// a pod being stopped starts nothing more. Each container is the first
// process of a PID namespace of its own, as in a pod: when it dies (Argo's
// emissary, killed), the kernel kills what it started, even in process
// groups of their own.
func (p *runningPod) run(cmd *exec.Cmd) int {
	p.procsMu.Lock()
	if p.stopped {
		p.procsMu.Unlock()
		return 137
	}
	cmd.SysProcAttr = childAttr(syscall.SIGKILL)
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
	err := cmd.Start()
	if err == nil {
		if p.procs == nil {
			p.procs = map[*exec.Cmd]bool{}
		}
		p.procs[cmd] = true
	}
	p.procsMu.Unlock()
	if err != nil {
		fmt.Fprintf(cmd.Stderr, "starting %s: %v\n", cmd.Path, err)
		return 128
	}
	err = cmd.Wait()
	p.procsMu.Lock()
	delete(p.procs, cmd)
	p.procsMu.Unlock()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		status := exit.Sys().(syscall.WaitStatus)
		if status.Signaled() {
			return 128 + int(status.Signal())
		}
		return status.ExitStatus()
	}
	return 1
}

// argoCommand is a container's process: its command through nsexec, with
// its volumes bound and its environment resolved.
func (r *PodRunner) argoCommand(ctx context.Context, pod *corev1.Pod, c corev1.Container, volumes map[string]string, kubeconfig string) (*exec.Cmd, error) {
	args := append(slices.Clone(c.Command), c.Args...)
	if len(args) == 0 {
		return nil, errors.New("no command (the runner cannot look up an image's entrypoint)")
	}
	if bin, ok := r.entrypoints[args[0]]; ok {
		args[0] = bin
	}
	// The emissary runs the step's own command after "--".
	if i := slices.Index(args, "--"); i >= 0 && i+1 < len(args) {
		if bin, ok := r.entrypoints[args[i+1]]; ok {
			args[i+1] = bin
		}
	}
	nsArgs := []string{}
	for _, m := range c.VolumeMounts {
		local, ok := volumes[m.Name]
		if !ok {
			continue
		}
		if within(r.dir, m.MountPath) {
			// A scratch volume over /tmp (Argo's wait container has one)
			// would hide the runner's own files there: the binaries'
			// links, the kubeconfig. The container uses the host's.
			continue
		}
		nsArgs = append(nsArgs, "--bind", local+"="+m.MountPath)
	}
	nsArgs = append(append(nsArgs, "--"), args...)
	// The image's executables by name on the PATH (argoexec looks itself up
	// to copy itself into /var/run/argo).
	bin, err := r.imageBin()
	if err != nil {
		return nil, err
	}
	env := r.podEnv(kubeconfig, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		cm, err := r.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if err != nil {
			if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
				continue
			}
			return nil, fmt.Errorf("envFrom %s: %w", from.ConfigMapRef.Name, err)
		}
		for k, v := range cm.Data {
			env = append(env, from.Prefix+k+"="+v)
		}
	}
	for _, e := range c.Env {
		env = append(env, e.Name+"="+envValue(pod, e))
	}
	cmd := exec.Command(r.NSExec, nsArgs...)
	cmd.Env = env
	return cmd, nil
}

// argoStatuses are the statuses of an Argo pod's containers, as a kubelet
// reports them.
type argoStatuses struct {
	init, main []corev1.ContainerStatus
	phase      corev1.PodPhase
}

func newArgoStatuses(pod *corev1.Pod) *argoStatuses {
	s := &argoStatuses{phase: corev1.PodPending}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	for _, c := range pod.Spec.InitContainers {
		s.init = append(s.init, corev1.ContainerStatus{Name: c.Name, Image: c.Image, State: waiting})
	}
	for _, c := range pod.Spec.Containers {
		s.main = append(s.main, corev1.ContainerStatus{Name: c.Name, Image: c.Image, State: waiting})
	}
	return s
}

func (s *argoStatuses) find(name string) *corev1.ContainerStatus {
	for i := range s.init {
		if s.init[i].Name == name {
			return &s.init[i]
		}
	}
	for i := range s.main {
		if s.main[i].Name == name {
			s.phase = corev1.PodRunning
			return &s.main[i]
		}
	}
	return nil
}

func (s *argoStatuses) running(name string) {
	if c := s.find(name); c != nil {
		c.State, c.Ready, c.Started = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}, true, ptrTrue()
	}
}

func (s *argoStatuses) terminated(name string, code int) {
	if c := s.find(name); c != nil {
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		c.State, c.Ready = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason, FinishedAt: metav1.Now()}}, false
	}
}

// finished sets the pod's phase once every container has ended.
func (s *argoStatuses) finished(code int) {
	s.phase = corev1.PodSucceeded
	if code != 0 {
		s.phase = corev1.PodFailed
	}
	for i := range s.main {
		if s.main[i].State.Terminated == nil {
			s.main[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerCannotRun", FinishedAt: metav1.Now()}}
		}
	}
}

func (s *argoStatuses) apply(st *corev1.PodStatus) {
	now := metav1.Now()
	st.Phase = s.phase
	if st.StartTime == nil {
		st.StartTime = &now
	}
	st.InitContainerStatuses = slices.Clone(s.init)
	st.ContainerStatuses = slices.Clone(s.main)
	ready := corev1.ConditionFalse
	if s.phase == corev1.PodRunning {
		ready = corev1.ConditionTrue
	}
	st.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, LastTransitionTime: now}}
}

// imageBin is a directory of links to the local binaries of the
// entrypoints named without a path (argoexec): what an image's PATH would
// find.
// It is made once.
func (r *PodRunner) imageBin() (string, error) {
	r.binOnce.Do(func() {
		dir := filepath.Join(r.dir, "bin")
		if r.binErr = os.MkdirAll(dir, 0o755); r.binErr != nil {
			return
		}
		for name, local := range r.entrypoints {
			if strings.Contains(name, "/") {
				continue
			}
			if r.binErr = os.Symlink(local, filepath.Join(dir, name)); r.binErr != nil {
				return
			}
		}
		r.binDir = dir
	})
	return r.binDir, r.binErr
}

// within reports whether path is dir or under it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
