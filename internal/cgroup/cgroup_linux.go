package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	root   = "/sys/fs/cgroup"
	v1Root = "/sys/fs/cgroup/memory"
)

// Memory is one memory cgroup directory, v1 or v2.
type Memory struct {
	dir     string
	v2      bool
	created bool // by us, for one job; removed on Close
	oomBase int64
	// peakFile is memory.peak opened for reading and writing: on cgroup v2
	// (Linux 6.12+), a reset applies to reads through the same open file
	// only, so the peak is read through it after a reset.
	peakFile *os.File
}

// Dir is the cgroup's directory.
func (c *Memory) Dir() string { return c.dir }

// V2 reports whether the cgroup is a cgroup v2 one.
func (c *Memory) V2() bool { return c.v2 }

// Created reports whether the cgroup was made for one job.
func (c *Memory) Created() bool { return c.created }

// ProcsFile is where a process is written to join the cgroup.
func (c *Memory) ProcsFile() string { return filepath.Join(c.dir, "cgroup.procs") }

// Source names how the cgroup measures: cgroup-v1 or cgroup-v2.
func (c *Memory) Source() string {
	if c.v2 {
		return SourceV2
	}
	return SourceV1
}

func (c *Memory) peakName() string {
	if c.v2 {
		return "memory.peak"
	}
	return "memory.max_usage_in_bytes"
}

// ResetPeak restarts the cgroup's high-water mark at its current usage, so
// that a job run after another in the same cgroup is measured alone. On
// cgroup v1 the reset is global. On cgroup v2 it needs Linux 6.12 and holds
// only for reads through the file it was written to, which Peak then uses;
// an older kernel returns an error, and the peak includes earlier jobs.
func (c *Memory) ResetPeak() error {
	path := filepath.Join(c.dir, c.peakName())
	if !c.v2 {
		if err := os.WriteFile(path, []byte("0"), 0o644); err != nil {
			return fmt.Errorf("resetting %s: %w", path, err)
		}
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("resetting %s (Linux 6.12 or later resets it): %w", path, err)
	}
	if _, err := f.Write([]byte("reset\n")); err != nil {
		f.Close()
		return fmt.Errorf("resetting %s (Linux 6.12 or later resets it): %w", path, err)
	}
	if c.peakFile != nil {
		c.peakFile.Close()
	}
	c.peakFile = f
	return nil
}

// Peak returns the cgroup's high-water mark of memory use since it was
// created or last reset.
func (c *Memory) Peak() (int64, error) {
	if c.peakFile != nil {
		data := make([]byte, 64)
		n, err := c.peakFile.ReadAt(data, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("reading %s: %w", c.peakFile.Name(), err)
		}
		return parseInt(string(data[:n]))
	}
	return readInt(filepath.Join(c.dir, c.peakName()))
}

// WorkingSet returns the memory the cgroup holds now that the kernel
// could not reclaim without swapping: its usage less its inactive file
// cache, as the kubelet and VPA count a container's working set.
func (c *Memory) WorkingSet() (int64, error) {
	usageFile, inactive := "memory.usage_in_bytes", "total_inactive_file"
	if c.v2 {
		usageFile, inactive = "memory.current", "inactive_file"
	}
	usage, err := readInt(filepath.Join(c.dir, usageFile))
	if err != nil {
		return 0, fmt.Errorf("reading the usage of cgroup %s: %w", c.dir, err)
	}
	file, err := readKeyed(filepath.Join(c.dir, "memory.stat"), inactive)
	if err != nil {
		return 0, fmt.Errorf("reading the file cache of cgroup %s: %w", c.dir, err)
	}
	return max(0, usage-file), nil
}

// oomKills returns how many processes the kernel killed for exceeding the
// cgroup's limit.
func (c *Memory) oomKills() (int64, error) {
	file := "memory.oom_control" // v1: "oom_kill N" since Linux 4.13
	if c.v2 {
		file = "memory.events"
	}
	return readKeyed(filepath.Join(c.dir, file), "oom_kill")
}

// OOMKilled reports whether the kernel killed a process of the cgroup for
// exceeding its limit since the cgroup was opened.
func (c *Memory) OOMKilled() bool {
	n, err := c.oomKills()
	return err == nil && n > c.oomBase
}

// Own finds the memory cgroup this process runs in.
func Own() (*Memory, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("reading own cgroup: %w", err)
	}
	defer f.Close()
	var v1Path, v2Path string
	var haveV2 bool
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		parts := strings.SplitN(scanner.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2Path, haveV2 = parts[2], true
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			if ctrl == "memory" {
				v1Path = parts[2]
			}
		}
	}
	// A v1 memory controller wins: on hybrid hosts the v2 hierarchy holds
	// no memory controller.
	if v1Path != "" {
		for _, dir := range []string{filepath.Join(v1Root, v1Path), v1Root} {
			if exists(filepath.Join(dir, "memory.max_usage_in_bytes")) {
				return open(dir, false)
			}
		}
	}
	if haveV2 {
		for _, dir := range []string{filepath.Join(root, v2Path), root} {
			if exists(filepath.Join(dir, "memory.peak")) {
				return open(dir, true)
			}
		}
	}
	return nil, errors.New("no memory cgroup with a peak counter is visible (cgroup v2 memory.peak needs Linux 5.19)")
}

func open(dir string, v2 bool) (*Memory, error) {
	c := &Memory{dir: dir, v2: v2}
	base, err := c.oomKills()
	if err != nil {
		return nil, fmt.Errorf("reading OOM kills of cgroup %s: %w", dir, err)
	}
	c.oomBase = base
	return c, nil
}

// DefaultParent returns where per-job cgroups are created: a jobfleet
// directory in the v1 memory hierarchy when the host has one, else in the
// v2 hierarchy.
func DefaultParent() string {
	if exists(filepath.Join(v1Root, "memory.limit_in_bytes")) || exists(filepath.Join(v1Root, "cgroup.procs")) {
		return filepath.Join(v1Root, "jobfleet")
	}
	return filepath.Join(root, "jobfleet")
}

// Check reports whether per-job memory cgroups can be created under
// parent, and why not when they cannot.
func Check(parent string) error {
	c, err := NewJob(parent, "probe", 64<<20)
	if err != nil {
		return err
	}
	return c.Close()
}

// NewJob creates a cgroup for one job with a memory limit.
func NewJob(parent, name string, limit int64) (*Memory, error) {
	v2 := !strings.HasPrefix(parent, v1Root)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup parent %s (per-job memory limits need root and a writable cgroup hierarchy): %w", parent, err)
	}
	if v2 {
		// Children of parent get the memory controller only when parent's
		// subtree enables it, which needs the grandparent to enable it too.
		if err := enableMemoryController(parent); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(parent, sanitize(name)+"-")
	if err != nil {
		return nil, fmt.Errorf("creating a job cgroup under %s: %w", parent, err)
	}
	c := &Memory{dir: dir, v2: v2, created: true}
	limitFile := "memory.limit_in_bytes"
	if v2 {
		limitFile = "memory.max"
	}
	if limit > 0 {
		if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("setting the memory limit of cgroup %s: %w", dir, err)
		}
		if v2 {
			// Without this, a job over its limit swaps instead of being
			// killed, where the host has swap.
			_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0o644)
		}
	}
	if _, err := c.Peak(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cgroup %s has no memory peak counter: %w", dir, err)
	}
	return c, nil
}

func enableMemoryController(parent string) error {
	controllers, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("reading %s/cgroup.controllers: %w", parent, err)
	}
	if !strings.Contains(" "+string(controllers)+" ", " memory ") {
		return fmt.Errorf("cgroup %s has no memory controller (the host does not delegate it)", parent)
	}
	if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0o644); err != nil {
		return fmt.Errorf("enabling the memory controller under %s: %w", parent, err)
	}
	return nil
}

// killAll kills every process left in a job cgroup.
func (c *Memory) killAll() {
	if c.v2 && exists(filepath.Join(c.dir, "cgroup.kill")) {
		_ = os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0o644)
		return
	}
	data, err := os.ReadFile(c.ProcsFile())
	if err != nil {
		return
	}
	for _, field := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(field); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Close releases the cgroup: a job cgroup is emptied and removed.
func (c *Memory) Close() error {
	if c.peakFile != nil {
		c.peakFile.Close()
		c.peakFile = nil
	}
	if !c.created {
		return nil
	}
	c.killAll()
	var err error
	for range 200 {
		if err = os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		// EBUSY until the killed processes have exited.
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", c.dir, err)
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseInt(string(data))
}

func parseInt(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// readKeyed reads the value of "key N" in a flat keyed cgroup file.
func readKeyed(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil // older kernels do not count; no kill was counted
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
