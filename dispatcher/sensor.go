package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/contract"
)

// SensorConfig configures the failure sensor.
type SensorConfig struct {
	// Queues are where the sensor sends what a dead pod's worker would
	// have: the records queue for the run record (the intake and
	// dead-letter queues are the dispatcher's own).
	RecordsURL string
	// Resync is how often the sensor looks again at every pod and every
	// pod index, for deaths it missed. Default 10m.
	Resync time.Duration
}

// sensor watches jobfleet's pods for deaths the worker inside could not
// report: a container killed for exceeding its memory limit (the worker
// itself died with the job), or a pod that disappeared with its node. It
// ends the attempt in the worker's place, at once rather than after the
// message's visibility timeout, with the attempt in the run's history, so an
// OOM rerun gets more memory and the retry budget applies.
//
// It learns which attempt a pod ran from the pod index the worker writes
// after claiming (contract.PodIndex), and acts only when the attempt's
// claim is still running and still names that pod and message: a claim that
// another worker took over, or that ended, is not its business. It ends the
// claim with a conditional write, so a worker that reports at the same
// moment and the sensor cannot both act. At start, and at every resync, it
// also looks for pod indexes whose pods are gone: pods that died while no
// leader was watching.
type sensor struct {
	d    *Dispatcher
	kube kubernetes.Interface
	cfg  SensorConfig
	log  zerolog.Logger

	mu     sync.Mutex
	done   map[types.UID]bool
	placed map[types.UID]bool
}

// run watches pods until ctx ends.
func (s *sensor) run(ctx context.Context) {
	if s.cfg.Resync == 0 {
		s.cfg.Resync = 10 * time.Minute
	}
	ns := s.d.cfg.Template.Namespace
	factory := informers.NewSharedInformerFactoryWithOptions(s.kube, s.cfg.Resync,
		informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelManagedBy + "=" + ManagedBy }))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		// Add sees pods that ended before the sensor started.
		AddFunc: func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				s.check(ctx, pod, false)
				s.place(ctx, pod)
			}
		},
		UpdateFunc: func(_, obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				s.check(ctx, pod, false)
				s.place(ctx, pod)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				s.check(ctx, pod, true)
				s.mu.Lock()
				delete(s.done, pod.UID) // its last event
				delete(s.placed, pod.UID)
				s.mu.Unlock()
			}
		},
	})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	ticker := s.d.clock.NewTicker(s.cfg.Resync)
	defer ticker.Stop()
	for {
		if err := s.orphans(ctx, inf.GetStore()); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("looking for the attempts of pods that are gone")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
	}
}

// orphans ends the attempts of pods that are gone without their worker
// reporting, found by their pod indexes.
func (s *sensor) orphans(ctx context.Context, pods cache.Store) error {
	ns := s.d.cfg.Template.Namespace
	prefix := s.d.store.PodPrefix(ns)
	var token *string
	var errs []error
	for {
		page, err := s.d.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(s.d.cfg.Bucket), Prefix: aws.String(prefix), ContinuationToken: token})
		if err != nil {
			return fmt.Errorf("listing pod indexes: %w", err)
		}
		for _, obj := range page.Contents {
			name, ok := strings.CutSuffix(strings.TrimPrefix(aws.ToString(obj.Key), prefix), ".json")
			if !ok || strings.HasSuffix(name, ".stop") || strings.Contains(name, "/") {
				continue
			}
			if _, exists, _ := pods.GetByKey(ns + "/" + name); exists {
				continue
			}
			// Gone: its index stays only when its worker did not finish.
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			if err := s.rerun(ctx, pod, jobfleet.ReasonEvicted, "the pod is gone and its worker never reported", true); err != nil && !errors.Is(err, errNotYet) {
				errs = append(errs, err)
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return errors.Join(errs...)
		}
		token = page.NextContinuationToken
	}
}

// first marks a pod in a set of the sensor's, reporting whether it was
// not marked yet: the one caller that acts on it.
func (s *sensor) first(set map[types.UID]bool, uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if set[uid] {
		return false
	}
	set[uid] = true
	return true
}

// check acts on a pod that ended without its worker finishing.
func (s *sensor) check(ctx context.Context, pod *corev1.Pod, deleted bool) {
	reason, detail := deathReason(pod, deleted)
	if reason == "" {
		return
	}
	if !s.first(s.done, pod.UID) {
		return
	}
	// A pod deleted without a final status may still run on a node the
	// API server lost touch with: its worker's claim must have gone stale.
	mayRun := deleted && pod.Status.Phase != corev1.PodFailed && !jobTerminated(pod)
	err := s.rerun(ctx, pod, reason, detail, mayRun)
	var later *notYetError
	switch {
	case errors.As(err, &later):
		s.log.Info().Str("pod", pod.Name).Dur("wait", later.wait).Msg("a deleted pod's worker may still run; looking again once its claim's lease has run out")
		t := s.d.clock.NewTimer(later.wait)
		go func() {
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C():
				if err := s.rerun(ctx, pod, reason, detail, mayRun); err != nil {
					s.log.Error().Err(err).Str("pod", pod.Name).Msg("ending the attempt of a deleted pod; the next resync or its message's return will")
				}
			}
		}()
	case err != nil:
		s.log.Error().Err(err).Str("pod", pod.Name).Msg("ending the attempt of a dead pod; its message returns after its visibility timeout")
		s.mu.Lock()
		delete(s.done, pod.UID) // a later event may try again
		s.mu.Unlock()
	}
}

// jobTerminated reports whether the pod's job container has terminated.
func jobTerminated(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "job" && cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

// errNotYet: the attempt's holder may still run; look again after wait.
var errNotYet = errors.New("the claim's lease is still fresh")

type notYetError struct{ wait time.Duration }

func (e *notYetError) Error() string { return errNotYet.Error() }
func (e *notYetError) Unwrap() error { return errNotYet }

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
	if pod.Annotations[contract.AnnotationInterruption] != "" {
		reason = jobfleet.ReasonInterrupted
	}
	switch {
	case pod.Status.Phase == corev1.PodFailed && pod.Status.Reason != "":
		return reason, "the pod failed: " + pod.Status.Reason
	case pod.Status.Phase == corev1.PodFailed:
		return reason, "the pod failed"
	case deleted:
		return reason, "the pod was deleted before its worker finished"
	}
	return "", ""
}

// rerun ends the attempt of a dead pod as its worker would have: the
// outcome and what follows (a rerun, or the dead letter when the budget is
// spent) go into the claim first, with a conditional write, then the claim
// is completed (contract.Store.Complete) and the pod index removed. A crash
// anywhere leaves a claim that the next event, or the message's next
// receiver, completes.
//
// mayRun says the pod's containers may still run (it was deleted without
// a final status): then the claim's lease must have run out first, or the
// holder would be rerun while it runs.
func (s *sensor) rerun(ctx context.Context, pod *corev1.Pod, reason jobfleet.Reason, detail string, mayRun bool) error {
	for range 3 {
		err := s.rerunOnce(ctx, pod, reason, detail, mayRun)
		if !errors.Is(err, contract.ErrConflict) {
			return err
		}
		// The claim changed under us (a receipt handed to the holder, a
		// renewal): look again.
	}
	return fmt.Errorf("ending the attempt of pod %s: %w", pod.Name, contract.ErrConflict)
}

func (s *sensor) rerunOnce(ctx context.Context, pod *corev1.Pod, reason jobfleet.Reason, detail string, mayRun bool) error {
	store := s.d.store
	index, err := store.ReadPodIndex(ctx, pod.Namespace, pod.Name)
	if errors.Is(err, contract.ErrNotFound) {
		return nil // the worker claimed nothing, or finished
	}
	if err != nil {
		return err
	}
	claim, etag, err := store.ReadClaim(ctx, index.JobID, index.Run, index.Attempt)
	if errors.Is(err, contract.ErrNotFound) {
		return store.DeletePodIndex(ctx, pod.Namespace, pod.Name)
	}
	if err != nil {
		return err
	}
	if claim.State == contract.ClaimEnded || claim.Pod != pod.Name || claim.MessageID != index.MessageID {
		// The worker reported, or another worker took the attempt over:
		// not this pod's to end.
		return store.DeletePodIndex(ctx, pod.Namespace, pod.Name)
	}
	now := s.d.clock.Now().UTC()
	// The worker's own takeover rule: a visibility timeout, a third of one
	// and two seconds after the last renewal.
	vt := s.d.cfg.Template.visibility()
	if lease := vt + vt/3 + 2*time.Second; mayRun && now.Sub(claim.RenewedAt) < lease {
		return &notYetError{wait: lease - now.Sub(claim.RenewedAt) + time.Second}
	}
	att := jobfleet.Attempt{Attempt: claim.Attempt, Reason: reason, Error: detail, Node: pod.Spec.NodeName, StartedAt: claim.ClaimedAt, EndedAt: now}
	if att.Node == "" {
		att.Node = claim.Node
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "job" {
			att.AllocatedBytes = c.Resources.Limits.Memory().Value()
		}
	}
	if reason == jobfleet.ReasonOOM {
		att.PeakBytes = att.AllocatedBytes
		att.ExitCode = 137
	}
	maxAttempts := 0
	if typ, ok := s.d.cfg.Registry.Type(claim.Type); ok {
		maxAttempts = typ.MaxAttempts
	}
	resizedFrom := contract.ResizedFrom(claim.History) // of the history the attempt started with
	claim.History = append(append(jobfleet.History(nil), claim.History...), att)
	claim.State, claim.Outcome, claim.EndedAt = contract.ClaimEnded, outcomeOf(reason), now
	claim.Next, claim.Reason = contract.NextRerun, ""
	switch {
	case maxAttempts > 0 && reason.SpendsRetry() && claim.History.RetriesSpent() >= maxAttempts:
		claim.Next, claim.Reason = contract.NextDeadLetter, fmt.Sprintf("retry budget spent: %d of %d attempts failed or ran out of memory; last: %s", claim.History.RetriesSpent(), maxAttempts, detail)
	case contract.CountedAttempts(claim.History) >= contract.MaxTotalAttempts:
		claim.Next, claim.Reason = contract.NextDeadLetter, fmt.Sprintf("%d attempts, the most any job gets", contract.CountedAttempts(claim.History))
	}
	claim.Record = &jobfleet.RunRecord{
		JobID: claim.JobID, Type: claim.Type, Run: claim.Run, Attempt: claim.Attempt, Outcome: claim.Outcome,
		Error: detail, ExitCode: att.ExitCode, AllocatedBytes: att.AllocatedBytes, PeakBytes: att.PeakBytes, PredictedBytes: claim.PredictedBytes,
		ResizedFromBytes: resizedFrom,
		StartedAt:        claim.ClaimedAt, EndedAt: now, DurationSecs: now.Sub(claim.ClaimedAt).Seconds(), Node: att.Node,
		Pool: pod.Labels[LabelPool], Size: pod.Labels[LabelSize],
	}
	if job, err := jobfleet.Decode([]byte(index.Body)); err == nil {
		claim.Record.Features, claim.Record.Labels = job.Features, job.Labels
	}
	if _, err := store.Update(ctx, claim, etag); err != nil {
		return err // on a conflict, rerun reads the claim again
	}
	queues := contract.Queues{Intake: s.d.cfg.IntakeURL, DeadLetter: s.d.cfg.DeadLetterURL, Records: s.cfg.RecordsURL, Announcer: s.d.announce}
	err = store.Complete(ctx, s.d.sqs, queues, claim, index.Body, claim.QueueURL, claim.ReceiptHandle, now, contract.Once(ctx))
	switch {
	case errors.Is(err, contract.ErrNotAnnounced):
		s.d.metrics.announceFailures.Inc()
		s.log.Error().Err(err).Str("job_id", claim.JobID).Msg("completed the dead pod's attempt, but its completion event or task token callback was not sent")
	case err != nil:
		// The claim says how to finish: the message's next receiver does.
		s.log.Warn().Err(err).Str("job_id", claim.JobID).Msg("completing the dead pod's attempt; its message's next receiver will")
	}
	if err := store.DeletePodIndex(ctx, pod.Namespace, pod.Name); err != nil {
		s.log.Warn().Err(err).Str("pod", pod.Name).Msg("deleting a dead pod's index")
	}
	s.d.metrics.sensor.WithLabelValues(string(reason)).Inc()
	s.log.Info().Str("job_id", claim.JobID).Str("pod", pod.Name).Str("reason", string(reason)).Str("next", string(claim.Next)).Str("detail", detail).Msg("ended the attempt of a dead pod")
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

// placeTries and placeEvery bound how long the sensor looks for a running
// pod's attempt: its worker writes the pod's index and the attempt's state
// within a few seconds of starting, and deletes the index when the attempt
// ended, so an attempt shorter than about a second may end unplaced.
const (
	placeTries = 60
	placeEvery = 500 * time.Millisecond
)

// place records, once per pod, where a running job pod's attempt runs
// (its node's capacity type, instance type and zone) in the job's state:
// a worker in a class that may land on spot or on-demand cannot read its
// node. It needs the interruption controller's view of the nodes.
func (s *sensor) place(ctx context.Context, pod *corev1.Pod) {
	if s.d.interrupt == nil || pod.Spec.NodeName == "" || pod.Status.Phase != corev1.PodRunning {
		return
	}
	if !s.first(s.placed, pod.UID) {
		return
	}
	ns, name, nodeName := pod.Namespace, pod.Name, pod.Spec.NodeName
	go func() {
		for try := range placeTries {
			if try > 0 {
				t := s.d.clock.NewTimer(placeEvery)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C():
				}
			}
			node := s.d.interrupt.NodeNamed(nodeName)
			if node == nil {
				continue // the node informer has not seen it yet
			}
			index, err := s.d.store.ReadPodIndex(ctx, ns, name)
			if err != nil {
				continue // the worker has not claimed its attempt yet
			}
			found, err := s.d.store.Placed(ctx, index.JobID, index.Run, index.Attempt, node.CapacityType, node.InstanceType, node.Zone, s.d.clock.Now())
			if err == nil && found {
				return
			}
		}
		s.log.Debug().Str("pod", name).Msg("no attempt of the pod to record its placement in")
	}()
}
