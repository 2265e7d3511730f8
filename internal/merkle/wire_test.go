package merkle

import (
	"bytes"
	"testing"
)

func TestWireRoundTrip(t *testing.T) {
	root := Hash{1, 2, 3}
	r := HashRequest{BaseLayer: 2, Index: 512, Length: 512, ProofLayers: 9}
	p := AppendRequest(nil, root, r)
	if len(p) != RequestSize {
		t.Fatalf("request payload of %d bytes", len(p))
	}
	// The layout BEP 52 gives: root, then base layer, index, length, proof layers, big-endian.
	want := append(root[:], 0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 9)
	if !bytes.Equal(p, want) {
		t.Fatalf("payload %x, want %x", p, want)
	}
	gr, grr, err := ParseRequest(p)
	if err != nil || gr != root || grr != r {
		t.Fatalf("ParseRequest = %x %+v %v", gr, grr, err)
	}
	hs := []Hash{{9}, {8}, {7}}
	m := AppendHashes(nil, root, r, hs)
	gr, grr, ghs, err := ParseHashesMsg(m)
	if err != nil || gr != root || grr != r || len(ghs) != 3 || ghs[2] != hs[2] {
		t.Fatalf("ParseHashesMsg = %x %+v %v %v", gr, grr, ghs, err)
	}
	for _, bad := range [][]byte{p[:47], append(p, 0), m[:len(m)-1], make([]byte, MaxHashesPayload+32)} {
		if _, _, _, err := ParseHashesMsg(bad); err == nil && len(bad) != RequestSize+1 {
			t.Errorf("ParseHashesMsg accepted %d bytes", len(bad))
		}
	}
	if _, _, err := ParseRequest(append(p, 0)); err == nil {
		t.Errorf("ParseRequest accepted 49 bytes")
	}
	huge := append(root[:], 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0)
	if _, _, err := ParseRequest(huge); err == nil {
		t.Errorf("layer 2^32-1 accepted")
	}
}

// FuzzParseHashesMsg: no panic on any payload, allocation bounded by the payload, and what
// parses re-encodes to the same bytes.
func FuzzParseHashesMsg(f *testing.F) {
	f.Add(AppendHashes(nil, Hash{1}, HashRequest{BaseLayer: 0, Index: 8, Length: 4, ProofLayers: 3}, make([]Hash, 5)))
	f.Add(AppendRequest(nil, Hash{}, HashRequest{}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		allocs := testing.AllocsPerRun(50, func() { _, _, _, _ = ParseHashesMsg(p) }) // averaged: one run also counts what the runtime allocates meanwhile
		if allocs > 4 {
			t.Fatalf("%.0f allocations for %d bytes", allocs, len(p))
		}
		root, r, hs, err := ParseHashesMsg(p)
		if err != nil {
			return
		}
		if back := AppendHashes(nil, root, r, hs); !bytes.Equal(back, p) {
			t.Fatalf("round trip: %x -> %x", p, back)
		}
	})
}
