package interruption

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// EC2API finds an instance's private DNS name when no node names it in its
// provider id.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, opts ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// Kubernetes is the Cluster of a real cluster: nodes indexed by the
// instance id in their provider id (or their LabelInstanceID label), pods
// evicted through the Eviction API.
type Kubernetes struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// Namespace holds the jobfleet pods.
	Namespace string
	// EC2, when set, finds a node by its instance's private DNS name when
	// no node names the instance in its provider id.
	EC2 EC2API

	nodes cache.Indexer
}

const indexInstance = "instance-id"

// instanceID reads the instance id from an AWS provider id,
// aws:///<zone>/<instance-id>.
func instanceID(providerID string) string {
	if !strings.HasPrefix(providerID, "aws://") {
		return ""
	}
	id := providerID[strings.LastIndexByte(providerID, '/')+1:]
	if !strings.HasPrefix(id, "i-") {
		return ""
	}
	return id
}

// Start watches nodes, indexed by instance id, and returns once the index
// is filled. Calling it again does nothing.
func (k *Kubernetes) Start(ctx context.Context) error {
	if k.nodes != nil {
		return nil
	}
	factory := informers.NewSharedInformerFactory(k.Client, 10*time.Minute)
	inf := factory.Core().V1().Nodes().Informer()
	if err := inf.AddIndexers(cache.Indexers{indexInstance: func(obj any) ([]string, error) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return nil, nil
		}
		if id := instanceID(n.Spec.ProviderID); id != "" {
			return []string{id}, nil
		}
		if id := n.Labels[LabelInstanceID]; strings.HasPrefix(id, "i-") {
			return []string{id}, nil
		}
		return nil, nil
	}}); err != nil {
		return err
	}
	k.nodes = inf.GetIndexer()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("the node informer did not sync")
	}
	go func() { <-ctx.Done(); factory.Shutdown() }()
	return nil
}

// Node finds the node on an instance: through the index, else through
// EC2's private DNS name, which EKS nodes are named after.
func (k *Kubernetes) Node(ctx context.Context, instance string) (*Node, error) {
	objs, err := k.nodes.ByIndex(indexInstance, instance)
	if err != nil {
		return nil, err
	}
	if len(objs) > 0 {
		return nodeInfo(objs[0].(*corev1.Node)), nil
	}
	if k.EC2 == nil {
		return nil, nil
	}
	out, err := k.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instance}})
	if err != nil {
		return nil, fmt.Errorf("describing instance %s: %w", instance, err)
	}
	for _, r := range out.Reservations {
		for _, inst := range r.Instances {
			if name := aws.ToString(inst.PrivateDnsName); name != "" {
				if obj, ok, _ := k.nodes.GetByKey(name); ok {
					return nodeInfo(obj.(*corev1.Node)), nil
				}
			}
		}
	}
	return nil, nil
}

// NodeNamed returns what the node informer knows of a node: nil before it
// started, or when it knows no such node.
func (k *Kubernetes) NodeNamed(name string) *Node {
	if k.nodes == nil {
		return nil
	}
	obj, ok, err := k.nodes.GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	return nodeInfo(obj.(*corev1.Node))
}

func nodeInfo(n *corev1.Node) *Node {
	return &Node{Name: n.Name, InstanceType: n.Labels[labelInstanceType], Zone: n.Labels[labelZone], CapacityType: n.Labels[labelCapacityType]}
}

// Taint adds the interruption taint to a node, once.
func (k *Kubernetes) Taint(ctx context.Context, name string, kind Kind) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := k.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, t := range node.Spec.Taints {
			if t.Key == TaintKey {
				return nil
			}
		}
		// A merge patch of the whole list, made conditional on the version
		// read: a taint another controller added meanwhile is a conflict,
		// tried again, never lost. Patch, not update: the dispatcher's
		// ClusterRole may only patch nodes.
		taints := append(node.Spec.Taints, corev1.Taint{Key: TaintKey, Value: string(kind), Effect: corev1.TaintEffectNoSchedule})
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": node.ResourceVersion},
			"spec":     map[string]any{"taints": taints},
		})
		if err != nil {
			return err
		}
		_, err = k.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
}

// Pods lists the live jobfleet pods on a node.
func (k *Kubernetes) Pods(ctx context.Context, node string) ([]Pod, error) {
	list, err := k.Client.CoreV1().Pods(k.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labelManagedBy + "=jobfleet",
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, err
	}
	var out []Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		grace := int64(30)
		if p.Spec.TerminationGracePeriodSeconds != nil {
			grace = *p.Spec.TerminationGracePeriodSeconds
		}
		out = append(out, Pod{Namespace: p.Namespace, Name: p.Name, Grace: grace})
	}
	return out, nil
}

// Annotate merges annotations into a pod.
func (k *Kubernetes) Annotate(ctx context.Context, pod Pod, annotations map[string]string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	_, err = k.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Evict evicts a pod through the Eviction API. A disruption budget that
// blocks the eviction is overridden by a delete with the same grace: the
// instance goes anyway.
func (k *Kubernetes) Evict(ctx context.Context, pod Pod, grace int64) error {
	opts := &metav1.DeleteOptions{GracePeriodSeconds: &grace}
	err := k.Client.PolicyV1().Evictions(pod.Namespace).Evict(ctx, &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}, DeleteOptions: opts,
	})
	if apierrors.IsTooManyRequests(err) {
		err = k.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, *opts)
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
