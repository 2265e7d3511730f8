package peersource

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/magnetget/magnetget/dht"
)

// hashDHT names peers per infohash and counts lookups and announces per infohash.
type hashDHT struct {
	mu        sync.Mutex
	peers     map[[20]byte][]netip.AddrPort
	lookups   map[[20]byte]int
	announces map[[20]byte]int
}

func newHashDHT() *hashDHT {
	return &hashDHT{peers: map[[20]byte][]netip.AddrPort{}, lookups: map[[20]byte]int{}, announces: map[[20]byte]int{}}
}

func (f *hashDHT) Lookup(ctx context.Context, ih [20]byte, fn func(dht.PeerResult) bool) error {
	f.mu.Lock()
	f.lookups[ih]++
	ps := slices.Clone(f.peers[ih])
	f.mu.Unlock()
	for _, p := range ps {
		if !fn(dht.PeerResult{Peer: p}) {
			return nil
		}
	}
	return ctx.Err()
}

func (f *hashDHT) Announce(ctx context.Context, ih [20]byte, port int) error {
	f.mu.Lock()
	f.announces[ih]++
	f.mu.Unlock()
	return nil
}

func (f *hashDHT) set(ih [20]byte, ps ...netip.AddrPort) {
	f.mu.Lock()
	f.peers[ih] = ps
	f.mu.Unlock()
}

func (f *hashDHT) counts(ih [20]byte) (lookups, announces int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups[ih], f.announces[ih]
}

// TestHybridHashesShareOneRegistry: a hybrid's two swarm hashes are looked up and announced by
// one source, and a peer reached under one hash during the metadata phase and named under the
// other later is not handed to the swarm again nor allowed a second dial before its back-off
// (with one source per hash, the second hash's source had its own registry and handed it on).
// A hash added late (AddInfoHash) is looked up from then on.
func TestHybridHashesShareOneRegistry(t *testing.T) { synctest.Test(t, testHybridRegistry) }

func testHybridRegistry(t *testing.T) {
	v1, v2t, late := [20]byte{1}, [20]byte{2}, [20]byte{3}
	x, y := ap("127.0.0.2:1"), ap("127.0.0.3:1")
	d := newHashDHT()
	d.set(v1, x)
	s := New(Config{InfoHash: v2t, Also: [][20]byte{v1}, DHT: d, Port: 7000, Schedule: fast})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	pctx, pcancel := context.WithCancel(ctx)
	if got := <-s.Peers(pctx); got != x {
		t.Fatalf("metadata phase got %v, want %v (found under the other hash)", got, x)
	}
	pcancel()
	var r recorder
	s.Attach(r.add, nil)
	d.set(v2t, x, y) // now the swarm hash names x too
	waitFor(t, "lookups under both hashes", func() bool {
		a, _ := d.counts(v2t)
		b, _ := d.counts(v1)
		return a >= 3 && b >= 3
	})
	if got := r.list(); slices.Contains(got, x) || countOf(got, y) != 1 {
		t.Fatalf("swarm was handed %v: want %v once and never %v (dialled in the metadata phase)", got, y, x)
	}
	if s.AllowDial(x) {
		t.Fatalf("second dial of %v allowed before its back-off", x)
	}
	for _, ih := range [][20]byte{v1, v2t} {
		if _, ann := d.counts(ih); ann != 1 {
			t.Fatalf("hash %x: %d announces, want 1", ih[:1], ann)
		}
	}
	s.AddInfoHash(late)
	s.AddInfoHash(late) // twice: still one stream
	waitFor(t, "lookups under the late hash", func() bool { n, _ := d.counts(late); return n >= 2 })
}
