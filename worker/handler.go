package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"syscall"
	"time"

	"github.com/jobfleet/jobfleet"
	"github.com/jobfleet/jobfleet/internal/cgroup"
)

// Handler runs one job. It returns nil when the job succeeded.
//
// ctx is cancelled when the worker must stop early: the pod is being
// terminated (context.Cause is ErrStopping), the attempt exceeded the job
// type's maximum runtime (ErrMaxRuntime), the worker lost its hold on the
// attempt (ErrLostAttempt), or the job was cancelled (ErrCancelled). A
// handler that is stopping should save its
// progress in job.CheckpointDir and return promptly; the worker uploads the
// directory and requeues the job, which resumes from it.
//
// A handler that panics fails the attempt, as an error would; the worker
// recovers and records the panic.
type Handler interface {
	Work(ctx context.Context, job *Job) error
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, job *Job) error

// Work calls f.
func (f HandlerFunc) Work(ctx context.Context, job *Job) error { return f(ctx, job) }

// Causes of a handler's context ending early.
var (
	// ErrStopping: the worker received SIGTERM (eviction, spot
	// interruption, node drain). The attempt does not spend a retry.
	ErrStopping = errors.New("worker stopping")
	// ErrMaxRuntime: the attempt ran longer than the job type allows. It
	// counts as failed.
	ErrMaxRuntime = errors.New("maximum runtime exceeded")
	// ErrLostAttempt: the worker could renew neither its message's
	// visibility nor its claim for a whole visibility timeout, or another
	// worker took the attempt over. The job stops and nothing is recorded:
	// the attempt belongs to whoever holds it now.
	ErrLostAttempt = errors.New("lost the hold on the attempt")
	// ErrCancelled: the job was cancelled (jobfleet cancel). The attempt
	// is recorded as cancelled; nothing is retried or dead-lettered.
	ErrCancelled = errors.New("the job was cancelled")
)

// ErrSkipRetry, wrapped in a handler's error, dead-letters the job at once
// instead of retrying it: for failures a rerun cannot fix.
var ErrSkipRetry = errors.New("skip retry")

// Job is what a handler gets: the job message and where its checkpoint
// lives.
type Job struct {
	// Message is the job message.
	Message *jobfleet.Job
	// Run identifies this run of the job, and Attempt this attempt of it,
	// from 1.
	Run     string
	Attempt int
	// CheckpointDir is the job's checkpoint directory, restored from S3
	// before the handler starts and uploaded while it runs. Write files
	// there atomically (write a temporary file, then rename it).
	CheckpointDir string
	// Resumed is true when CheckpointDir holds a restored checkpoint.
	Resumed bool
	// ParamsFile holds the message's params as a JSON file.
	ParamsFile string
	// MemoryLimit is the memory the job was allocated, in bytes; zero when
	// unknown.
	MemoryLimit int64
	// OutputsDir is an empty directory whose files are stored with the
	// job's result when it succeeds; OutputsFile is where the job may write
	// its key/value outputs as a JSON object of strings, numbers or
	// booleans (at most MaxOutputs keys shaped as label keys, at most
	// MaxOutputsFileBytes).
	OutputsDir  string
	OutputsFile string

	env         []string
	cgroup      *cgroup.Memory
	stopGrace   func() time.Duration
	stdout      io.Writer
	stderr      io.Writer
	rusagePeak  int64
	wasSignaled bool
}

// Environment variables a job's command receives.
const (
	EnvJobID         = "JOBFLEET_JOB_ID"
	EnvJobType       = "JOBFLEET_JOB_TYPE"
	EnvRun           = "JOBFLEET_RUN"
	EnvAttempt       = "JOBFLEET_ATTEMPT"
	EnvParamsFile    = "JOBFLEET_PARAMS_FILE"
	EnvFeatures      = "JOBFLEET_FEATURES"
	EnvCheckpointDir = "JOBFLEET_CHECKPOINT_DIR"
	EnvResumed       = "JOBFLEET_RESUMED"
	EnvMemoryLimit   = "JOBFLEET_MEMORY_LIMIT_BYTES"
	// EnvOutputsDir is a directory whose files are uploaded to S3 when the
	// job succeeds (<prefix>/jobs/<id>/runs/<run>/outputs/), and
	// EnvOutputsFile a file the job may write a JSON object of small
	// key/value outputs to (a metric, a model's location): both land in
	// the job's result.
	EnvOutputsDir  = "JOBFLEET_OUTPUTS_DIR"
	EnvOutputsFile = "JOBFLEET_OUTPUTS_FILE"
)

// Env returns the JOBFLEET_* environment that describes the job to its
// command: job id, type, run, attempt, params file, features (JSON),
// checkpoint directory, whether it resumes, its memory limit, and where
// it leaves its outputs.
func (j *Job) Env() []string {
	return append([]string(nil), j.env...)
}

// ExitError reports a command that did not exit 0.
type ExitError struct {
	// Code is the exit status, or -1 when a signal ended the process.
	Code int
	// Signal is the signal that ended it, if any.
	Signal syscall.Signal
}

func (e *ExitError) Error() string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by %v", e.Signal)
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Command returns a Handler that runs a program as a child process in its
// own process group, with the job's environment added to the worker's and
// its output forwarded. When the handler's context ends, the group gets
// SIGTERM, and SIGKILL if it has not exited within the stop grace the
// worker allows. In CgroupJob mode the process starts inside the job's
// memory cgroup.
func Command(name string, args ...string) Handler {
	return HandlerFunc(func(ctx context.Context, job *Job) error {
		return runCommand(ctx, job, name, args)
	})
}

// exitCode returns the exit code to record for a handler's error.
func exitCode(err error) int {
	var exitErr *ExitError
	if errors.As(err, &exitErr) {
		if exitErr.Signal != 0 {
			return 128 + int(exitErr.Signal)
		}
		return exitErr.Code
	}
	if err != nil {
		return 1
	}
	return 0
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }
