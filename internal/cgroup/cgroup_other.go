//go:build !linux

package cgroup

// Memory is one memory cgroup. On this system there are none.
type Memory struct{}

// Own finds the memory cgroup this process runs in.
func Own() (*Memory, error) { return nil, ErrUnsupported }

// NewJob creates a cgroup for one job with a memory limit.
func NewJob(parent, name string, limit int64) (*Memory, error) { return nil, ErrUnsupported }

// Check reports whether per-job memory cgroups can be created under parent.
func Check(parent string) error { return ErrUnsupported }

// DefaultParent returns where per-job cgroups are created.
func DefaultParent() string { return "" }

// Source names how the cgroup measures.
func (c *Memory) Source() string { return "" }

// Created reports whether the cgroup was made for one job.
func (c *Memory) Created() bool { return false }

// ResetPeak restarts the high-water mark.
func (c *Memory) ResetPeak() error { return ErrUnsupported }

// Peak returns the high-water mark.
func (c *Memory) Peak() (int64, error) { return 0, ErrUnsupported }

// WorkingSet returns the memory the cgroup holds that the kernel could
// not reclaim.
func (c *Memory) WorkingSet() (int64, error) { return 0, ErrUnsupported }

// OOMKilled reports whether the kernel killed a process of the cgroup for
// exceeding its limit since it was opened.
func (c *Memory) OOMKilled() bool { return false }

// Close releases the cgroup, removing it if it was made for one job.
func (c *Memory) Close() error { return nil }
