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

// startWriteback asks the kernel to begin writing f's dirty pages to disk now, without waiting
// for them (sync_file_range SYNC_FILE_RANGE_WRITE). Left alone, the kernel writes a download's
// pages back only after ~30 s or once a tenth of memory is dirty, so the fsync that completes
// a download would write all of it at once (64 MiB: 30 ms here, 1 GiB: half a second) while
// the network sits idle. Errors are for the final fsync to report.
func startWriteback(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	})
}
