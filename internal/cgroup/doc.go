// Package cgroup measures and limits the memory of jobs through Linux memory
// cgroups, v1 or v2: the peak memory of the worker's own cgroup (a pod's
// container), or a new cgroup per job with a memory limit (jobfleet local).
// On other systems every function reports that cgroups are not available.
package cgroup

import "errors"

// Peak sources, as run records report them.
const (
	SourceV2 = "cgroup-v2"
	SourceV1 = "cgroup-v1"
)

// ErrUnsupported: this system has no memory cgroups.
var ErrUnsupported = errors.New("memory cgroups need Linux")
