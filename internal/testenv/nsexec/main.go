//go:build linux

// Command nsexec runs a command in a mount namespace of its own, with
// directories bind-mounted where a container would see its volumes: the
// pod runner's way of giving a pod's containers the paths their images
// expect (such as Argo's /var/run/argo) without touching the host's.
//
//	nsexec --bind SRC=DST [--bind SRC=DST ...] -- COMMAND [ARG...]
//
// It needs root (CAP_SYS_ADMIN). A missing DST is created on the host, empty.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func init() {
	// unshare applies to the calling thread, which must then exec.
	runtime.LockOSThread()
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "nsexec:", err)
		os.Exit(127)
	}
}

func run(args []string) error {
	var binds [][2]string
	for len(args) > 0 && args[0] != "--" {
		if args[0] != "--bind" || len(args) < 2 {
			return fmt.Errorf("usage: nsexec --bind SRC=DST ... -- COMMAND [ARG...]")
		}
		src, dst, ok := strings.Cut(args[1], "=")
		if !ok || src == "" || !strings.HasPrefix(dst, "/") {
			return fmt.Errorf("--bind %q: want SRC=/ABSOLUTE/DST", args[1])
		}
		binds = append(binds, [2]string{src, dst})
		args = args[2:]
	}
	if len(args) < 2 {
		return fmt.Errorf("no command after --")
	}
	args = args[1:]
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	// Mounts made here must not reach the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	for _, b := range binds {
		if err := os.MkdirAll(b[1], 0o755); err != nil {
			return err
		}
		if err := unix.Mount(b[0], b[1], "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s to %s: %w", b[0], b[1], err)
		}
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, args, os.Environ())
}
