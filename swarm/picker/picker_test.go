package picker

import (
	"errors"
	"testing"
)

func all(int) bool { return true }

func TestRarestFirst(t *testing.T) {
	p := New(10, nil, false, 1)
	for i := range 10 {
		for range 5 {
			p.PeerHas(i)
		}
	}
	p.PeerLost(7) // piece 7 is now the rarest
	p.PeerLost(7)
	got, eg, ok := p.Pick(all)
	if !ok || eg || got != 7 {
		t.Fatalf("Pick = %d, %v, %v; want 7", got, eg, ok)
	}
}

func TestRandomStartSpreadsTies(t *testing.T) {
	seen := map[int]bool{}
	for seed := range uint64(50) {
		p := New(100, nil, false, seed)
		i, _, _ := p.Pick(all)
		seen[i] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 pickers with equal availability chose only %d distinct pieces", len(seen))
	}
}

func TestSequential(t *testing.T) {
	p := New(10, nil, true, 1)
	p.SetHave(0)
	p.Start(1)
	p.PeerHas(5) // availability is irrelevant in sequential mode
	if got, _, _ := p.Pick(all); got != 2 {
		t.Fatalf("Pick = %d, want 2", got)
	}
}

func TestPeerMustHavePiece(t *testing.T) {
	p := New(10, nil, false, 1)
	got, _, ok := p.Pick(func(i int) bool { return i == 4 })
	if !ok || got != 4 {
		t.Fatalf("Pick = %d, %v; want 4", got, ok)
	}
	if _, _, ok := p.Pick(func(int) bool { return false }); ok {
		t.Fatal("picked a piece the peer lacks")
	}
}

func TestSelectionSkipsUnwanted(t *testing.T) {
	p := New(10, func(i int) bool { return i == 3 || i == 8 }, false, 1)
	if p.Missing() != 2 {
		t.Fatalf("Missing = %d, want 2", p.Missing())
	}
	picked := map[int]bool{}
	for range 2 {
		i, eg, ok := p.Pick(all)
		if !ok || eg {
			t.Fatalf("Pick = %d, %v, %v", i, eg, ok)
		}
		picked[i] = true
		p.Start(i)
	}
	if !picked[3] || !picked[8] {
		t.Fatalf("picked %v, want 3 and 8", picked)
	}
	p.SetHave(3)
	p.SetHave(8)
	if p.Missing() != 0 {
		t.Fatalf("Missing = %d after both wanted pieces", p.Missing())
	}
	if i, _, ok := p.Pick(all); ok {
		t.Fatalf("picked %d after completion", i)
	}
}

func TestPartialFirst(t *testing.T) {
	p := New(10, nil, false, 1)
	for i := range 10 {
		p.PeerHas(i)
		p.PeerHas(i)
	}
	p.PeerLost(2) // rarest, but piece 6 is half done
	p.Start(6)
	p.Stop(6, true)
	if got, _, _ := p.Pick(all); got != 6 {
		t.Fatalf("Pick = %d, want partial piece 6", got)
	}
}

func TestEndGame(t *testing.T) {
	p := New(3, nil, false, 1)
	p.SetHave(0)
	p.Start(1)
	p.Start(2)
	p.Start(2)
	got, eg, ok := p.Pick(all)
	if !ok || !eg || got != 1 {
		t.Fatalf("Pick = %d, %v, %v; want end-game piece 1 (least shared)", got, eg, ok)
	}
	p.Stop(1, false)
	got, eg, _ = p.Pick(all)
	if eg || got != 1 {
		t.Fatalf("after Stop: Pick = %d, endgame %v; want 1, normal", got, eg)
	}
}

func TestBitfieldStrict(t *testing.T) {
	if _, err := ParseBitfield([]byte{0xff, 0xc0}, 10); err != nil {
		t.Fatalf("valid bitfield: %v", err)
	}
	for name, c := range map[string]struct {
		b []byte
		n int
	}{
		"too long":   {[]byte{0xff, 0xc0, 0}, 10},
		"too short":  {[]byte{0xff}, 10},
		"spare bits": {[]byte{0xff, 0xe0}, 10},
		"empty":      {nil, 1},
	} {
		if _, err := ParseBitfield(c.b, c.n); !errors.Is(err, ErrBadBitfield) {
			t.Errorf("%s: %v, want ErrBadBitfield", name, err)
		}
	}
	bf, _ := ParseBitfield([]byte{0x80, 0x40}, 10)
	if !bf.Has(0) || !bf.Has(9) || bf.Has(1) || bf.Has(10) || bf.Has(-1) || bf.Count() != 2 {
		t.Fatalf("bit order wrong: %08b", bf.Bytes())
	}
}

func FuzzParseBitfield(f *testing.F) {
	f.Add([]byte{0xff, 0xc0}, 10)
	f.Add([]byte{}, 0)
	f.Add([]byte{0x01}, 8)
	f.Add([]byte{0x01}, 7)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n > 1<<20 {
			n %= 1 << 20
		}
		bf, err := ParseBitfield(b, n)
		if err != nil {
			return
		}
		// Accepted: re-encoding gives the same bytes, and no bit past n is set.
		if string(bf.Bytes()) != string(b) || bf.Len() != n {
			t.Fatalf("round trip changed %x -> %x", b, bf.Bytes())
		}
		c := 0
		for i := range n {
			if bf.Has(i) {
				c++
			}
		}
		if c != bf.Count() || bf.Has(n) {
			t.Fatalf("count mismatch")
		}
	})
}
