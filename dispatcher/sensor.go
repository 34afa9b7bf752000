package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/queue"
	"github.com/jobfleet/jobfleet/worker"
)

// Sensor settings: where the workers record their claims.
type SensorConfig struct {
	// Bucket and Prefix are the workers' checkpoint bucket and prefix.
	Bucket, Prefix string
}

// sensor watches jobfleet's pods for deaths the worker inside could not
// report: a container killed for exceeding its memory limit (the worker
// itself died with the job), or a pod that disappeared with its node. It
// reruns the job at once, rather than after the message's visibility
// timeout, with the attempt in its history, so an OOM rerun gets more
// memory and the retry budget applies.
//
// It learns which job a pod ran from the pod index the worker writes after
// claiming (worker.PodKey): the claim, the class queue, the receipt handle
// and the job message. A pod that died before its worker claimed anything
// needs nothing: its message was never taken, or returns on its own.
type sensor struct {
	d    *Dispatcher
	kube kubernetes.Interface
	s3   worker.S3API
	cfg  SensorConfig
	log  zerolog.Logger

	mu   sync.Mutex
	done map[types.UID]bool
}

// run watches pods until ctx ends.
func (s *sensor) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(s.kube, 10*time.Minute,
		informers.WithNamespace(s.d.cfg.Template.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelManagedBy + "=" + ManagedBy }))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				s.check(ctx, pod, false)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				s.check(ctx, pod, true)
			}
		},
	})
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
}

// check acts on a pod that ended without its worker finishing.
func (s *sensor) check(ctx context.Context, pod *corev1.Pod, deleted bool) {
	reason, detail := deathReason(pod, deleted)
	if reason == "" {
		return
	}
	s.mu.Lock()
	if s.done[pod.UID] {
		s.mu.Unlock()
		return
	}
	s.done[pod.UID] = true
	s.mu.Unlock()
	if err := s.rerun(ctx, pod, reason, detail); err != nil {
		s.log.Error().Err(err).Str("pod", pod.Name).Msg("rerunning the job of a dead pod; its message returns after its visibility timeout")
		s.mu.Lock()
		delete(s.done, pod.UID) // a later event may try again
		s.mu.Unlock()
	}
}

// deathReason says whether a pod died in a way its worker cannot report.
func deathReason(pod *corev1.Pod, deleted bool) (jobfleet.Reason, string) {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "job" && cs.State.Terminated != nil && cs.State.Terminated.Reason == "OOMKilled" {
			return jobfleet.ReasonOOM, "the job's container was OOM-killed"
		}
	}
	if pod.Status.Phase == corev1.PodSucceeded {
		return "", ""
	}
	reason := jobfleet.ReasonEvicted
	if pod.Annotations[worker.AnnotationInterruption] != "" {
		reason = jobfleet.ReasonInterrupted
	}
	switch {
	case pod.Status.Phase == corev1.PodFailed && pod.Status.Reason != "":
		return reason, "the pod failed: " + pod.Status.Reason
	case deleted:
		return reason, "the pod was deleted before its worker finished"
	}
	return "", ""
}

// rerun publishes the rerun of a dead pod's job, finishes its claim and
// deletes its class message: in this order, so that a crash in between
// leaves the claim running and a later event, or the message's return,
// completes the work.
func (s *sensor) rerun(ctx context.Context, pod *corev1.Pod, reason jobfleet.Reason, detail string) error {
	index, err := worker.ReadClaim(ctx, s.s3, s.cfg.Bucket, worker.PodKey(s.cfg.Prefix, pod.Namespace, pod.Name))
	if errors.Is(err, worker.ErrNoClaim) {
		return nil // the worker never claimed a job
	}
	if err != nil {
		return err
	}
	claimKey := worker.ClaimKey(s.cfg.Prefix, index.JobID, index.Attempt)
	claim, err := worker.ReadClaim(ctx, s.s3, s.cfg.Bucket, claimKey)
	if err != nil {
		return err
	}
	if claim.State == worker.ClaimFinished || claim.MessageID != index.MessageID {
		return nil // the worker reported, or another pod took the attempt over
	}
	job, err := jobfleet.Decode(index.Job)
	if err != nil {
		return fmt.Errorf("the pod index of %s holds an invalid job: %w", pod.Name, err)
	}
	att := jobfleet.Attempt{Reason: reason, Error: detail, Node: pod.Spec.NodeName, EndedAt: s.d.clock.Now().UTC(), StartedAt: claim.ClaimedAt}
	for _, c := range pod.Spec.Containers {
		if c.Name == "job" {
			att.AllocatedBytes = c.Resources.Limits.Memory().Value()
		}
	}
	if reason == jobfleet.ReasonOOM {
		att.PeakBytes = att.AllocatedBytes
		att.ExitCode = 137
	}
	next := job.Rerun(att)
	body, err := jobfleet.Encode(next)
	if err != nil {
		return err
	}
	if f := queue.Send(ctx, s.d.sqs, s.d.cfg.IntakeURL, []queue.Message{queue.JobMessage(body, next.Type, next.Attempt())}, queue.Retry{}); len(f) > 0 {
		return fmt.Errorf("requeueing job %s: %w", job.ID, f[0].Err)
	}
	claim.State, claim.Outcome, claim.FinishedAt = worker.ClaimFinished, outcomeOf(reason), s.d.clock.Now().UTC()
	if err := worker.WriteClaim(ctx, s.s3, s.cfg.Bucket, claimKey, claim); err != nil {
		return err
	}
	if f := queue.Delete(ctx, s.d.sqs, index.QueueURL, []string{index.ReceiptHandle}, queue.Retry{}); len(f) > 0 {
		// The message returns later; the finished claim makes its worker
		// delete it without running.
		s.log.Warn().Err(f[0].Err).Str("job_id", job.ID).Msg("deleting the dead pod's message")
	}
	s.d.metrics.sensor.WithLabelValues(string(reason)).Inc()
	s.log.Info().Str("job_id", job.ID).Str("pod", pod.Name).Str("reason", string(reason)).Str("detail", detail).Msg("reran the job of a dead pod")
	return nil
}

func outcomeOf(r jobfleet.Reason) jobfleet.Outcome {
	switch r {
	case jobfleet.ReasonOOM:
		return jobfleet.OutcomeOOM
	case jobfleet.ReasonInterrupted:
		return jobfleet.OutcomeInterrupted
	case jobfleet.ReasonEvicted:
		return jobfleet.OutcomeEvicted
	}
	return jobfleet.OutcomeFailed
}
