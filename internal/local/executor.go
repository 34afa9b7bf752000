package local

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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"

	"github.com/jobfleet/jobfleet/dispatcher"
	"github.com/jobfleet/jobfleet/dispatcher/interruption"
	"github.com/jobfleet/jobfleet/internal/contract"
	"github.com/jobfleet/jobfleet/jobtype"
)

// node is a simulated node: the local machine, named as an instance.
type node struct {
	interruption.Node
	instanceID string
	tainted    bool
}

// pod is a worker process.
type pod struct {
	name    string
	node    string
	class   dispatcher.Class
	cmd     *exec.Cmd
	dir     string
	grace   time.Duration
	started time.Time
	exited  chan struct{}
	stopped bool
}

// executor stands in for KEDA, Karpenter and the kubelet: it watches the
// class queues and starts one `jobfleet worker` process per waiting message,
// up to a concurrency limit, on simulated spot and on-demand nodes; and it
// implements interruption.Cluster, so that the interruption controller
// evicts its processes the way it evicts pods.
type executor struct {
	sqs         *sqs.Client
	binary      string
	registry    *jobtype.Registry
	classes     func() map[dispatcher.Class]string
	avoid       func() []interruption.Pair
	concurrency int
	dir         string
	env         []string
	workerEnv   func(p *pod, url string, n *node) contract.WorkerEnv
	log         zerolog.Logger
	onExit      func(p *pod, err error)

	mu    sync.Mutex
	nodes []*node
	pods  map[string]*pod
	seq   int
	spots int
	wg    sync.WaitGroup
}

func newExecutor() *executor {
	e := &executor{pods: map[string]*pod{}}
	e.addNode(jobfleetSpot, "spot")
	e.addNode(jobfleetOnDemand, "on-demand")
	return e
}

const (
	jobfleetSpot     = "local-spot"
	jobfleetOnDemand = "local-od"
)

// addNode adds a node of a capacity type; spot nodes get a new zone each,
// as replacement capacity would.
func (e *executor) addNode(prefix, capacity string) *node {
	zone := "local-a"
	if capacity == "spot" {
		e.spots++
		zone = fmt.Sprintf("local-%c", 'a'+(e.spots-1)%26)
	}
	n := &node{
		Node: interruption.Node{
			Name: fmt.Sprintf("%s-%d", prefix, len(e.nodes)+1), InstanceType: "m7i.large", Zone: zone, CapacityType: capacity,
		},
		instanceID: fmt.Sprintf("i-0a1b2c3d4e5f%05d", len(e.nodes)+1),
	}
	e.nodes = append(e.nodes, n)
	return n
}

// SpotInstance returns the instance id of the spot node with the most
// worker processes of the type that have run for at least minAge: the one
// to interrupt.
func (e *executor) SpotInstance(jobType string, minAge time.Duration) (string, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	best, most := "", -1
	for _, n := range e.nodes {
		if n.CapacityType != "spot" || n.tainted {
			continue
		}
		count := 0
		for _, p := range e.pods {
			if p.node == n.Name && (jobType == "" || p.class.Type == jobType) && !p.stopped && time.Since(p.started) >= minAge {
				count++
			}
		}
		if count > most {
			best, most = n.instanceID, count
		}
	}
	return best, most
}

// run starts workers for waiting messages until ctx ends, then stops the
// workers it started and waits for them.
func (e *executor) run(ctx context.Context) {
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			e.mu.Lock()
			for _, p := range e.pods {
				e.stop(p, 5*time.Second)
			}
			e.mu.Unlock()
			e.wg.Wait()
			return
		case <-ticker.C:
		}
		e.scale(ctx)
	}
}

// scale starts workers for each class the way KEDA's default scaling
// strategy does for a ScaledJob with queueLength 1 and scaleOnInFlight:
// visible plus in-flight messages, less the workers already running.
func (e *executor) scale(ctx context.Context) {
	for cl, url := range e.classes() {
		out, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{
				sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			},
		})
		if err != nil {
			continue
		}
		visible, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
		inFlight, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
		e.mu.Lock()
		running, ofClass := 0, 0
		for _, p := range e.pods {
			if !p.stopped {
				running++
				if p.class == cl {
					ofClass++
				}
			}
		}
		for n := visible + inFlight - ofClass; n > 0 && running < e.concurrency; n-- {
			if err := e.start(cl, url); err != nil {
				e.log.Warn().Err(err).Str("class", cl.String()).Msg("starting a worker")
				break
			}
			running++
		}
		e.mu.Unlock()
	}
}

// place chooses a node for a class, as Karpenter would: on-demand classes
// on on-demand capacity, others on spot first, never on a tainted node or
// on capacity the class must avoid.
func (e *executor) place(cl dispatcher.Class) *node {
	var avoid []interruption.Pair
	if cl.AvoidInterrupted && e.avoid != nil {
		avoid = e.avoid()
	}
	want := []string{"spot", "on-demand"}
	switch cl.Capacity {
	case dispatcher.CapacityOnDemand:
		want = []string{"on-demand"}
	case dispatcher.CapacitySpot:
		want = []string{"spot"}
	}
	for _, capacity := range want {
		for _, n := range e.nodes {
			if n.tainted || n.CapacityType != capacity || slices.Contains(avoid, interruption.Pair{InstanceType: n.InstanceType, Zone: n.Zone}) {
				continue
			}
			return n
		}
	}
	if slices.Contains(want, "spot") {
		// Replacement spot capacity, in a new zone.
		return e.addNode(jobfleetSpot, "spot")
	}
	return nil
}

// start launches a worker process for a class; e.mu is held.
func (e *executor) start(cl dispatcher.Class, url string) error {
	n := e.place(cl)
	if n == nil {
		return fmt.Errorf("no node for class %s", cl)
	}
	e.seq++
	p := &pod{name: fmt.Sprintf("%s-%d", cl.Type, e.seq), node: n.Name, class: cl, exited: make(chan struct{}), started: time.Now()}
	typ, _ := e.registry.Type(cl.Type)
	p.grace = typ.Checkpoint.GracePeriod()
	p.dir = filepath.Join(e.dir, "pods", p.name)
	if err := os.MkdirAll(filepath.Join(p.dir, "tmp"), 0o755); err != nil {
		return err
	}
	args := append([]string{"--log-format", "json", "worker", "--"}, typ.Command...)
	p.cmd = exec.Command(e.binary, args...)
	p.cmd.Env = append(append(os.Environ(), e.env...), e.workerEnv(p, url, n).Strings()...)
	// A temp directory of the pod's own, as a container's /tmp is.
	p.cmd.Env = append(p.cmd.Env, "TMPDIR="+filepath.Join(p.dir, "tmp"))
	logFile, err := os.Create(filepath.Join(p.dir, "output.log"))
	if err != nil {
		return err
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	e.pods[p.name] = p
	e.wg.Go(func() {
		err := p.cmd.Wait()
		logFile.Close()
		close(p.exited)
		e.mu.Lock()
		delete(e.pods, p.name)
		e.mu.Unlock()
		if e.onExit != nil {
			e.onExit(p, err)
		}
	})
	return nil
}

// stop sends SIGTERM and, after grace, SIGKILL, as a kubelet would; e.mu
// is held.
func (e *executor) stop(p *pod, grace time.Duration) {
	if p.stopped {
		return
	}
	p.stopped = true
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	if grace <= 0 {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		return
	}
	go func() {
		select {
		case <-p.exited:
		case <-time.After(grace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
}

// Running counts the live worker processes by job type.
func (e *executor) Running() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for _, p := range e.pods {
		if !p.stopped {
			out[p.class.Type]++
		}
	}
	return out
}

// The interruption.Cluster of the local machine.

func (e *executor) Start(context.Context) error { return nil }

func (e *executor) Node(_ context.Context, instanceID string) (*interruption.Node, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.nodes {
		if n.instanceID == instanceID {
			info := n.Node
			return &info, nil
		}
	}
	return nil, nil
}

func (e *executor) Taint(_ context.Context, name string, _ interruption.Kind) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.nodes {
		if n.Name == name {
			n.tainted = true
		}
	}
	return nil
}

func (e *executor) Pods(_ context.Context, nodeName string) ([]interruption.Pod, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []interruption.Pod
	for _, p := range e.pods {
		if p.node == nodeName && !p.stopped {
			out = append(out, interruption.Pod{Namespace: "local", Name: p.name, Grace: int64(p.grace / time.Second)})
		}
	}
	return out, nil
}

// Annotate writes the annotations where the worker reads them, in the
// downward API's format.
func (e *executor) Annotate(_ context.Context, pd interruption.Pod, annotations map[string]string) error {
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range annotations {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s=%q\n", k, annotations[k])
	}
	return os.WriteFile(filepath.Join(e.dir, "pods", pd.Name, "annotations"), []byte(b.String()), 0o644)
}

func (e *executor) Evict(_ context.Context, pd interruption.Pod, grace int64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.pods[pd.Name]; ok {
		e.stop(p, time.Duration(grace)*time.Second)
	}
	return nil
}
