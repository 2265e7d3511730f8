package swarm

import "time"

// Request pipelining. To keep a peer's link busy we must have at least its bandwidth-delay
// product in requests outstanding: 40 MiB/s at 100 ms RTT is 4 MiB, 256 blocks. Too few and
// the link idles for part of every round trip; too many and blocks wait in the peer's queue,
// which costs little but makes end game and choking slower to react.
//
// A connection starts with initOutstanding requests (1 MiB) in slow start, much as TCP does:
// every block received raises the pipeline by slowStartGrowth, so it quadruples every round trip
// while the link keeps up (64, 256, 512 blocks: a 40 MiB/s, 100 ms peer is saturated after two
// round trips of data; x4 rather than x3 took 64 MiB at 2 × 40 MiB/s, 100 ms from 0.655 to 0.668
// efficiency in BenchmarkWAN, 8 × 8 MiB/s at 40 ms unchanged at 0.88). A bigger start (128 or
// 256) was faster on the long fat links (0.685, 0.72) but slower with 8 peers (0.85): too much is
// then queued at each peer for the last pieces. A slow peer's pipeline grows only as fast as its blocks arrive.
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
		if c := p.pipelineCap(); p.maxOut < c {
			p.maxOut = min(p.maxOut+slowStartGrowth, c)
		} else {
			p.slowStart = false
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
