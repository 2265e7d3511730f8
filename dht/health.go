package dht

import (
	"net/netip"
	"sync"
	"time"
)

// Health pings (see tracker.go for what good, questionable and bad mean). Every HealthInterval
// the node pings the questionable nodes that matter to it: the ones nearest its own id (its
// neighbourhood, which other nodes ask it about most), the ones its replies handed out within
// NodeGoodFor (so a node we vouch for is checked before it turns stale), and the ones its own
// traversals stalled on. An answer makes a node good again; badAfter timeouts in a row make it
// bad: it is never handed out, and queried again only once per hold (tracker.mayQuery).
const (
	healthBatch    = 32 // pings per round
	healthInFlight = 8  // pings at once
	healthNear     = 16 // nodes nearest our id kept checked
)

// healthPings runs the rounds until the node closes. A round waits for its own pings, so rounds
// never overlap and at most healthInFlight pings are in flight; each ping also waits on the
// node's query limiter.
func (n *Node) healthPings() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.HealthInterval)
	defer t.Stop()
	sem := make(chan struct{}, healthInFlight)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		addrs := n.nodes.toPing(n.id, healthNear, healthBatch, n.foreign)
		var wg sync.WaitGroup
	round:
		for _, a := range addrs {
			select {
			case <-n.ctx.Done():
				break round
			case sem <- struct{}{}:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				n.ping(a)
			}()
		}
		wg.Wait()
	}
}

// foreign reports whether ap is no node for us to ask: our own address, or the other family.
func (n *Node) foreign(ap netip.AddrPort) bool {
	ap = normAddrPort(ap)
	return ap == n.addr || ap.Addr().Is4() == n.isV6()
}
