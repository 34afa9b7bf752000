package testenv

import "syscall"

// childAttr puts a server in its own process group, sent sig when the test
// binary dies.
func childAttr(sig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig}
}
