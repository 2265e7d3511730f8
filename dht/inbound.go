package dht

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"

	"github.com/magnetget/magnetget/internal/bencscan"
)

// Every packet the socket delivers passes through inbound before the library sees it. The
// library decodes with anacrolix bencode's default 128 MiB string cap, so a 16-byte packet
// "d1:t134217000:xx" made it allocate 128 MiB; and it lets every query add or refresh a node in its
// table under whatever id the (spoofable) source claims. So:
//
//   - packets longer than maxPacket, or whose bencode is malformed, nested deeper than
//     maxPacketDepth or declares a string longer than the rest of the packet, are dropped
//     without decoding (bencscan allocates nothing);
//   - queries never reach the library: the node answers them itself (handler.go), after a
//     per-source and a global reply budget, so only answers to our own transactions ever touch
//     the library's routing table;
//   - responses and errors go to the library, which matches them to a transaction it sent, but
//     only those whose transaction id carries our MAC for the address they came from (txid.go):
//     the library's own ids are a guessable counter.

const (
	// maxPacket bounds an accepted KRPC datagram. The largest messages real nodes send are
	// get_peers replies with 100 IPv6 values plus nodes6 (about 2.5 KB) and BEP 44 items (a
	// 1000-byte value plus key and signature); 4 KiB holds them with room to spare.
	maxPacket = 4096
	// maxPacketDepth bounds bencode nesting, as libtorrent's bdecode limit of 10 does; KRPC
	// needs 3 levels, BEP 44 values a few more.
	maxPacketDepth = 10
)

// Defaults for the reply budgets.
const (
	DefaultSourceRate = 10 // replies/s to one source
	// sourceBurst is how many seconds of a source's rate it may spend at once.
	sourceBurst = 2
	// maxSources bounds the per-source limiter table; the least recently seen source is forgotten
	// first (it then starts again with a full bucket, and the global reply budget still holds).
	maxSources = 4096
)

// inbound is the socket filter (see guardedConn): it reports whether the library should see b,
// and b's length after the transaction id was restored in place.
func (n *Node) inbound(b []byte, from netip.AddrPort) (int, bool) {
	if !n.ready.Load() {
		return 0, false // New is still building the node; nothing is awaited yet
	}
	if len(b) > maxPacket {
		n.packetsDropped.Add(1)
		return 0, false
	}
	var y, q []byte
	end, err := bencscan.Dict(b, 0, maxPacketDepth, func(key, val []byte) bool {
		switch string(key) {
		case "y":
			y = val
		case "q":
			q = val
		}
		return true
	})
	if err != nil {
		n.packetsDropped.Add(1)
		return 0, false
	}
	switch string(y) {
	case "1:r", "1:e":
		k, ok := n.txids.incoming(b[:end], from)
		if !ok {
			n.answersDropped.Add(1)
			return 0, false
		}
		return k, true
	case "1:q":
		n.serveQuery(b[:end], q, from)
	default:
		n.packetsDropped.Add(1)
	}
	return 0, false
}

// serveQuery counts, budgets, decodes and answers one query. It runs on the socket's read loop,
// outside the library's lock.
func (n *Node) serveQuery(b, rawQ []byte, from netip.AddrPort) {
	n.queriesIn.Add(1)
	i := len(queryTypes) - 1
	if len(rawQ) > 2 {
		if s, e, err := bencscan.String(rawQ, 0); err == nil {
			for j, name := range queryTypes[:len(queryTypes)-1] {
				if string(rawQ[s:e]) == name {
					i = j
					break
				}
			}
		}
	}
	n.queriesByType[i].Add(1)
	if n.cfg.ReadOnly {
		return // BEP 43: a read-only node does not answer
	}
	// Budgets first, decoding second: a flood costs a map lookup per packet, not a decode.
	if !n.sources.allow(from, time.Now()) || !n.replyLimiter.Allow() {
		n.repliesDropped.Add(1)
		return
	}
	m, err := decodeQuery(b)
	if err != nil {
		n.log.Debug("dht: undecodable query", "from", from, "err", err)
		return
	}
	if m.A != nil && !m.ReadOnly {
		// Unknown, or known but not good (it failed us, or has been silent): its query
		// proves nothing, so we ask it ourselves.
		if known, notGood := n.nodes.queried(from, m.A.ID, time.Now()); !known || notGood {
			n.verify(from)
		}
	}
	n.handleQuery(&m, from)
}

// Verification of nodes that query us. Their queries prove nothing, but a node that queries us is
// likely a live node worth knowing (libtorrent adds such nodes and pings them later): we ping it,
// and only its answer to our ping, a transaction we sent, adds it to the table and the tracker.
const (
	maxVerifying  = 16          // pings in flight
	verifyRecent  = 4096        // addresses remembered as recently pinged
	verifyBackoff = time.Minute // an address is pinged at most this often
)

// verify pings from in the background unless it was pinged recently or too many pings are in
// flight. A spoofed query makes us send one small ping to the address it names, at most once a
// minute per address, within our own query budget.
func (n *Node) verify(from netip.AddrPort) {
	now := time.Now()
	n.verifyMu.Lock()
	if t, ok := n.verified[from]; ok && now.Sub(t) < verifyBackoff {
		n.verifyMu.Unlock()
		return
	}
	if len(n.verified) >= verifyRecent {
		clear(n.verified)
	}
	n.verified[from] = now
	n.verifyMu.Unlock()
	select {
	case n.verifying <- struct{}{}:
	default:
		return
	}
	if !n.goTracked() {
		<-n.verifying
		return
	}
	go func() {
		defer n.wg.Done()
		defer func() { <-n.verifying }()
		n.ping(from)
	}()
}

// decodeQuery decodes a query that bencscan.Dict has accepted (bounded nesting), with strings
// capped at the packet and no panic (bencscan.DecodeScanned).
func decodeQuery(b []byte) (m krpc.Msg, err error) {
	_, err = bencscan.DecodeScanned(b, &m)
	return m, err
}

// sourceLimiter gives each source its own token bucket; sources live in a small LRU.
type sourceLimiter struct {
	rate  float64 // tokens per second; < 0 unlimited
	burst float64

	mu   sync.Mutex // guards the fields below
	byIP map[netip.AddrPort]*list.Element
	lru  list.List // of *sourceBucket, most recent at the front
}

type sourceBucket struct {
	key    netip.AddrPort
	tokens float64
	last   time.Time
}

func newSourceLimiter(rate float64) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: max(1, rate*sourceBurst), byIP: make(map[netip.AddrPort]*list.Element)}
}

// sourceKey is the unit a budget belongs to: the IP, since one host can use any number of ports.
// Loopback is the exception: every local process shares 127.0.0.1, so there the port tells
// sources apart (and tests give each simulated host its own 127.x.y.z).
func sourceKey(ap netip.AddrPort) netip.AddrPort {
	a := ap.Addr().Unmap()
	if a.IsLoopback() {
		return netip.AddrPortFrom(a, ap.Port())
	}
	return netip.AddrPortFrom(a, 0)
}

// allow takes one token from from's bucket.
func (l *sourceLimiter) allow(from netip.AddrPort, now time.Time) bool {
	if l.rate < 0 {
		return true
	}
	k := sourceKey(from)
	l.mu.Lock()
	defer l.mu.Unlock()
	var sb *sourceBucket
	if e := l.byIP[k]; e != nil {
		l.lru.MoveToFront(e)
		sb = e.Value.(*sourceBucket)
		sb.tokens = min(l.burst, sb.tokens+now.Sub(sb.last).Seconds()*l.rate)
		sb.last = now
	} else {
		if l.lru.Len() >= maxSources {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.byIP, old.Value.(*sourceBucket).key)
		}
		sb = &sourceBucket{key: k, tokens: l.burst, last: now}
		l.byIP[k] = l.lru.PushFront(sb)
	}
	if sb.tokens < 1 {
		return false
	}
	sb.tokens--
	return true
}
