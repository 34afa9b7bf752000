package worker

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CgroupMode says how the worker measures a job's memory and tells an OOM
// kill.
type CgroupMode string

const (
	// CgroupContainer reads the memory cgroup the worker itself runs in: in
	// a pod, the container's, which holds the job. The default.
	CgroupContainer CgroupMode = "container"
	// CgroupJob creates a memory cgroup per job under CgroupParent, limited
	// to the job's memory, and runs the job's command in it. For running
	// jobs outside Kubernetes (jobfleet local); needs root.
	CgroupJob CgroupMode = "job"
	// CgroupOff measures the peak resident set of the job's process from
	// the kernel's rusage and cannot tell an OOM kill from other SIGKILLs
	// unless the peak was near the limit.
	CgroupOff CgroupMode = "off"
)

// Peak sources reported in run records.
const (
	SourceCgroupV2 = "cgroup-v2"
	SourceCgroupV1 = "cgroup-v1"
	SourceRusage   = "rusage"
)

const (
	cgroupRoot   = "/sys/fs/cgroup"
	cgroupV1Root = "/sys/fs/cgroup/memory"
)

// memoryCgroup is one memory cgroup directory, v1 or v2.
type memoryCgroup struct {
	dir     string
	v2      bool
	created bool // by the worker, for one job; removed afterwards
	oomBase int64
}

func (c *memoryCgroup) source() string {
	if c.v2 {
		return SourceCgroupV2
	}
	return SourceCgroupV1
}

// peak returns the cgroup's high-water mark of memory use.
func (c *memoryCgroup) peak() (int64, error) {
	file := "memory.max_usage_in_bytes"
	if c.v2 {
		file = "memory.peak"
	}
	return readInt(filepath.Join(c.dir, file))
}

// resetPeak restarts the high-water mark, where the cgroup lets us.
func (c *memoryCgroup) resetPeak() {
	file := "memory.max_usage_in_bytes"
	if c.v2 {
		file = "memory.peak"
	}
	_ = os.WriteFile(filepath.Join(c.dir, file), []byte("0"), 0o644)
}

// oomKills returns how many processes the kernel killed for exceeding the
// cgroup's limit.
func (c *memoryCgroup) oomKills() (int64, error) {
	file := "memory.oom_control" // v1: "oom_kill N" since Linux 4.13
	if c.v2 {
		file = "memory.events"
	}
	return readKeyed(filepath.Join(c.dir, file), "oom_kill")
}

// oomKilled reports whether an OOM kill happened since the cgroup was
// opened for the job.
func (c *memoryCgroup) oomKilled() bool {
	n, err := c.oomKills()
	return err == nil && n > c.oomBase
}

// ownCgroup finds the memory cgroup this process runs in.
func ownCgroup() (*memoryCgroup, error) {
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
		for _, dir := range []string{filepath.Join(cgroupV1Root, v1Path), cgroupV1Root} {
			if exists(filepath.Join(dir, "memory.max_usage_in_bytes")) {
				return openCgroup(dir, false)
			}
		}
	}
	if haveV2 {
		for _, dir := range []string{filepath.Join(cgroupRoot, v2Path), cgroupRoot} {
			if exists(filepath.Join(dir, "memory.peak")) {
				return openCgroup(dir, true)
			}
		}
	}
	return nil, errors.New("no memory cgroup with a peak counter is visible (cgroup v2 memory.peak needs Linux 5.19)")
}

func openCgroup(dir string, v2 bool) (*memoryCgroup, error) {
	c := &memoryCgroup{dir: dir, v2: v2}
	base, err := c.oomKills()
	if err != nil {
		return nil, fmt.Errorf("reading OOM kills of cgroup %s: %w", dir, err)
	}
	c.oomBase = base
	return c, nil
}

// DefaultCgroupParent returns where per-job cgroups are created: a jobfleet
// directory in the v1 memory hierarchy when the host has one, else in the
// v2 hierarchy.
func DefaultCgroupParent() string {
	if exists(filepath.Join(cgroupV1Root, "memory.limit_in_bytes")) || exists(filepath.Join(cgroupV1Root, "cgroup.procs")) {
		return filepath.Join(cgroupV1Root, "jobfleet")
	}
	return filepath.Join(cgroupRoot, "jobfleet")
}

// CheckJobCgroups reports whether per-job memory cgroups can be created
// under parent, and why not when they cannot. `jobfleet local` and the tests
// use it to say plainly why memory limits are not enforced.
func CheckJobCgroups(parent string) error {
	c, err := newJobCgroup(parent, "probe", 64<<20)
	if err != nil {
		return err
	}
	return c.remove()
}

// newJobCgroup creates a cgroup for one job with a memory limit.
func newJobCgroup(parent, name string, limit int64) (*memoryCgroup, error) {
	v2 := !strings.HasPrefix(parent, cgroupV1Root)
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
	c := &memoryCgroup{dir: dir, v2: v2, created: true}
	limitFile := "memory.limit_in_bytes"
	if v2 {
		limitFile = "memory.max"
	}
	if limit > 0 {
		if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
			_ = c.remove()
			return nil, fmt.Errorf("setting the memory limit of cgroup %s: %w", dir, err)
		}
		if v2 {
			// Without this, a job over its limit swaps instead of being
			// killed, where the host has swap.
			_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0o644)
		}
	}
	if _, err := c.peak(); err != nil {
		_ = c.remove()
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

// procsFile is where a process is written to join the cgroup.
func (c *memoryCgroup) procsFile() string {
	return filepath.Join(c.dir, "cgroup.procs")
}

// killAll kills every process left in a job cgroup.
func (c *memoryCgroup) killAll() {
	if c.v2 && exists(filepath.Join(c.dir, "cgroup.kill")) {
		_ = os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0o644)
		return
	}
	data, err := os.ReadFile(c.procsFile())
	if err != nil {
		return
	}
	for _, field := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(field); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// remove deletes a job cgroup once its processes are gone.
func (c *memoryCgroup) remove() error {
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
	s := strings.TrimSpace(string(data))
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
