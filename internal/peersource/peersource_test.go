package peersource

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/magnetget/magnetget/dht"
)

type fakeDHT struct {
	mu        sync.Mutex
	peers     []netip.AddrPort
	lookups   int
	announces []int
}

func (f *fakeDHT) Lookup(ctx context.Context, ih [20]byte, fn func(dht.PeerResult) bool) error {
	f.mu.Lock()
	f.lookups++
	ps := slices.Clone(f.peers)
	f.mu.Unlock()
	for _, p := range ps {
		if !fn(dht.PeerResult{Peer: p}) {
			return nil
		}
	}
	return ctx.Err()
}

func (f *fakeDHT) Announce(ctx context.Context, ih [20]byte, port int) error {
	f.mu.Lock()
	f.announces = append(f.announces, port)
	f.mu.Unlock()
	return nil
}

func (f *fakeDHT) count() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups, len(f.announces)
}

// fast is a short schedule for tests (which run in a synctest bubble anyway).
var fast = Schedule{FirstLookupWait: 5 * time.Millisecond, IdleLookupWait: 20 * time.Millisecond,
	FirstRedial: 300 * time.Millisecond, RedialScan: 5 * time.Millisecond}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// waitFor polls cond for up to a minute of the bubble's clock (no timing is asserted: only that
// it happens).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never happened: %s", what)
}

type recorder struct {
	mu  sync.Mutex
	got []netip.AddrPort
}

func (r *recorder) add(a netip.AddrPort) { r.mu.Lock(); r.got = append(r.got, a); r.mu.Unlock() }
func (r *recorder) list() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// Direct peers come first; what the metadata phase took is not handed to the swarm again, the
// rest is; lookups repeat and keep finding the same peers without handing them out twice; the
// swarm's dialer is allowed each address once until its back-off passes.
func TestEachAddressDialledOnce(t *testing.T) { synctest.Test(t, testEachAddressDialledOnce) }

func testEachAddressDialledOnce(t *testing.T) {
	a, b, c := ap("127.0.0.2:1"), ap("127.0.0.3:1"), ap("127.0.0.4:1")
	d := &fakeDHT{peers: []netip.AddrPort{b, c}}
	s := New(Config{Direct: []netip.AddrPort{a}, DHT: d, Port: 7000, Schedule: fast})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	pctx, pcancel := context.WithCancel(ctx)
	peers := s.Peers(pctx)
	if first := <-peers; first != a {
		t.Fatalf("first address %v, want the direct peer %v", first, a)
	}
	second := <-peers // b or c from the DHT
	pcancel()         // as metadata.Fetch returns: nobody reads the channel any more
	var r recorder
	s.Attach(r.add, func() []netip.AddrPort { return []netip.AddrPort{a, second} })
	waitFor(t, "three more lookups", func() bool { n, _ := d.count(); return n >= 4 })
	got := r.list()
	if slices.Contains(got, a) || slices.Contains(got, second) {
		t.Fatalf("swarm was handed %v, which the metadata phase already dialled (%v, %v)", got, a, second)
	}
	other := b
	if second == b {
		other = c
	}
	if n := countOf(got, other); n != 1 {
		t.Fatalf("swarm was handed %v: %v %d times, want once (lookups keep naming it)", got, other, n)
	}
	if !s.AllowDial(other) {
		t.Fatalf("first dial of %v refused", other)
	}
	if s.AllowDial(other) || s.AllowDial(a) {
		t.Fatal("a second dial allowed before the back-off")
	}
	// A PEX address the source never saw is dialled once too.
	if px := ap("127.0.0.9:9"); !s.AllowDial(px) || s.AllowDial(px) {
		t.Fatal("a PEX address: want one dial allowed, then refused")
	}
	// Once its back-off has passed, the unconnected peer is offered and allowed again; the
	// connected ones are not.
	before := len(got)
	waitFor(t, "the redial of the dropped peer", func() bool {
		g := r.list()
		return len(g) > before && slices.Contains(g[before:], other)
	})
	if !s.AllowDial(other) {
		t.Fatal("redial after the back-off refused")
	}
	if g := r.list(); slices.Contains(g, a) || slices.Contains(g, second) {
		t.Fatalf("connected peers offered again: %v", g)
	}
	if _, ann := d.count(); ann != 1 {
		t.Fatalf("%d DHT announces, want 1 (AnnounceEvery has not passed)", ann)
	}
	if st := s.Stats(); st.Found != 4 || st.Lookups < 4 {
		t.Fatalf("Stats %+v, want 4 found and the lookups counted", st)
	}
}

// A lookup that finds nobody is repeated on a schedule instead of ending; a source that is not
// listening never announces.
func TestLookupRepeatsWhenNobodyFound(t *testing.T) { synctest.Test(t, testLookupRepeats) }

func testLookupRepeats(t *testing.T) {
	d := &fakeDHT{}
	s := New(Config{DHT: d, Schedule: fast})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	peers := s.Peers(context.Background()) // a reader that never cancels: Run's end ends it
	waitFor(t, "five lookups", func() bool { n, _ := d.count(); return n >= 5 })
	d.mu.Lock()
	d.peers = []netip.AddrPort{ap("127.0.0.5:5")}
	d.mu.Unlock()
	if got := <-peers; got != ap("127.0.0.5:5") {
		t.Fatalf("got %v", got)
	}
	cancel()
	<-done
	if _, ann := d.count(); ann != 0 {
		t.Fatalf("%d announces without a port", ann)
	}
	if _, ok := <-peers; ok {
		t.Fatal("Peers still open after Run ended")
	}
}

func countOf(l []netip.AddrPort, a netip.AddrPort) int {
	n := 0
	for _, x := range l {
		if x == a {
			n++
		}
	}
	return n
}

// TestPeersAfterRunEnded: Peers called while or after Run ends (a command whose context ended
// early) neither races Run's wait for the pumps (go test -race) nor leaves a stream open.
func TestPeersAfterRunEnded(t *testing.T) {
	for range 50 {
		s := New(Config{Direct: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		for range s.Peers(context.Background()) {
		}
		<-done
		if _, open := <-s.Peers(context.Background()); open {
			t.Fatal("a stream from an ended source gave an address")
		}
	}
}
