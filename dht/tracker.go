package dht

import (
	"bytes"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/magnetget/magnetget/routing"
)

// tracker remembers when remote nodes last answered us and last queried us. The library's table
// keeps such times privately and never expires nodes, so this is what decides which nodes are
// worth saving and where a traversal can start besides the table.
type tracker struct {
	max int

	mu      sync.Mutex // guards the fields below
	nodes   map[netip.AddrPort]*routing.Node
	sorted  []routing.Node // answered nodes by id, for closest; rebuilt when dirty
	dirty   bool
	builtAt time.Time
}

func newTracker(max int) *tracker {
	return &tracker{max: max, nodes: make(map[netip.AddrPort]*routing.Node)}
}

// responded records an answer from id at addr.
func (t *tracker) responded(addr netip.AddrPort, id [20]byte, now time.Time) {
	t.update(addr, id, func(n *routing.Node) { n.LastResponse = now })
}

// queried records a query from id at addr. A query proves nothing (its source address can be
// spoofed), so it only refreshes a node we already know under that same id: it never adds a node
// and never replaces the id we hold for an address. Only answers to our own queries do that.
// It reports whether the address is known at all.
func (t *tracker) queried(addr netip.AddrPort, id [20]byte, now time.Time) (known bool) {
	addr = normAddrPort(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[addr]
	if n != nil && n.ID == id {
		n.LastQuery = now
	}
	return n != nil
}

// answered reports whether addr has answered one of our queries: its address is proven.
func (t *tracker) answered(addr netip.AddrPort) bool {
	addr = normAddrPort(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[addr]
	return n != nil && !n.LastResponse.IsZero()
}

// seed adds saved nodes, keeping their timestamps.
func (t *tracker) seed(ns []routing.Node) {
	for _, sn := range ns {
		t.update(sn.Addr, sn.ID, func(n *routing.Node) {
			if sn.LastResponse.After(n.LastResponse) {
				n.LastResponse = sn.LastResponse
			}
			if sn.LastQuery.After(n.LastQuery) {
				n.LastQuery = sn.LastQuery
			}
		})
	}
}

func (t *tracker) update(addr netip.AddrPort, id [20]byte, f func(*routing.Node)) {
	if !addr.IsValid() || addr.Port() == 0 || id == ([20]byte{}) {
		return
	}
	addr = normAddrPort(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[addr]
	if n == nil {
		if len(t.nodes) >= t.max {
			t.pruneLocked()
		}
		n = &routing.Node{Addr: addr}
		t.nodes[addr] = n
	}
	wasAnswered, oldID := !n.LastResponse.IsZero(), n.ID
	n.ID = id
	f(n)
	// The id-sorted snapshot only changes when a node joins the answered set or changes id.
	if answered := !n.LastResponse.IsZero(); answered && (!wasAnswered || oldID != id) {
		t.dirty = true
	}
}

// pruneLocked drops the stalest quarter so that inserts stay cheap on average.
func (t *tracker) pruneLocked() {
	all := t.snapshotLocked()
	best := routing.Best(all, t.max*3/4)
	keep := make(map[netip.AddrPort]*routing.Node, len(best))
	for _, n := range best {
		keep[n.Addr] = t.nodes[n.Addr]
	}
	t.nodes = keep
	t.dirty = true
}

func (t *tracker) snapshotLocked() []routing.Node {
	out := make([]routing.Node, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, *n)
	}
	return out
}

// snapshot returns every tracked node.
func (t *tracker) snapshot() []routing.Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snapshotLocked()
}

// closest returns up to k nodes nearest to target (XOR metric) among those that answered us,
// filtered by keep. It runs for every find_node/get_peers we answer, so it must not sort the
// whole tracker: it works on a snapshot sorted by id, where the nodes sharing a prefix with the
// target form one contiguous range, and sorts only the smallest such range holding 2k nodes.
func (t *tracker) closest(target [20]byte, k int, keep func(netip.AddrPort) bool) []routing.Node {
	t.mu.Lock()
	t.refreshSortedLocked()
	cands := slices.Clone(prefixRange(t.sorted, target, 2*k))
	t.mu.Unlock()
	cands = slices.DeleteFunc(cands, func(n routing.Node) bool { return !keep(n.Addr) })
	return closestTo(target, cands, k)
}

// refreshSortedLocked rebuilds the id-sorted snapshot of answered nodes when it is stale. Small
// trackers rebuild on every change (cheap, and young networks need fresh answers); large ones at
// most once a second.
func (t *tracker) refreshSortedLocked() {
	if !t.dirty || (len(t.nodes) > 1024 && time.Since(t.builtAt) < time.Second) {
		return
	}
	t.sorted = t.sorted[:0]
	for _, n := range t.nodes {
		if !n.LastResponse.IsZero() {
			t.sorted = append(t.sorted, *n)
		}
	}
	slices.SortFunc(t.sorted, func(a, b routing.Node) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	t.dirty, t.builtAt = false, time.Now()
}

// prefixRange returns the range of sorted (by id) holding the nodes that share the longest
// prefix with target while numbering at least want (or all of sorted).
func prefixRange(sorted []routing.Node, target [20]byte, want int) []routing.Node {
	if len(sorted) <= want {
		return sorted
	}
	// Binary search the prefix length p in [0, 160]: rangeFor(p) shrinks as p grows.
	lo, hi := 0, 160 // rangeFor(lo) has >= want nodes; find the largest such p
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if r := rangeFor(sorted, target, mid); len(r) >= want {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return rangeFor(sorted, target, lo)
}

// rangeFor returns the nodes whose ids share the first p bits with target.
func rangeFor(sorted []routing.Node, target [20]byte, p int) []routing.Node {
	first, last := target, target
	for i := range 20 {
		// Bits at positions >= p are free: 0 in first, 1 in last.
		var keepMask byte
		switch {
		case p >= 8*(i+1):
			keepMask = 0xff
		case p <= 8*i:
			keepMask = 0
		default:
			keepMask = byte(0xff << (8 - (p - 8*i)))
		}
		first[i] &= keepMask
		last[i] |= ^keepMask
	}
	i := sort.Search(len(sorted), func(i int) bool { return bytes.Compare(sorted[i].ID[:], first[:]) >= 0 })
	j := sort.Search(len(sorted), func(j int) bool { return bytes.Compare(sorted[j].ID[:], last[:]) > 0 })
	return sorted[i:j]
}

func closestTo(target [20]byte, ns []routing.Node, k int) []routing.Node {
	slices.SortFunc(ns, func(a, b routing.Node) int {
		da, db := xor(a.ID, target), xor(b.ID, target)
		return bytes.Compare(da[:], db[:])
	})
	return ns[:min(k, len(ns))]
}

func xor(a, b [20]byte) (d [20]byte) {
	for i := range d {
		d[i] = a[i] ^ b[i]
	}
	return d
}

func (t *tracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.nodes)
}
