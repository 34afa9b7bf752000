//go:build unix && !linux

package worker

import "syscall"

// maxrssBytes converts ru_maxrss, which BSDs and macOS report in bytes.
func maxrssBytes(ru *syscall.Rusage) int64 { return int64(ru.Maxrss) }
