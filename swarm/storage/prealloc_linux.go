//go:build linux

package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// preallocate reserves n bytes of disk for f without changing its size. It is only an
// optimisation: errors (an unsupported filesystem, a full disk) are left for writes to report.
func preallocate(f *os.File, n int64) {
	if n <= 0 {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.Fallocate(int(fd), unix.FALLOC_FL_KEEP_SIZE, 0, n)
	})
}
