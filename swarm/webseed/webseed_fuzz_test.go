package webseed

import (
	"testing"
	"time"
)

// FuzzHeaders feeds server-controlled header values to the parsers: no panic, Content-Range
// results consistent, and allocation bounded by the input.
func FuzzHeaders(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 5-5/*", "bytes 1-0/5", "120", "Thu, 01 Jan 2026 00:01:00 GMT", "bytes 00000000000000000-1/2"} {
		f.Add(s)
	}
	now := time.Unix(0, 0)
	f.Fuzz(func(t *testing.T, s string) {
		allocs := testing.AllocsPerRun(20, func() { // averaged: a single run also counts what the runtime allocates meanwhile
			first, last, size, err := parseContentRange(s)
			if err == nil && (first < 0 || last < first || size >= 0 && last >= size) {
				t.Fatalf("%q: inconsistent %d-%d/%d", s, first, last, size)
			}
			if d := parseRetryAfter(s, now); d < 0 || d > maxRetryAfter {
				t.Fatalf("%q: retry after %v", s, d)
			}
		})
		if allocs > 32 { // a constant: nothing grows with the input
			t.Fatalf("%q: %v allocations", s, allocs)
		}
	})
}
