package dht_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// A set of two nodes looks up as one: every peer once, fn never concurrently and free to call
// back into the set; stopping early stops both walks; Close closes every member.
func TestSetLookupAsOne(t *testing.T) {
	nodes := dhttest.Network(t, 32)
	ctx := testCtx(t)
	ih := randomID(t)
	for _, i := range []int{5, 11, 23} {
		if err := nodes[i].Announce(ctx, ih, 7000+i); err != nil {
			t.Fatalf("Announce: %v", err)
		}
	}
	a := newNode(t, 241, dht.Config{Bootstrap: []netip.AddrPort{nodes[2].Addr()}})
	b := newNode(t, 242, dht.Config{Bootstrap: []netip.AddrPort{nodes[9].Addr()}})
	set, err := dht.NewSet(a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var got []netip.AddrPort
	inFn := false
	err = set.Lookup(ctx, ih, func(r dht.PeerResult) bool {
		if inFn {
			t.Error("fn called concurrently")
		}
		inFn = true
		defer func() { inFn = false }()
		if slices.Contains(got, r.Peer) {
			t.Errorf("peer %v reported twice", r.Peer)
		}
		got = append(got, r.Peer)
		_ = set.Stats() // callbacks run outside the set's locks
		return true
	})
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	for _, i := range []int{5, 11, 23} {
		if want := netip.AddrPortFrom(nodes[i].Addr().Addr(), uint16(7000+i)); !slices.Contains(got, want) {
			t.Errorf("Lookup found %v, want %v among them", got, want)
		}
	}
	calls := 0
	if err := set.Lookup(ctx, ih, func(dht.PeerResult) bool { calls++; return false }); err != nil || calls != 1 {
		t.Fatalf("stopped Lookup: err=%v calls=%d, want nil and 1", err, calls)
	}
	if err := set.Announce(ctx, ih, 6999); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	if st := set.Stats(); st.Nodes != a.Stats().Nodes+b.Stats().Nodes || st.QueriesOut == 0 {
		t.Fatalf("Stats %+v do not add up the members", st)
	}
	set.StartBootstrap(nil)
	if err := set.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Lookup(ctx, ih, func(dht.PeerResult) bool { return true }); err == nil {
		t.Fatal("a member still looks up after the set's Close")
	}
}
