//go:build unix && !linux

package storage

import "errors"

var errNoOpenat2 = errors.New("openat2 unavailable")

// openat2 exists only on Linux: elsewhere every path is walked one element at a time.
func openat2(dirfd int, path string, flags int) (int, error) { return -1, errNoOpenat2 }

// oPath: no O_PATH here; directories are opened for reading.
const oPath = 0
