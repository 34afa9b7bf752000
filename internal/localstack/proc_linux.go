package localstack

import "syscall"

// childAttr puts a server in its own process group, stopped with us.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
