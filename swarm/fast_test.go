package swarm

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// TestAllowedFastSetBEP6 checks the canonical set against BEP 6's worked example: 1313 pieces,
// peer 80.4.4.200, infohash all 0xaa.
func TestAllowedFastSetBEP6(t *testing.T) {
	var ih [20]byte
	for i := range ih {
		ih[i] = 0xaa
	}
	ip := netip.MustParseAddr("80.4.4.200")
	got := allowedFastSet(ip, ih, 1313, 7)
	want := []int{1059, 431, 808, 1217, 287, 376, 1188}
	if !slices.Equal(got, want) {
		t.Fatalf("7 pieces: %v, want %v", got, want)
	}
	got = allowedFastSet(ip, ih, 1313, 9)
	want = append(want, 353, 508)
	if !slices.Equal(got, want) {
		t.Fatalf("9 pieces: %v, want %v", got, want)
	}
	if s := allowedFastSet(netip.MustParseAddr("80.4.4.1"), ih, 1313, 9); !slices.Equal(s, want) {
		t.Fatalf("another address of the /24 gets %v", s)
	}
	if s := allowedFastSet(netip.MustParseAddr("::1"), ih, 1313, 9); s != nil {
		t.Fatalf("IPv6 gets %v", s)
	}
	if s := allowedFastSet(ip, ih, 3, 10); len(s) != 3 {
		t.Fatalf("3 pieces, 10 asked: %v", s)
	}
}

// TestAllowedFastServedWhileChoked: a seeder whose upload slots are all taken tells a new
// fast-extension peer its allowed-fast pieces with its bitfield and serves them while it
// chokes it, so the first block is a round trip sooner. Before that, the first unchokeSlots
// peers are unchoked in the seeder's greeting, before they say they are interested (a round
// trip sooner still, and for every piece).
func TestAllowedFastServedWhileChoked(t *testing.T) {
	tt := makeTorrent(t, "fast", 16<<10, []testFile{{"f.bin", 64 * blockSize}}, 28)
	seed := startSeeder(t, tt, "127.0.28.1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range unchokeSlots {
		c, err := peerwire.Dial(ctx, seed, tt.ih, peerwire.Options{LocalAddr: netip.AddrFrom4([4]byte{127, 0, 28, byte(3 + i)})})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		for {
			m, err := c.ReadMsg()
			if err != nil {
				t.Fatalf("peer %d waiting for the greeting's unchoke: %v", i, err)
			}
			if m.ID == peerwire.Unchoke {
				break
			}
		}
		// Interested: it keeps its slot. The seeder reads a connection's messages in order,
		// so the block answering the request after it shows the interest was taken in.
		if err := c.WriteMsgs(peerwire.Message{ID: peerwire.Interested}, peerwire.Message{ID: peerwire.Request, Length: blockSize}); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := c.ReadMsg()
			if err != nil {
				t.Fatalf("peer %d waiting for its block: %v", i, err)
			}
			if m.ID == peerwire.Piece {
				break
			}
		}
	}
	c, err := peerwire.Dial(ctx, seed, tt.ih, peerwire.Options{LocalAddr: netip.MustParseAddr("127.0.28.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	want := allowedFastSet(netip.MustParseAddr("127.0.28.2"), tt.ih, 64, allowedFastCount)
	var allowed []int
	for len(allowed) < len(want) {
		m, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("reading the seeder's greeting: %v (allowed fast so far %v)", err, allowed)
		}
		switch m.ID {
		case peerwire.Unchoke:
			t.Fatal("unchoked before any interest")
		case peerwire.AllowedFast:
			allowed = append(allowed, int(m.Index))
		}
	}
	if !slices.Equal(allowed, want) {
		t.Fatalf("allowed fast %v, want the canonical %v", allowed, want)
	}
	if err := c.WriteMsg(peerwire.Message{ID: peerwire.Request, Index: uint32(want[0]), Length: blockSize}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := c.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		switch m.ID {
		case peerwire.Unchoke:
			t.Fatal("unchoked although every upload slot is taken")
		case peerwire.Reject:
			t.Fatalf("an allowed-fast request was rejected: %v", m)
		case peerwire.Piece:
			if int(m.Index) != want[0] || !bytes.Equal(m.Block, tt.data[0][want[0]*blockSize:(want[0]+1)*blockSize]) {
				t.Fatalf("got %v", m)
			}
			return
		}
	}
}
