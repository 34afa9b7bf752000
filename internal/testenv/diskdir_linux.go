package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// tmpfsMagic is tmpfs's f_type (linux/magic.h).
const tmpfsMagic = 0x01021994

// DiskDir returns a new directory, removed when the test ends, on a
// file system whose files' page cache the kernel can reclaim: the
// temporary directory unless it is in memory (tmpfs), else one in the
// test's working directory. A test of what a job's written files cost in
// memory needs one: a tmpfs file is memory until it is removed.
func DiskDir(t testing.TB) string {
	t.Helper()
	for _, parent := range []string{os.TempDir(), "."} {
		dir, err := os.MkdirTemp(parent, "jobfleet-disk-")
		if err != nil {
			continue
		}
		var fs syscall.Statfs_t
		if err := syscall.Statfs(dir, &fs); err == nil && int64(fs.Type) == tmpfsMagic {
			_ = os.RemoveAll(dir)
			continue
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		abs, err := filepath.Abs(dir)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	t.Fatalf("no directory on a disk for the test's files: %s and the working directory are in memory (tmpfs) or not writable", os.TempDir())
	return ""
}
