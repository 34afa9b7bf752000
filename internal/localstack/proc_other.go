//go:build !linux

package localstack

import "syscall"

// childAttr puts a server in its own process group. Only Linux stops it
// when we die; elsewhere Stop must be called.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
