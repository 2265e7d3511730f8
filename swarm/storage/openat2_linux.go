//go:build linux

package storage

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

var (
	errNoOpenat2  = errors.New("openat2 unavailable")
	openat2Absent atomic.Bool // set once the kernel said ENOSYS
)

// openat2 opens path beneath dirfd with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: the kernel refuses
// "..", absolute paths and every symlink on the way (ELOOP, EXDEV), atomically. Kernels before
// 5.6 (and sandboxes that hide the call) get errNoOpenat2, and callers walk instead.
func openat2(dirfd int, path string, flags int) (int, error) {
	if openat2Absent.Load() {
		return -1, errNoOpenat2
	}
	how := unix.OpenHow{Flags: uint64(flags), Mode: 0o644,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	if flags&unix.O_CREAT == 0 {
		how.Mode = 0
	}
	for range 3 {
		fd, err := unix.Openat2(dirfd, path, &how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ENOSYS):
			openat2Absent.Store(true)
			return -1, errNoOpenat2
		case errors.Is(err, unix.EPERM):
			// A seccomp filter may answer EPERM for a call it does not know; the walk
			// reports the real error if there is one.
			return -1, errNoOpenat2
		case errors.Is(err, unix.EAGAIN):
			continue // a rename raced with the lookup: the kernel asks us to retry
		default:
			return -1, err
		}
	}
	return -1, errNoOpenat2
}

// oPath opens a directory only to resolve names beneath it.
const oPath = unix.O_PATH
