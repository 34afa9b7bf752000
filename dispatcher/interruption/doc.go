// Package interruption moves jobfleet's work off EC2 instances before AWS
// takes them away. It consumes jobfleet's own interruption queue (an
// EventBridge target of its own: consumers delete what they read, so it
// cannot share Karpenter's), finds the node of each notice by instance id,
// taints it, marks jobfleet's pods on it with the reason, and evicts them
// with a grace period that leaves their workers time to upload a final
// checkpoint and requeue the job before the instance goes away.
//
// Notices are decoded by a registry keyed by source, detail-type and
// version, as Karpenter's interruption controller does; unknown and
// malformed events are deleted, logged and counted, never retried; notices
// whose handling failed on an API error come back and are handled again,
// and duplicates are harmless.
package interruption
