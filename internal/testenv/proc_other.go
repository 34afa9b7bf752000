//go:build !linux

package testenv

import "syscall"

// childAttr puts a server in its own process group. Only Linux signals it
// when the test binary dies.
func childAttr(syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
