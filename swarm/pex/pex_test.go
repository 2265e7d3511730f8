package pex

import (
	"net/netip"
	"runtime"
	"slices"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	m := Message{
		Added:   []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:6881"), netip.MustParseAddrPort("[::1]:51413")},
		Dropped: []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:1")},
	}
	got, err := Decode(Encode(m))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Added, m.Added) || !slices.Equal(got.Dropped, m.Dropped) {
		t.Fatalf("got %+v, want %+v", got, m)
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, in := range map[string]string{
		"odd length":  "d5:added5:abcde7:dropped0:e",
		"not a dict":  "li1ee",
		"garbage":     "\x00\x01",
		"odd added6":  "d5:added0:6:added67:abcdefg7:dropped0:e",
		"odd dropped": "d5:added0:7:dropped1:xe",
	} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("%s: Decode(%q) succeeded", name, in)
		}
	}
}

func TestDecodeSkipsPortZero(t *testing.T) {
	m, err := Decode([]byte("d5:added12:\x7f\x00\x00\x01\x00\x00\x7f\x00\x00\x02\x1a\xe17:dropped0:e"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Added) != 1 || m.Added[0] != netip.MustParseAddrPort("127.0.0.2:6881") {
		t.Fatalf("got %v", m.Added)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("d5:added6:\x7f\x00\x00\x01\x1a\xe17:added.f1:\x007:dropped0:e"))
	f.Add([]byte("d5:added0:6:added618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe17:dropped0:e"))
	f.Add([]byte("de"))
	f.Add([]byte("d5:added134217000:xx"))
	f.Add([]byte("d5:addedli1ei2ee7:dropped0:1:xd1:yi3eee"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		var err error
		// Decoding never allocates more than a small multiple of its input.
		if n := allocated(func() { m, err = Decode(b) }); n > 4096+64*uint64(len(b)) {
			t.Fatalf("decoding %d bytes allocated %d", len(b), n)
		}
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same peers.
		m2, err := Decode(Encode(m))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !slices.Equal(m.Added, m2.Added) || !slices.Equal(m.Dropped, m2.Dropped) {
			t.Fatalf("round trip changed %v -> %v", m, m2)
		}
	})
}

// allocated returns the bytes fn allocates (on this goroutine and any other meanwhile).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecodeHugeStringLength: a 20-byte payload that announces a 128 MiB string made the
// decoder allocate 128 MiB (issue 9, row 9). Nothing longer than the input may be allocated.
func TestDecodeHugeStringLength(t *testing.T) {
	in := []byte("d5:added134217000:xx")
	if len(in) != 20 {
		t.Fatalf("payload is %d bytes", len(in))
	}
	var err error
	n := allocated(func() { _, err = Decode(in) })
	if err == nil {
		t.Fatal("Decode accepted a string longer than the message")
	}
	if n > 64<<10 {
		t.Fatalf("decoding a 20-byte payload allocated %d bytes", n)
	}
}
