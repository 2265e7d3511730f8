// Package alloctest measures what a piece of code allocates, for the tests that bound what hostile
// input may cost (doc/THREATS.md): fuzz targets and regression tests assert a limit in bytes per
// input byte with it.
package alloctest

import "runtime"

// Bytes returns the bytes allocated, by every goroutine, while fn ran (the TotalAlloc delta, after
// a GC so that earlier garbage is not counted). Tests that call it should not run in parallel with
// other allocating tests.
func Bytes(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}
