//go:build !unix

package worker

import "os"

// openRegular opens a file the job left for reading; the caller checks
// that it is a regular file.
func openRegular(name string) (*os.File, error) {
	return os.Open(name)
}
