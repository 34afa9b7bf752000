//go:build unix

package worker

import (
	"os"
	"syscall"
)

// openRegular opens a file the job left for reading without following a
// symbolic link or blocking on a FIFO; the caller checks that it is a
// regular file.
func openRegular(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}
