package swarm

import (
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// Request pipelining. To keep a peer's link busy we must have at least its bandwidth-delay
// product in requests outstanding: 40 MiB/s at 100 ms RTT is 4 MiB, 256 blocks. Too few and
// the link idles for part of every round trip; too many and blocks wait in the peer's queue,
// which costs little but makes end game and choking slower to react.
//
// The first round trip is blind: we know neither the peer's rate nor, for most connections,
// its RTT, and whatever we do not ask for in it is lost for good (a 1 MiB start left a 40 MiB/s,
// 100 ms peer idle for three quarters of its first round trip). So a connection starts with
// initOutstanding requests (250 blocks, ~4 MiB: the queue every peer accepts, defaultReqq, and
// about the product of a 40 MiB/s peer at 100 ms), but never more
// than a fair half of what is left divided among the peers we have or are dialling, and no
// more of the allowed-fast pieces than its share while it still chokes us (every peer offers
// us the same few: BEP 6 derives them from our address). What a slow peer was given too much
// of is cancelled at the first rate measurement (trimPipelineLocked), so an optimistic start
// costs about a second of hoarding, not the download's tail. The pipeline then grows in slow
// start, much as TCP does: every block received raises it by slowStartGrowth (x4 per round
// trip) while the link keeps up; a slow peer's pipeline grows only as fast as its blocks arrive.
// Measured with bench/wan (64 MiB): 2 x 40 MiB/s at 100 ms 0.63 -> 0.71 efficiency together
// with the seeder's pre-unchoke (choke.go), 8 x 8 MiB/s at 40 ms 0.84 -> 0.85.
//
// Slow start ends when the blocks start to queue at the peer (a block's request-to-arrival time
// above twice the least seen, plus slowStartSlack for scheduling noise: the pipeline then
// exceeds the bandwidth-delay product), when a second's rate is no longer growing (by 10 %), or
// when the pipeline reaches its cap. From then on, once a second, the pipeline follows the measured rate times the queue
// time (requestQueueTime, or two round trips on links slower than that, as libtorrent's
// request_queue_time), never below minOutstanding, and never above maxOutstanding or the
// peer's advertised reqq.

const (
	requestQueueTime = time.Second
	slowStartGrowth  = 3 // more requests per block received in slow start: x4 per round trip
	slowStartSlack   = 10 * time.Millisecond
)

// pipelineCap is the most requests p may have outstanding: ours and its advertised reqq.
func (p *peer) pipelineCap() int {
	reqq := p.reqq
	if reqq <= 0 {
		reqq = defaultReqq
	}
	return max(minOutstanding, min(maxOutstanding, reqq))
}

// blockArrivedLocked notes a requested block that arrived rtt after it was asked for.
func (p *peer) blockArrivedLocked(rtt time.Duration) {
	if rtt > 0 && (p.minRTT == 0 || rtt < p.minRTT) {
		p.minRTT = rtt
	}
	if p.slowStart && rtt > 2*p.minRTT+slowStartSlack {
		// Blocks now wait in the peer's queue: the pipeline holds more than the link's
		// bandwidth-delay product, so growing it further gains nothing.
		p.slowStart = false
	}
	if p.slowStart {
		// At the cap (which may have come down to the reqq it advertised after we chose the
		// first pipeline) there is nothing left to probe.
		if c := p.pipelineCap(); p.maxOut < c {
			p.maxOut = min(p.maxOut+slowStartGrowth, c)
		} else {
			p.maxOut, p.slowStart = c, false
		}
	}
}

// resizePipelineLocked sets p's pipeline from its rate, after each rate update.
func (p *peer) resizePipelineLocked() {
	queue := max(requestQueueTime, 2*p.minRTT)
	want := int(p.downRate*queue.Seconds()/blockSize) + minOutstanding
	if p.slowStart {
		if p.downRate > 0 && p.downRate < 1.1*p.lastRate {
			p.slowStart = false
		}
		want = max(want, p.maxOut)
	}
	p.lastRate = p.downRate
	p.maxOut = max(minOutstanding, min(want, p.pipelineCap()))
}

// initialPipelineLocked is a new connection's first pipeline: initOutstanding, or half of the
// blocks left shared among the connections we have and are dialling if that is less.
func (s *Swarm) initialPipelineLocked() int {
	left := (s.total - s.done) / blockSize
	share := left / int64(2*(len(s.peers)+1+s.dialing))
	return int(max(minOutstanding, min(initOutstanding, share)))
}

// chokedShareLocked is how many allowed-fast pieces p may download while it chokes us: the
// set divided among our connections, at least one.
func (s *Swarm) chokedShareLocked(p *peer) int {
	return max(1, len(p.allowedFast)/max(1, len(s.peers)+s.dialing))
}

// trimPipelineLocked cancels what p was asked for beyond twice its pipeline, newest pieces
// first, once slow start has ended: the start is optimistic, and blocks a slow peer would
// take many seconds to send are better fetched from others. The pieces go back to the picker
// (partial ones first); blocks already on their way are not counted against p as unrequested.
func (s *Swarm) trimPipelineLocked(p *peer) {
	if p.slowStart || len(p.outstanding) <= 2*p.maxOut {
		return
	}
	var cancels []peerwire.Message
	// Backwards: releasing p.pieces[j] only moves the pieces after it, already seen.
	for j := len(p.pieces) - 1; j >= 0 && len(p.outstanding) > p.maxOut && len(p.pieces) > 1; j-- {
		i := p.pieces[j]
		if ps := s.pieces[i]; ps == nil || ps.verifying {
			continue // nothing of it is owed: releasing it gains nothing
		}
		n := len(cancels)
		for k, r := range p.outstanding {
			if int(k.piece) == i {
				cancels = append(cancels, peerwire.Message{ID: peerwire.Cancel, Index: k.piece, Begin: k.begin, Length: r.length})
				p.wasted -= int64(r.length)
			}
		}
		if len(cancels) > n {
			s.releasePieceLocked(p, i)
		}
	}
	p.enqueue(cancels...)
}
