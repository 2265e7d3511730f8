package dht

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestStore(ttl time.Duration, perIH, total int) (*peerStore, *fakeClock) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := newPeerStore(ttl, perIH, total, DefaultMaxInfohashesPerIP)
	s.now = c.now
	return s, c
}

func peer(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 6881)
}

func TestPeerStoreKeysByIPAndPort(t *testing.T) {
	s, _ := newTestStore(time.Hour, 10, 100)
	ih := [20]byte{1}
	a := netip.MustParseAddrPort("127.10.0.1:6881")
	b := netip.MustParseAddrPort("127.10.0.1:6882")
	s.add(ih, a)
	s.add(ih, b)
	s.add(ih, netip.MustParseAddrPort("[::ffff:127.10.0.1]:6881")) // same as a once unmapped
	got := s.get(ih, 10)
	slices.SortFunc(got, netip.AddrPort.Compare)
	if !slices.Equal(got, []netip.AddrPort{a, b}) {
		t.Fatalf("get = %v, want [%v %v]", got, a, b)
	}
	if s.add(ih, netip.MustParseAddrPort("127.10.0.2:0")) {
		t.Fatal("stored a peer with port 0")
	}
}

func TestPeerStoreExpiry(t *testing.T) {
	s, clock := newTestStore(30*time.Minute, 10, 100)
	ih1, ih2 := [20]byte{1}, [20]byte{2}
	s.add(ih1, peer(1))
	clock.t = clock.t.Add(20 * time.Minute)
	s.add(ih1, peer(2))
	s.add(ih2, peer(3))
	clock.t = clock.t.Add(15 * time.Minute) // peer(1) is 35 min old, the others 15
	if got := s.get(ih1, 10); !slices.Equal(got, []netip.AddrPort{peer(2)}) {
		t.Fatalf("get before sweep = %v, want only the fresh peer", got)
	}
	s.expire()
	if p, ihs := s.counts(); p != 2 || ihs != 2 {
		t.Fatalf("after sweep: %d peers %d infohashes, want 2 and 2", p, ihs)
	}
	clock.t = clock.t.Add(time.Hour)
	s.expire()
	if p, ihs := s.counts(); p != 0 || ihs != 0 {
		t.Fatalf("after everything expired: %d peers %d infohashes", p, ihs)
	}
	if samples, num := s.sample(20); len(samples) != 0 || num != 0 {
		t.Fatalf("sample of empty store: %v %d", samples, num)
	}
	// Re-announcing refreshes the timestamp.
	s.add(ih1, peer(1))
	clock.t = clock.t.Add(20 * time.Minute)
	s.add(ih1, peer(1))
	clock.t = clock.t.Add(20 * time.Minute)
	s.expire()
	if p, _ := s.counts(); p != 1 {
		t.Fatalf("re-announced peer expired: %d peers", p)
	}
}

func TestPeerStorePerInfohashCapEvictsOldest(t *testing.T) {
	s, clock := newTestStore(time.Hour, 3, 100)
	ih := [20]byte{7}
	for i := range 5 {
		s.add(ih, peer(i))
		clock.t = clock.t.Add(time.Second)
	}
	got := s.get(ih, 10)
	slices.SortFunc(got, netip.AddrPort.Compare)
	if want := []netip.AddrPort{peer(2), peer(3), peer(4)}; !slices.Equal(got, want) {
		t.Fatalf("get = %v, want the newest three %v", got, want)
	}
	if p, _ := s.counts(); p != 3 {
		t.Fatalf("count = %d, want 3", p)
	}
}

func TestPeerStoreTotalCap(t *testing.T) {
	s, _ := newTestStore(time.Hour, 10, 4)
	for i := range 6 {
		s.add([20]byte{byte(i)}, peer(i))
	}
	if p, ihs := s.counts(); p != 4 || ihs != 4 {
		t.Fatalf("counts = %d, %d; want the cap 4, 4", p, ihs)
	}
	// A known peer can still refresh when the store is full.
	if !s.add([20]byte{0}, peer(0)) {
		t.Fatal("refresh of a stored peer refused at the cap")
	}
	if s.add([20]byte{0}, peer(99)) {
		t.Fatal("new peer accepted beyond the total cap")
	}
}

func TestPeerStoreGetBounded(t *testing.T) {
	s, _ := newTestStore(time.Hour, 1000, 10000)
	ih := [20]byte{9}
	for i := range 500 {
		s.add(ih, peer(i))
	}
	seen := map[netip.AddrPort]bool{}
	for range 20 {
		got := s.get(ih, maxValues)
		if len(got) != maxValues {
			t.Fatalf("get returned %d peers, want %d", len(got), maxValues)
		}
		for _, p := range got {
			seen[p] = true
		}
	}
	// Random selection: 20 draws of 100 from 500 cover far more than one draw.
	if len(seen) <= maxValues {
		t.Fatalf("get always returns the same %d peers", len(seen))
	}
}

func TestPeerStoreSampleDistinct(t *testing.T) {
	s, _ := newTestStore(time.Hour, 10, 1000)
	for i := range 50 {
		s.add([20]byte{byte(i)}, peer(i))
	}
	got, num := s.sample(20)
	if num != 50 || len(got) != 20 {
		t.Fatalf("sample: %d of %d, want 20 of 50", len(got), num)
	}
	seen := map[[20]byte]bool{}
	for _, ih := range got {
		if seen[ih] || ih[0] >= 50 {
			t.Fatalf("bad sample %v", got)
		}
		seen[ih] = true
	}
}
