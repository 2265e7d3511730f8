package swarm

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestBansDecay: bans were per address and for ever (issue 9). A ban now ends after banFor
// (longer for a repeat offender), strikes are forgotten after strikeTTL, and an IPv6 sender is
// its /64, so hopping addresses inside it does not escape the ban.
func TestBansDecay(t *testing.T) {
	b := newBanList()
	t0 := time.Unix(1_700_000_000, 0)
	v4 := netip.MustParseAddr("192.0.2.7")
	if _, ban := b.strike(v4, 2, t0); ban {
		t.Fatal("banned after 2 strikes")
	}
	// Strikes long ago are forgotten: two more now do not make a ban.
	if _, ban := b.strike(v4, 2, t0.Add(strikeTTL+time.Second)); ban {
		t.Fatal("old strikes counted")
	}
	t1 := t0.Add(strikeTTL + 2*time.Second)
	if _, ban := b.strike(v4, 2, t1); !ban {
		t.Fatal("4 strikes within strikeTTL made no ban")
	}
	if !b.banned(v4, t1) || !b.banned(v4, t1.Add(banFor-time.Second)) {
		t.Fatal("not banned during the ban")
	}
	if b.banned(netip.MustParseAddr("192.0.2.8"), t1) {
		t.Fatal("neighbouring IPv4 address banned")
	}
	if b.banned(v4, t1.Add(banFor)) {
		t.Fatal("still banned after banFor")
	}
	// A second ban lasts twice as long.
	t2 := t1.Add(banFor)
	b.strike(v4, 2, t2)
	b.strike(v4, 2, t2)
	if !b.banned(v4, t2.Add(2*banFor-time.Second)) || b.banned(v4, t2.Add(2*banFor)) {
		t.Fatal("a repeat ban does not last 2*banFor")
	}

	b = newBanList()
	v6 := netip.MustParseAddr("2001:db8:1:2::10")
	b.strike(v6, 2, t0)
	b.strike(netip.MustParseAddr("2001:db8:1:2:ffff::1"), 2, t0)
	if !b.banned(netip.MustParseAddr("2001:db8:1:2:abcd::99"), t0) {
		t.Fatal("another address of a banned /64 is not banned")
	}
	if b.banned(netip.MustParseAddr("2001:db8:1:3::10"), t0) {
		t.Fatal("a neighbouring /64 is banned")
	}
	if got := b.list(t0); len(got) != 1 || got[0] != netip.MustParseAddr("2001:db8:1:2::") {
		t.Fatalf("list = %v", got)
	}
}

// TestBanListBounded: strikes from ever more addresses keep the table at maxBanEntries, bans
// in force kept before stale strikes.
func TestBanListBounded(t *testing.T) {
	b := newBanList()
	t0 := time.Unix(1_700_000_000, 0)
	bad := netip.MustParseAddr("198.51.100.1")
	b.strike(bad, banStrikes, t0)
	for i := range 3 * maxBanEntries {
		ip := netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		b.strike(ip, 1, t0.Add(strikeTTL+time.Duration(i)*time.Millisecond))
	}
	if len(b.m) > maxBanEntries {
		t.Fatalf("%d entries", len(b.m))
	}
	if !b.banned(bad, t0.Add(strikeTTL+time.Minute)) {
		t.Fatal("a ban in force was dropped for stale strikes")
	}
}
