package contract

import (
	"path"
	"strconv"
)

// RunKey is where the current run of a job id is recorded.
func (s Store) RunKey(jobID string) string {
	return path.Join(s.prefix(), "jobs", jobID, "run.json")
}

// ClaimKey is where the claim of one attempt of a run is stored.
func (s Store) ClaimKey(jobID, run string, attempt int) string {
	return path.Join(s.prefix(), "jobs", jobID, "runs", run, "attempts", strconv.Itoa(attempt)+".json")
}

// CheckpointPrefix is where a run's checkpoint is stored: a manifest and
// the objects it names. A new run of the same job id has a new prefix, so it
// never restores an earlier run's checkpoint.
func (s Store) CheckpointPrefix(jobID, run string) string {
	return path.Join(s.prefix(), "jobs", jobID, "runs", run, "checkpoint")
}

// PodPrefix is where the pod indexes and stop notices of a namespace live.
func (s Store) PodPrefix(namespace string) string {
	return path.Join(s.prefix(), "pods", namespace) + "/"
}

// PodKey is where a worker records which attempt its pod runs.
func (s Store) PodKey(namespace, pod string) string {
	return path.Join(s.prefix(), "pods", namespace, pod+".json")
}

// StopKey is where the interruption controller tells a pod's worker when
// the pod must be gone.
func (s Store) StopKey(namespace, pod string) string {
	return path.Join(s.prefix(), "pods", namespace, pod+".stop.json")
}

// URI is the s3:// location of a key in the store's bucket.
func (s Store) URI(key string) string {
	return "s3://" + s.Bucket + "/" + key
}

// OutputsPrefix is where the output files of a run's job that succeeded
// are stored, by their paths in the outputs directory.
func (s Store) OutputsPrefix(jobID, run string) string {
	return path.Join(s.prefix(), "jobs", jobID, "runs", run, "outputs")
}

// JobsPrefix is where every job's objects live, one folder per job id.
func (s Store) JobsPrefix() string {
	return path.Join(s.prefix(), "jobs") + "/"
}
