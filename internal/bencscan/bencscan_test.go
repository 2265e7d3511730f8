package bencscan

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
)

func TestScan(t *testing.T) {
	for _, tc := range []struct {
		in   string
		end  int // -1: error
		what string
	}{
		{"i0e", 3, ""},
		{"i-12e", 5, ""},
		{"4:spamxx", 6, ""},
		{"d1:t2:aa1:y1:qe", 15, ""},
		{"ld1:ai1eee", 10, ""},
		{"d1:t134217000:xx", -1, "string longer than the data"},
		{"d1:t99999999999:xe", -1, "string longer than the data"},
		{"i01e", -1, "bad integer"},
		{"i-0e", -1, "bad integer"},
		{"d1:ae", -1, "dict key without a value"},
		{"di1ei2ee", -1, "dict key is not a string"},
		{"03:abc", -1, "leading zero"},
		{"l", -1, "unexpected end"},
		{"e", -1, "unexpected 'e'"},
		{strings.Repeat("l", 11) + strings.Repeat("e", 11), -1, "nesting too deep"},
	} {
		end, err := Scan([]byte(tc.in), 0, 10)
		if tc.end >= 0 {
			if err != nil || end != tc.end {
				t.Errorf("Scan(%q) = %d, %v; want %d", tc.in, end, err, tc.end)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tc.what) {
			t.Errorf("Scan(%q) = %d, %v; want an error about %q", tc.in, end, err, tc.what)
		}
	}
}

func TestDict(t *testing.T) {
	var keys []string
	end, err := Dict([]byte("d1:ad2:id2:xxe1:q4:ping1:y1:qetrailing"), 0, 4, func(k, v []byte) bool {
		keys = append(keys, string(k)+"="+string(v))
		return true
	})
	if err != nil || end != 30 || strings.Join(keys, ",") != "a=d2:id2:xxe,q=4:ping,y=1:q" {
		t.Fatalf("Dict: end %d err %v keys %q", end, err, keys)
	}
	if _, err := Dict([]byte("l1:ae"), 0, 4, func(k, v []byte) bool { return true }); err == nil {
		t.Fatal("Dict accepted a list")
	}
}

// A 16-byte packet that declares a 128 MiB string costs no allocation to reject, and scanning a
// well-formed KRPC message allocates nothing either.
func TestScanDoesNotAllocate(t *testing.T) {
	hostile := []byte("d1:t134217000:xx")
	good := []byte("d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Scan(good, 0, 10); err != nil {
			t.Fatal(err)
		}
		_, _ = Dict(good, 0, 10, func(k, v []byte) bool { return true })
		_, _ = Scan(hostile[:len(hostile)-2], 0, 10) // the error path allocates its one error
	})
	if allocs > 1 {
		t.Fatalf("%.1f allocations per scan", allocs)
	}
}

// FuzzScan: Scan never reads past its input or allocates more than its one error, and decoding
// what it accepts allocates a bounded multiple of the input.
func FuzzScan(f *testing.F) {
	for _, s := range []string{"i0e", "d1:t2:aa1:y1:qe", "d1:t134217000:xx", "ll4:spamee", "d3:cow3:moo4:spaml1:a1:bee"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		allocs := testing.AllocsPerRun(50, func() { _, _ = Scan(b, 0, 32) }) // averaged: a single run also counts what the runtime allocates meanwhile
		if allocs > 1 {
			t.Fatalf("%v allocations scanning %d bytes", allocs, len(b))
		}
		end, err := Scan(b, 0, 32)
		if err != nil {
			return
		}
		if end > len(b) {
			t.Fatalf("end %d past input %d", end, len(b))
		}
		// Decoding what Scan accepted allocates a bounded multiple of the input, even with the
		// decoder's default 128 MiB string cap (it may still refuse, e.g. unsorted keys).
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var v any
		_ = bencode.Unmarshal(b[:end], &v)
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10+64*uint64(len(b)) {
			t.Fatalf("decoding %d scanned bytes allocated %d bytes", len(b), got)
		}
	})
}
