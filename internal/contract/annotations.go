package contract

// Pod annotations the interruption controller sets before evicting a pod,
// which the worker reads through a downward-API file: the kind of
// interruption, where the pod ran, and when it must be gone (RFC 3339). The
// stop notice in S3 says the same; the annotations are the fallback when S3
// cannot be read.
const (
	AnnotationInterruption = "jobfleet.io/interruption"
	AnnotationInstanceType = "jobfleet.io/instance-type"
	AnnotationZone         = "jobfleet.io/zone"
	AnnotationCapacityType = "jobfleet.io/capacity-type"
	AnnotationDeadline     = "jobfleet.io/deadline"
)
