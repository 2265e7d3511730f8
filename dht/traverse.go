package dht

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"time"
)

// An iterative Kademlia traversal of our own (the library's waits out every unanswered query in
// its alpha slots, so on the Mainline DHT, where about half the nodes an answer names are gone,
// each round of dead nodes cost a whole query timeout). Here a query that has not been answered
// within the soft timeout stops counting against alpha: the next candidate is queried at once,
// while the late answer is still accepted until the hard timeout (the library's resend delay, one
// resend). Dead nodes cost concurrency, not rounds.
//
// The traversal owns its state in one goroutine (run); queries run in goroutines it starts and
// waits for, and report back on a channel.

// travNode is a node as a traversal knows it: an address and, when known, its id.
type travNode struct {
	addr  netip.AddrPort
	id    [20]byte
	hasID bool
}

// travReply is what one query brought back.
type travReply struct {
	ok    bool // the node answered
	id    [20]byte
	nodes []travNode
	data  any // e.g. the announce token
}

type travQuery func(ctx context.Context, addr netip.AddrPort) travReply

// trav is one walk toward target.
type trav struct {
	target   [20]byte
	k, alpha int
	soft     time.Duration // after this a query no longer holds an alpha slot
	maxSlow  int           // queries past their soft timeout still awaited
	query    travQuery
	keep     func(netip.AddrPort) bool // candidate filter
	want     func(data any) bool       // which answers count for the closest set; nil: all
	// more is called when the traversal has run out of candidates; the nodes it returns (those
	// not yet seen) are queried next. responded is how many nodes answered so far.
	more func(responded int) []travNode
	// event, when set, is a channel of work the caller wants done on the traversal's goroutine
	// (streaming peers); handle returns false to stop the traversal.
	event  <-chan []PeerResult
	handle func([]PeerResult) bool
}

type candState uint8

const (
	unqueried candState = iota
	active              // in flight, within its soft timeout
	slow                // in flight, past its soft timeout
	answered
	failed
)

type cand struct {
	travNode
	dist  [20]byte
	state candState
	data  any
}

type travResult struct {
	closest   []*cand // answered (and wanted), nearest first, at most k
	tried     int
	responded int
}

type travEvent struct {
	c     *cand
	final bool // false: the soft timeout passed
	r     travReply
}

func (tr *trav) dist(n travNode) [20]byte {
	if !n.hasID {
		var far [20]byte
		for i := range far {
			far[i] = 0xff
		}
		return far
	}
	return xor(n.id, tr.target)
}

// run walks from seeds until no candidate can bring us closer, ctx ends, or handle says stop.
// Every query it started has returned when it returns.
func (tr *trav) run(ctx context.Context, seeds []travNode) travResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var res travResult
	cands := make(map[netip.AddrPort]*cand)
	var pending []*cand // unqueried, sorted nearest first when dirty is false
	dirty := false
	var closest []*cand // answered and wanted, nearest first, at most k
	nActive, nSlow, inflight := 0, 0, 0
	events := make(chan travEvent, 2*(2*tr.alpha+tr.maxSlow))

	add := func(ns []travNode) int {
		added := 0
		for _, n := range ns {
			if !n.addr.IsValid() || (tr.keep != nil && !tr.keep(n.addr)) {
				continue
			}
			n.addr = normAddrPort(n.addr)
			if c := cands[n.addr]; c != nil {
				if !c.hasID && n.hasID && c.state == unqueried {
					c.travNode, c.dist, dirty = n, tr.dist(n), true
				}
				continue
			}
			c := &cand{travNode: n, dist: tr.dist(n)}
			cands[n.addr] = c
			pending = append(pending, c)
			dirty = true
			added++
		}
		return added
	}
	// eligible: could this candidate improve the closest set?
	eligible := func(c *cand) bool {
		if len(closest) < tr.k {
			return true
		}
		return c.hasID && bytes.Compare(c.dist[:], closest[len(closest)-1].dist[:]) < 0
	}
	// peek returns the nearest unqueried candidate that could improve the closest set; next
	// also takes it off pending.
	peek := func() *cand {
		if dirty {
			slices.SortStableFunc(pending, func(a, b *cand) int { return bytes.Compare(a.dist[:], b.dist[:]) })
			dirty = false
		}
		for len(pending) > 0 && pending[0].state != unqueried {
			pending = pending[1:]
		}
		if len(pending) == 0 || !eligible(pending[0]) {
			return nil
		}
		return pending[0]
	}
	next := func() *cand {
		c := peek()
		if c != nil {
			pending = pending[1:]
		}
		return c
	}
	launch := func(c *cand) {
		c.state = active
		nActive++
		inflight++
		res.tried++
		go func() {
			done := make(chan travReply, 1)
			go func() { done <- tr.query(ctx, c.addr) }()
			t := time.NewTimer(tr.soft)
			defer t.Stop()
			select {
			case r := <-done:
				events <- travEvent{c: c, final: true, r: r}
				return
			case <-t.C:
				events <- travEvent{c: c}
			}
			events <- travEvent{c: c, final: true, r: <-done}
		}()
	}
	insertClosest := func(c *cand) {
		if tr.want != nil && !tr.want(c.data) {
			return
		}
		i, _ := slices.BinarySearchFunc(closest, c, func(a, b *cand) int { return bytes.Compare(a.dist[:], b.dist[:]) })
		closest = slices.Insert(closest, i, c)
		if len(closest) > tr.k {
			closest = closest[:tr.k]
		}
	}
	// slowMatters: is a query past its soft timeout worth waiting for? Not once k nodes have
	// answered: on the real network a node silent that long is almost always gone, and its late
	// answer would only refine a closest set that is already full.
	slowMatters := func() bool {
		if len(closest) >= tr.k {
			return false
		}
		for _, c := range cands {
			if c.state == slow && eligible(c) {
				return true
			}
		}
		return false
	}

	add(seeds)
	stopped := false
	for !stopped {
		for nActive < tr.alpha && nSlow < tr.maxSlow && ctx.Err() == nil {
			c := next()
			if c == nil {
				break
			}
			launch(c)
		}
		// peek, not next: when maxSlow held the launches back, taking a candidate here lost it.
		if nActive == 0 && peek() == nil {
			// Out of candidates: take up what the caller knows now (without waiting for queries
			// past their soft timeout, which are most likely dead), else wait for those queries
			// if they still matter, else we are done.
			if tr.more != nil && ctx.Err() == nil && add(tr.more(res.responded)) > 0 {
				continue
			}
			if nSlow == 0 || !slowMatters() {
				break
			}
		}
		select {
		case <-ctx.Done():
			stopped = true
		case batch := <-tr.event:
			if !tr.handle(batch) {
				stopped = true
			}
		case ev := <-events:
			c := ev.c
			if !ev.final {
				if c.state == active {
					c.state = slow
					nActive--
					nSlow++
				}
				continue
			}
			inflight--
			switch c.state {
			case active:
				nActive--
			case slow:
				nSlow--
			}
			if !ev.r.ok {
				c.state = failed
				continue
			}
			c.state = answered
			res.responded++
			if ev.r.id != ([20]byte{}) && (!c.hasID || c.id != ev.r.id) {
				c.id, c.hasID = ev.r.id, true
				c.dist = tr.dist(c.travNode)
			}
			c.data = ev.r.data
			if c.hasID {
				insertClosest(c)
			}
			add(ev.r.nodes)
		}
	}
	// Stop what is still in flight and wait for it; events already queued (peers included) are
	// delivered unless the caller asked to stop.
	cancel()
	for inflight > 0 {
		select {
		case ev := <-events:
			if ev.final {
				inflight--
			}
		case batch := <-tr.event:
			if !stopped && !tr.handle(batch) {
				stopped = true
			}
		}
	}
	for !stopped {
		select {
		case batch := <-tr.event:
			stopped = !tr.handle(batch)
		default:
			stopped = true
		}
	}
	res.closest = closest
	return res
}
