//go:build !linux

package testenv

import "testing"

// DiskDir returns a new directory, removed when the test ends, for files
// whose page cache the kernel can reclaim.
func DiskDir(t testing.TB) string { return t.TempDir() }
