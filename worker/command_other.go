//go:build !linux

package worker

import (
	"os/exec"
	"syscall"
)

// prepareCommand starts the command in its own process group. Memory
// cgroups exist only on Linux.
func prepareCommand(job *Job, name string, args []string) (*exec.Cmd, func(), error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, func() {}, nil
}
