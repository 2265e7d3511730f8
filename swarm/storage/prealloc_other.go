//go:build !linux

package storage

import "os"

// preallocate does nothing where fallocate(2) does not exist.
func preallocate(f *os.File, n int64) {}

// startWriteback does nothing where sync_file_range(2) does not exist: the final fsync writes
// everything.
func startWriteback(f *os.File) {}
