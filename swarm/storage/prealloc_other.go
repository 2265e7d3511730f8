//go:build !linux

package storage

import "os"

// preallocate does nothing where fallocate(2) does not exist.
func preallocate(f *os.File, n int64) {}
