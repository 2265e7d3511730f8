package dht

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/magnetget/magnetget/routing"
)

// closest (prefix range over an id-sorted snapshot) agrees with sorting every node by distance.
func TestTrackerClosestMatchesFullSort(t *testing.T) {
	for _, size := range []int{0, 3, 8, 50, 2000} {
		tr := newTracker(10000, 0, 0)
		var all []*tnode
		now := time.Now()
		for i := range size {
			var id [20]byte
			for j := range id {
				id[j] = byte(rand.IntN(256))
			}
			ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1)
			tr.responded(ap, id, now)
			all = append(all, &tnode{Node: routing.Node{ID: id, Addr: ap}})
		}
		// A node that only queried us is not offered to others.
		tr.queried(netip.MustParseAddrPort("127.9.9.9:9"), [20]byte{1}, now)
		for range 50 {
			var target [20]byte
			for j := range target {
				target[j] = byte(rand.IntN(256))
			}
			got := tr.closest(target, 8, func(netip.AddrPort) bool { return true })
			want := closestTo(target, slices.Clone(all), 8)
			if len(got) != len(want) {
				t.Fatalf("size %d: %d nodes, want %d", size, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i].ID[:], want[i].ID[:]) {
					t.Fatalf("size %d: node %d is %x, want %x", size, i, got[i].ID, want[i].ID)
				}
			}
		}
	}
}

// Replies hand out good nodes first, questionable ones only to make up k, bad ones never; an
// answer makes a node good again, a query keeps an answered node good (BEP 5) but never revives
// one that failed us.
func TestTrackerHealth(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	tr := newTracker(100, 15*time.Minute, 0)
	tr.now = func() time.Time { return clock }
	all := func(netip.AddrPort) bool { return true }
	var target [20]byte
	addr := func(i int) netip.AddrPort { return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1) }
	id := func(i int) (id [20]byte) { id[19] = byte(i); return id } // node i is at distance i
	// Nodes 1..4 answered long ago (questionable), 5..12 just now (good).
	for i := 1; i <= 12; i++ {
		when := clock
		if i <= 4 {
			when = clock.Add(-time.Hour)
		}
		tr.responded(addr(i), id(i), when)
	}
	got := func() (ids []int) {
		for _, n := range tr.closest(target, 8, all) {
			ids = append(ids, int(n.ID[19]))
		}
		return ids
	}
	if g := got(); !slices.Equal(g, []int{5, 6, 7, 8, 9, 10, 11, 12}) {
		t.Fatalf("with 8 good nodes: %v, want only the good ones", g)
	}
	// 5..9 fail once: questionable. Good ones first (10..12), then the nearest questionable.
	for i := 5; i <= 9; i++ {
		tr.failed(addr(i))
	}
	if g := got(); !slices.Equal(g, []int{10, 11, 12, 1, 2, 3, 4, 5}) {
		t.Fatalf("with 3 good nodes: %v, want 10 11 12 then the nearest questionable", g)
	}
	// 1..4 and 5 fail badAfter times in all: bad, never handed out even when few remain.
	for i := 1; i <= 5; i++ {
		for range badAfter - 1 {
			tr.failed(addr(i))
		}
		if i <= 4 {
			tr.failed(addr(i))
		}
	}
	if g := got(); !slices.Equal(g, []int{10, 11, 12, 6, 7, 8, 9}) {
		t.Fatalf("after 1..5 turned bad: %v", g)
	}
	// A query from a bad node does not revive it; an answer does.
	if known, notGood := tr.queried(addr(1), id(1), clock); !known || !notGood {
		t.Fatalf("queried(bad node) = %v, %v; want known, not good", known, notGood)
	}
	if g := got(); slices.Contains(g, 1) {
		t.Fatalf("a query revived a bad node: %v", g)
	}
	tr.responded(addr(1), id(1), clock)
	if g := got(); g[0] != 1 {
		t.Fatalf("an answer did not make node 1 good again: %v", g)
	}
	// 20 minutes on, only node 12, which queried us meanwhile, is still good.
	tr.queried(addr(12), id(12), clock.Add(10*time.Minute))
	clock = clock.Add(20 * time.Minute)
	if g := got(); g[0] != 12 || len(g) != 8 {
		t.Fatalf("after 20 min: %v, want 12 (queried us) first", g)
	}
	// Stalled nodes are questionable; toPing names them (and failed ones first).
	tr.stall(addr(12))
	if _, notGood := tr.queried(addr(12), id(12), clock); !notGood {
		t.Fatal("a stalled node is still good")
	}
	ping := tr.toPing(id(200), 2, 10, func(netip.AddrPort) bool { return false })
	if !slices.Contains(ping, addr(12)) || slices.Contains(ping, addr(2)) {
		t.Fatalf("toPing = %v, want the stalled node 12 and no bad node", ping)
	}
}

// A bad node is held: no query of ours until the hold ends, then one try, which starts the next
// hold at once (twice as long, at most 8 times the first); an answer ends it. 24 hours of a
// dead address named without pause cost us one query per hold, about a dozen in all.
func TestTrackerBadNodeHold(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	const hold = 20 * time.Minute
	tr := newTracker(100, 15*time.Minute, hold)
	tr.now = func() time.Time { return clock }
	a := netip.MustParseAddrPort("127.0.0.1:1") // the tracker only keeps books: nothing is sent
	tr.responded(a, [20]byte{1}, clock)
	for range badAfter {
		if !tr.mayQuery(a) {
			t.Fatal("a node that is not bad may not be queried")
		}
		tr.failed(a)
	}
	if !tr.isBad(a) || !tr.shunned(a) || tr.mayQuery(a) {
		t.Fatal("a node that just turned bad is not held")
	}
	clock = clock.Add(hold)
	if tr.shunned(a) || !tr.mayQuery(a) {
		t.Fatal("after its hold a bad node may not be tried")
	}
	if tr.mayQuery(a) || !tr.shunned(a) || !tr.isBad(a) {
		t.Fatal("a bad node was tried twice in a row (a second lookup beside the first)")
	}
	tr.failed(a)
	// Count the tries over 24 hours of asking every minute.
	tries := 1
	var gaps []time.Duration
	last := clock
	for range 24 * 60 {
		clock = clock.Add(time.Minute)
		if tr.mayQuery(a) {
			tries++
			gaps = append(gaps, clock.Sub(last))
			last = clock
			tr.failed(a)
		}
	}
	want := []time.Duration{2 * hold, 4 * hold, 8 * hold, 8 * hold}
	if len(gaps) < len(want) || !slices.Equal(gaps[:len(want)], want) {
		t.Fatalf("gaps between tries %v, want %v then %v", gaps, want, 8*hold)
	}
	if tries > 12 {
		t.Fatalf("%d tries of a dead node in 24 h", tries)
	}
	// An answer ends the hold: good again, queried freely.
	tr.responded(a, [20]byte{1}, clock)
	if tr.isBad(a) || tr.shunned(a) || !tr.mayQuery(a) || !tr.mayQuery(a) {
		t.Fatal("an answer did not end the hold")
	}
	// It takes badAfter new timeouts to be bad again, with the first hold again.
	for range badAfter {
		tr.failed(a)
	}
	clock = clock.Add(hold - time.Second)
	if tr.mayQuery(a) {
		t.Fatal("a node bad again was tried before its first hold ended")
	}
	clock = clock.Add(time.Second)
	if !tr.mayQuery(a) {
		t.Fatal("a node bad again is held longer than the first hold")
	}
}
