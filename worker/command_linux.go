package worker

import (
	"fmt"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// prepareCommand starts the command in its own process group, killed with
// the worker, and inside the job's memory cgroup when it has one.
func prepareCommand(job *Job, name string, args []string) (cmd *exec.Cmd, cleanup func(), err error) {
	cmd = exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cleanup = func() {}
	cg := job.cgroup
	if cg == nil || !cg.Created() {
		return cmd, cleanup, nil
	}
	if cg.V2() {
		fd, err := unix.Open(cg.Dir(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("opening job cgroup: %w", err)
		}
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
		return cmd, func() { unix.Close(fd) }, nil
	}
	// cgroup v1 cannot start a process inside a cgroup; a shell moves
	// itself in and then becomes the command, so the job never runs (or
	// allocates) outside its limit.
	cmd = exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, cg.ProcsFile(), name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, cleanup, nil
}
