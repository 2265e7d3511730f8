package dht_test

import (
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// silencer is a node's socket that can go silent the way a node that left the network does: it
// keeps its port, answers nothing and sends nothing, and counts what still arrives.
type silencer struct {
	net.PacketConn
	silent atomic.Bool
	got    atomic.Int64 // datagrams that arrived while silent
}

func (s *silencer) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := s.PacketConn.ReadFrom(b)
		if err != nil || !s.silent.Load() {
			return n, a, err
		}
		s.got.Add(1)
	}
}

func (s *silencer) WriteTo(b []byte, a net.Addr) (int, error) {
	if s.silent.Load() {
		return len(b), nil
	}
	return s.PacketConn.WriteTo(b, a)
}

// healthNet is a 16-node network whose node 0 ("us") has heard every other node answer, node 1
// asks it questions, and nodes 8..15 have gone silent after answering.
type healthNet struct {
	us, asker *dht.Node
	live      []*dht.Node
	dead      []*dht.Node
	socks     []*silencer
}

func newHealthNet(t *testing.T) *healthNet { t.Helper(); return newHealthNetHold(t, 0) }

// newHealthNetHold is newHealthNet with our node's BadNodeHold set to hold (0: the default).
func newHealthNetHold(t *testing.T, hold time.Duration) *healthNet {
	t.Helper()
	const n = 16
	socks := make([]*silencer, n)
	nodes := dhttest.NetworkWith(t, n, func(i int, c *dht.Config) {
		socks[i] = &silencer{PacketConn: c.Conn}
		c.Conn = socks[i]
		if i == 0 {
			// BEP 5's 15 minutes, scaled down; a resend delay that a loaded machine still meets.
			c.NodeGoodFor = 300 * time.Millisecond
			c.HealthInterval = 100 * time.Millisecond
			c.ResendDelay = 250 * time.Millisecond
			c.BadNodeHold = hold
		}
	})
	h := &healthNet{us: nodes[0], asker: nodes[1], live: nodes[1:8], dead: nodes[8:], socks: socks}
	ctx := testCtx(t)
	for _, nd := range nodes[1:] {
		if _, err := h.us.FindNode(ctx, nd.Addr(), nd.ID()); err != nil {
			t.Fatalf("FindNode %s: %v", nd.Addr(), err)
		}
	}
	// While they are alive, our replies name them: a find_node for a node's own id returns it.
	for _, d := range h.dead {
		if got := h.ask(t, d.ID()); !slices.Contains(got, d.Addr()) {
			t.Fatalf("before going silent, %s is missing from our reply %v", d.Addr(), got)
		}
	}
	for _, s := range socks[8:] {
		s.silent.Store(true)
	}
	return h
}

// ask sends us a find_node for target from the asker and returns the nodes we hand out.
func (h *healthNet) ask(t *testing.T, target [20]byte) []netip.AddrPort {
	t.Helper()
	got, err := h.asker.FindNode(testCtx(t), h.us.Addr(), target)
	if err != nil {
		t.Fatalf("FindNode to us: %v", err)
	}
	return got
}

func (h *healthNet) deadHandedOut(t *testing.T) (n int) {
	for _, d := range h.dead {
		for _, ap := range h.ask(t, d.ID()) {
			if slices.ContainsFunc(h.dead, func(d *dht.Node) bool { return d.Addr() == ap }) {
				n++
			}
		}
	}
	return n
}

// Issue 10: nodes that answered us and then went silent stop appearing in the nodes our replies
// hand out, while the live ones still do.
func TestSilentNodesStopBeingHandedOut(t *testing.T) {
	h := newHealthNet(t)
	start := time.Now()
	deadline := start.Add(20 * time.Second) // the bound here is ~2 s: 300 ms + 3 failed pings
	for h.deadHandedOut(t) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after %v our replies still hand out silent nodes", time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("silent nodes left our replies after %v", time.Since(start).Round(time.Millisecond))
	// The live nodes are still handed out (they answered our health pings).
	for _, l := range h.live[1:] {
		if got := h.ask(t, l.ID()); !slices.Contains(got, l.Addr()) {
			t.Fatalf("live node %s is missing from our reply %v", l.Addr(), got)
		}
	}
}

// Issue 10: once the silent nodes are bad, our lookups no longer query them, though the other
// nodes still name them in their answers.
func TestLookupsSkipBadNodes(t *testing.T) {
	h := newHealthNet(t)
	h.waitBad(t)
	// The live nodes still hand them out.
	if got := h.ask2(t, h.dead[0].ID()); !slices.Contains(got, h.dead[0].Addr()) {
		t.Fatalf("test setup: node 1 no longer hands out %s: %v", h.dead[0].Addr(), got)
	}
	var before int64
	for _, s := range h.socks[8:] {
		before += s.got.Load()
	}
	ctx := testCtx(t)
	for _, d := range h.dead {
		if err := h.us.Lookup(ctx, d.ID(), func(dht.PeerResult) bool { return true }); err != nil {
			t.Fatalf("Lookup: %v", err)
		}
	}
	var after int64
	for _, s := range h.socks[8:] {
		after += s.got.Load()
	}
	if after != before {
		t.Fatalf("%d lookups toward the silent nodes sent them %d queries after they were found bad", len(h.dead), after-before)
	}
}

// ask2 asks node 1 (which has not noticed anything) for the nodes near target.
func (h *healthNet) ask2(t *testing.T, target [20]byte) []netip.AddrPort {
	t.Helper()
	got, err := h.live[1].FindNode(testCtx(t), h.asker.Addr(), target)
	if err != nil {
		t.Fatalf("FindNode to node 1: %v", err)
	}
	return got
}

// waitBad waits until every silent node is bad (our node no longer lists it).
func (h *healthNet) waitBad(t *testing.T) {
	t.Helper()
	isDead := func(ap netip.AddrPort) bool {
		return slices.ContainsFunc(h.dead, func(d *dht.Node) bool { return d.Addr() == ap })
	}
	deadline := time.Now().Add(20 * time.Second)
	for slices.ContainsFunc(h.us.Nodes(), isDead) {
		if time.Now().After(deadline) {
			t.Fatal("the silent nodes never became bad")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 10 (leftover): a node that went silent long enough to turn bad and then came back (a
// short outage, its own or ours) is queried again by our lookups once its hold is over, since
// the other nodes keep naming it; its answer makes it good again. Before, bad was for the life
// of the process: lookups dropped it forever.
func TestBadNodeTriedAgainAfterHold(t *testing.T) {
	h := newHealthNetHold(t, 500*time.Millisecond)
	h.waitBad(t)
	back := h.dead[0]
	h.socks[8].silent.Store(false) // it is back
	ctx := testCtx(t)
	deadline := time.Now().Add(15 * time.Second) // the bound here is the 0.5 s hold
	for !slices.Contains(h.us.Nodes(), back.Addr()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s answers again, but our lookups never queried it after its hold", back.Addr())
		}
		if err := h.us.Lookup(ctx, back.ID(), func(dht.PeerResult) bool { return true }); err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Good again: our replies hand it out.
	if got := h.ask(t, back.ID()); !slices.Contains(got, back.Addr()) {
		t.Fatalf("revived node %s is missing from our reply %v", back.Addr(), got)
	}
}

// Issue 10 (leftover): a node that stays dead while every other node keeps naming it is tried
// once per hold, each hold twice the last: back-to-back lookups for 2 s send it a handful of
// queries, not one per lookup.
func TestDeadNodeRetriesBounded(t *testing.T) {
	const hold = 200 * time.Millisecond
	h := newHealthNetHold(t, hold)
	h.waitBad(t)
	before := make([]int64, len(h.dead))
	for i := range h.dead {
		before[i] = h.socks[8+i].got.Load()
	}
	ctx := testCtx(t)
	lookups := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); lookups++ {
		d := h.dead[lookups%2] // the live nodes name both in every answer about them
		if err := h.us.Lookup(ctx, d.ID(), func(dht.PeerResult) bool { return true }); err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Holds of 0.2, 0.4, 0.8, 1.6 s: any 2.5 s after turning bad hold at most 3 tries, each a
	// query sent at most twice. Allow one more try for a query in flight when it turned bad.
	const maxDatagrams = 2 * (3 + 1)
	for i := range h.dead {
		got := h.socks[8+i].got.Load() - before[i]
		t.Logf("dead node %d: %d datagrams over %d lookups", i, got, lookups)
		if got > maxDatagrams {
			t.Errorf("dead node %d got %d datagrams in 2 s of lookups (%d), want at most %d", i, got, lookups, maxDatagrams)
		}
		if i < 2 && got == 0 {
			t.Errorf("dead node %d, named in every lookup, was never tried again after its %v hold", i, hold)
		}
	}
}
