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

// Node health, as BEP 5 defines it and as our own node sees it. The library's table keeps no
// usable health (its only "bad" is a failed maintenance ping, and its Nodes() carries no times),
// so the tracker is what decides which nodes our replies hand out, where a traversal may start
// and which nodes are saved:
//
//   - good: it answered one of our queries within goodFor (15 min), or queried us within goodFor
//     after having answered once, and has not failed or stalled a query of ours since;
//   - questionable: anything else that is not bad (answered long ago, failed fewer than badAfter
//     queries in a row, or left a traversal's query unanswered past its soft timeout);
//   - bad: it left badAfter queries of ours in a row unanswered (each query sent twice).
//
// Replies hand out good nodes, questionable ones only when fewer than k good ones are near the
// target, bad ones never. An answer makes any node good again. A query from a node proves
// nothing (its source can be spoofed), so it never revives a node that failed us: it earns a
// verification ping instead (inbound.go).
//
// Bad is not forever. A node that missed three queries during a short outage (ours or its own)
// is still named by every other node, and shunning it for the life of the process would cost us
// a good node for nothing. So a bad node is held for badHold (20 min): meanwhile nothing of ours
// queries it (traversals drop it when others name it, pings skip it). Once the hold is over the
// next query of ours that wants it (a traversal it is named in, a verification ping, AddNode)
// may try it once, and that try starts the next hold at once, twice as long, up to
// 2^maxHoldShift times badHold (2 h 40 min): concurrent lookups never send it a second try, and
// an address that stays dead gets at most about one query an hour on average. An answer ends it
// all. libtorrent gets the same effect by forgetting a node after dht_max_fail_count timeouts
// (a node others name again is queried again, with no memory); we keep the memory so that on the
// Mainline DHT, where half the nodes handed out are gone, each dead node costs us a query per
// hold rather than one per lookup. The memory is bounded by the tracker's size (bad nodes are
// the first dropped when it fills), and only an answer to our own query ever adds a node.
const (
	DefaultNodeGoodFor = 15 * time.Minute
	// DefaultBadNodeHold is how long a bad node is left alone before one query may try it again.
	DefaultBadNodeHold = 20 * time.Minute
	// badAfter is how many of our queries in a row a node may leave unanswered before it is bad.
	badAfter = 3
	// maxHoldShift caps the doubling of the hold after each failed retry.
	maxHoldShift = 3
)

type health uint8

const (
	good health = iota
	questionable
	bad
)

// tnode is a tracked node: what we save, plus its health since this process started.
type tnode struct {
	routing.Node
	fails    int       // our queries it left unanswered (timed out) since its last answer
	stalled  bool      // a traversal gave up on its query after the soft timeout
	servedAt time.Time // when one of our replies last handed it out
	badUntil time.Time // while bad: when its hold ends and one query may try it again
	retries  int       // tries since it turned bad (each doubles the next hold)
}

// tracker remembers when remote nodes last answered us and last queried us, and how they fail.
// The library's table keeps such times privately and never expires nodes, so this is what
// decides which nodes are worth handing out and saving, and where a traversal can start besides
// the table.
type tracker struct {
	max     int
	goodFor time.Duration
	badHold time.Duration
	now     func() time.Time

	mu      sync.Mutex // guards the fields below
	nodes   map[netip.AddrPort]*tnode
	sorted  []*tnode // answered nodes (not bad when built) by id, for closest; rebuilt when dirty
	dirty   bool
	builtAt time.Time
}

func newTracker(max int, goodFor, badHold time.Duration) *tracker {
	if goodFor <= 0 {
		goodFor = DefaultNodeGoodFor
	}
	if badHold <= 0 {
		badHold = DefaultBadNodeHold
	}
	return &tracker{max: max, goodFor: goodFor, badHold: badHold, now: time.Now, nodes: make(map[netip.AddrPort]*tnode)}
}

func (t *tracker) healthLocked(n *tnode, now time.Time) health {
	switch {
	case n.fails >= badAfter:
		return bad
	case n.fails > 0 || n.stalled || n.LastResponse.IsZero():
		return questionable
	case now.Sub(n.LastResponse) < t.goodFor, now.Sub(n.LastQuery) < t.goodFor:
		return good
	}
	return questionable
}

// responded records an answer from id at addr: the node is good again.
func (t *tracker) responded(addr netip.AddrPort, id [20]byte, now time.Time) {
	t.update(addr, id, func(n *tnode) {
		n.LastResponse = now
		n.fails, n.stalled = 0, false
		n.badUntil, n.retries = time.Time{}, 0
	})
}

// failed records a query of ours that addr left unanswered until it timed out. The one that
// makes it bad starts its first hold; later ones change nothing (a retry set its own hold).
func (t *tracker) failed(addr netip.AddrPort) {
	addr = normAddrPort(addr)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[addr]; n != nil {
		n.fails++
		if n.fails == badAfter {
			t.dirty = true // leaves the sorted snapshot
			n.badUntil, n.retries = now.Add(t.badHold), 0
		}
	}
}

// shunned reports whether addr is bad and held: no query of ours may go to it, so a traversal
// drops it when others name it.
func (t *tracker) shunned(addr netip.AddrPort) bool {
	addr = normAddrPort(addr)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[addr]
	return n != nil && n.fails >= badAfter && now.Before(n.badUntil)
}

// mayQuery is asked right before a query of ours goes to addr. It refuses a held bad node; a bad
// node whose hold is over gets this one query, which starts its next, longer hold (so the
// lookups running beside do not try it too, and a query cut short still counts). An answer
// (responded) ends the hold; a timeout leaves the node bad until the new hold ends.
func (t *tracker) mayQuery(addr netip.AddrPort) bool {
	addr = normAddrPort(addr)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[addr]
	if n == nil || n.fails < badAfter {
		return true
	}
	if now.Before(n.badUntil) {
		return false
	}
	n.retries++
	n.badUntil = now.Add(t.badHold << min(n.retries, maxHoldShift))
	return true
}

// stalled records that a traversal stopped waiting for addr's answer after the soft timeout:
// the node is questionable (no longer handed out while good ones are near) until it answers,
// and the health pinger asks it.
func (t *tracker) stall(addr netip.AddrPort) {
	addr = normAddrPort(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[addr]; n != nil {
		n.stalled = true
	}
}

// isBad reports whether addr is known to be bad, held or not: such a node is neither handed out
// nor saved until it answers again.
func (t *tracker) isBad(addr netip.AddrPort) bool {
	addr = normAddrPort(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[addr]
	return n != nil && n.fails >= badAfter
}

// queried records a query from id at addr. A query proves nothing (its source address can be
// spoofed), so it only refreshes a node we already know under that same id: it never adds a node,
// never replaces the id we hold for an address and never revives a node that failed us. It
// reports whether the address is known at all, and whether it is known but not good (worth a
// verification ping).
func (t *tracker) queried(addr netip.AddrPort, id [20]byte, now time.Time) (known, notGood bool) {
	addr = normAddrPort(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[addr]
	if n == nil {
		return false, false
	}
	if n.ID == id {
		n.LastQuery = now
	}
	return true, t.healthLocked(n, now) != good
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
		t.update(sn.Addr, sn.ID, func(n *tnode) {
			if sn.LastResponse.After(n.LastResponse) {
				n.LastResponse = sn.LastResponse
			}
			if sn.LastQuery.After(n.LastQuery) {
				n.LastQuery = sn.LastQuery
			}
		})
	}
}

func (t *tracker) update(addr netip.AddrPort, id [20]byte, f func(*tnode)) {
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
		n = &tnode{Node: routing.Node{Addr: addr}}
		t.nodes[addr] = n
	}
	wasAnswered, wasBad, oldID := !n.LastResponse.IsZero(), n.fails >= badAfter, n.ID
	n.ID = id
	f(n)
	// The id-sorted snapshot only changes when a node joins the answered set, changes id, or
	// comes back from bad.
	if answered := !n.LastResponse.IsZero(); answered && (!wasAnswered || oldID != id || wasBad && n.fails < badAfter) {
		t.dirty = true
	}
}

// pruneLocked drops bad nodes, then the stalest of the rest down to three quarters of max, so
// that inserts stay cheap on average: a verified newcomer takes a bad node's place first.
func (t *tracker) pruneLocked() {
	var all []routing.Node
	for addr, n := range t.nodes {
		if n.fails >= badAfter {
			delete(t.nodes, addr)
			continue
		}
		all = append(all, n.Node)
	}
	if len(t.nodes) > t.max*3/4 {
		keep := make(map[netip.AddrPort]*tnode, t.max*3/4)
		for _, n := range routing.Best(all, t.max*3/4) {
			keep[n.Addr] = t.nodes[n.Addr]
		}
		t.nodes = keep
	}
	t.dirty, t.builtAt = true, time.Time{}
}

// snapshot returns every tracked node that is not bad.
func (t *tracker) snapshot() []routing.Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]routing.Node, 0, len(t.nodes))
	for _, n := range t.nodes {
		if n.fails < badAfter {
			out = append(out, n.Node)
		}
	}
	return out
}

// maxWiden bounds how far closest widens its search for good nodes: at most maxWiden*k nodes
// of the id-sorted snapshot are looked at.
const maxWiden = 32

// closest returns up to k nodes nearest to target (XOR metric) among those that answered us and
// pass keep: good ones, then questionable ones when fewer than k good ones are near, never bad
// ones. keep runs under the tracker's lock and must not call the tracker. It runs for every
// find_node/get_peers we answer, so it must not sort the whole tracker: it works on a snapshot
// sorted by id, where the nodes sharing a prefix with the target form one contiguous range, and
// sorts only the smallest such range holding 2k nodes (widened while good ones are too few).
func (t *tracker) closest(target [20]byte, k int, keep func(netip.AddrPort) bool) []routing.Node {
	return t.pick(target, k, keep, false)
}

// serve is closest for a reply: the nodes it returns are marked as handed out, which makes them
// worth pinging once they turn questionable.
func (t *tracker) serve(target [20]byte, k int, keep func(netip.AddrPort) bool) []routing.Node {
	return t.pick(target, k, keep, true)
}

func (t *tracker) pick(target [20]byte, k int, keep func(netip.AddrPort) bool, served bool) []routing.Node {
	if k <= 0 {
		return nil
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refreshSortedLocked(now)
	var goods, quests []*tnode
	for want := 2 * k; ; want *= 4 {
		r := prefixRange(t.sorted, target, want)
		goods, quests = goods[:0], quests[:0]
		for _, n := range r {
			if !keep(n.Addr) {
				continue
			}
			switch t.healthLocked(n, now) {
			case good:
				goods = append(goods, n)
			case questionable:
				quests = append(quests, n)
			}
		}
		if len(goods) >= k || len(r) == len(t.sorted) || want >= maxWiden*k {
			break
		}
	}
	out := closestTo(target, goods, k)
	if len(out) < k {
		out = append(out, closestTo(target, quests, k-len(out))...)
	}
	res := make([]routing.Node, len(out))
	for i, n := range out {
		res[i] = n.Node
		if served {
			n.servedAt = now
		}
	}
	return res
}

// toPing returns up to max questionable nodes worth a health ping: those among the near nodes
// closest to self, those our replies handed out within goodFor, and those our traversals
// stalled on; the ones that already failed first (to settle them), then the longest silent.
func (t *tracker) toPing(self [20]byte, near, max int, skip func(netip.AddrPort) bool) []netip.AddrPort {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refreshSortedLocked(now)
	var cands []*tnode
	consider := func(n *tnode) {
		if t.healthLocked(n, now) == questionable && !n.LastResponse.IsZero() && !skip(n.Addr) {
			cands = append(cands, n)
		}
	}
	nearSet := closestTo(self, slices.Clone(prefixRange(t.sorted, self, 2*near)), near)
	for _, n := range nearSet {
		consider(n)
	}
	for _, n := range t.nodes {
		if (n.stalled || now.Sub(n.servedAt) < t.goodFor) && !slices.Contains(nearSet, n) {
			consider(n)
		}
	}
	slices.SortFunc(cands, func(a, b *tnode) int {
		if a.fails != b.fails {
			return b.fails - a.fails
		}
		return a.LastResponse.Compare(b.LastResponse)
	})
	out := make([]netip.AddrPort, 0, min(max, len(cands)))
	for _, n := range cands[:min(max, len(cands))] {
		out = append(out, n.Addr)
	}
	return out
}

// refreshSortedLocked rebuilds the id-sorted snapshot of answered, not bad nodes when it is
// stale. Small trackers rebuild on every change (cheap, and young networks need fresh answers);
// large ones at most once a second (pick checks health anyway).
func (t *tracker) refreshSortedLocked(now time.Time) {
	if !t.dirty || (len(t.nodes) > 1024 && now.Sub(t.builtAt) < time.Second) {
		return
	}
	t.sorted = t.sorted[:0]
	for _, n := range t.nodes {
		if !n.LastResponse.IsZero() && n.fails < badAfter {
			t.sorted = append(t.sorted, n)
		}
	}
	slices.SortFunc(t.sorted, func(a, b *tnode) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	t.dirty, t.builtAt = false, now
}

// prefixRange returns the range of sorted (by id) holding the nodes that share the longest
// prefix with target while numbering at least want (or all of sorted).
func prefixRange(sorted []*tnode, target [20]byte, want int) []*tnode {
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
func rangeFor(sorted []*tnode, target [20]byte, p int) []*tnode {
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

// closestTo sorts ns by distance to target (in place) and returns the first k.
func closestTo(target [20]byte, ns []*tnode, k int) []*tnode {
	slices.SortFunc(ns, func(a, b *tnode) int {
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
