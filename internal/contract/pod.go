package contract

import (
	"context"
	"time"
)

// PodIndex tells the dispatcher's failure sensor which attempt a pod runs:
// a worker writes it after claiming, and deletes it when the attempt ended.
// When the pod dies without its worker reporting (the container was
// OOM-killed, the node vanished), the sensor finds the claim through it and
// ends the attempt in the worker's place.
type PodIndex struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	JobID     string `json:"job_id"`
	Type      string `json:"type"`
	Run       string `json:"run"`
	Attempt   int    `json:"attempt"`
	// MessageID is the class queue message the worker holds.
	MessageID string `json:"message_id"`
	// Body is the job message.
	Body      string    `json:"body"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// WritePodIndex records which attempt a pod runs. Only the pod's own
// worker writes it.
func (s Store) WritePodIndex(ctx context.Context, p *PodIndex) error {
	_, err := s.write(ctx, s.PodKey(p.Namespace, p.Pod), p, false, "")
	return err
}

// ReadPodIndex reads which attempt a pod runs; ErrNotFound when it runs
// none.
func (s Store) ReadPodIndex(ctx context.Context, namespace, pod string) (*PodIndex, error) {
	var p PodIndex
	if _, err := s.get(ctx, s.PodKey(namespace, pod), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// DeletePodIndex removes a pod's index and stop notice.
func (s Store) DeletePodIndex(ctx context.Context, namespace, pod string) error {
	if err := s.remove(ctx, s.StopKey(namespace, pod)); err != nil {
		return err
	}
	return s.remove(ctx, s.PodKey(namespace, pod))
}

// StopNotice tells a pod's worker why its pod is stopping and when it must
// be gone: the interruption controller writes it before evicting the pod,
// with the deadline of the notice, which may be sooner than the pod's own
// grace period when the notice came late.
type StopNotice struct {
	// Kind is the interruption's kind (spot-interruption, ...).
	Kind string `json:"kind"`
	// Deadline is when the pod will be killed.
	Deadline time.Time `json:"deadline"`
	// Where the pod ran.
	Node         string `json:"node,omitempty"`
	InstanceType string `json:"instance_type,omitempty"`
	Zone         string `json:"zone,omitempty"`
	CapacityType string `json:"capacity_type,omitempty"`
}

// WriteStopNotice records why and until when a pod stops.
func (s Store) WriteStopNotice(ctx context.Context, namespace, pod string, n *StopNotice) error {
	_, err := s.write(ctx, s.StopKey(namespace, pod), n, false, "")
	return err
}

// ReadStopNotice reads a pod's stop notice; ErrNotFound when there is none.
func (s Store) ReadStopNotice(ctx context.Context, namespace, pod string) (*StopNotice, error) {
	var n StopNotice
	if _, err := s.get(ctx, s.StopKey(namespace, pod), &n); err != nil {
		return nil, err
	}
	return &n, nil
}
