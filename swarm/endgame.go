package swarm

import (
	"math"
	"time"
)

// End game: once every missing block is requested, a peer with room may ask for blocks others
// owe us, so the download does not wait on its slowest peer. Duplicates cost bandwidth twice,
// so they are rationed:
//
//   - a block is asked of maxEndgameReqs peers at most, unless the one asking is at least twice
//     as fast as every peer that owes it (slow peers must not take the duplicates a fast one
//     would deliver first: with 7 slow and 1 fast peer that kept the fast one idle);
//   - a peer takes duplicates only while its queue is shorter than about two round trips of its
//     rate (lowWater): a duplicate behind a longer queue arrives after the original anyway and
//     only takes the link from blocks still needed (with 64 KiB pieces and a second of requests
//     at each of 8 peers, end game began 0.6 s before the end and sending every block twice
//     halved the rate for all of it);
//   - the last blocks of a piece first: its owner asked for them in order, so sends them last.
//
// Rates are "so far" figures (rateAt): a new peer has no measured rate for up to a second, and
// a fast one can finish its share of a small torrent within it.

const maxEndgameReqs = 2

// dupPolicy is one fill's view of end game for peer p, made once (it looks at every peer) and
// only when end game is reached.
type dupPolicy struct {
	p        *peer
	now      time.Time
	rate     float64 // p's
	lowWater int
	faster   bool // p is at least twice as fast as some other peer: a holder may be beaten
}

func (s *Swarm) dupPolicyLocked(p *peer) *dupPolicy {
	now := time.Now()
	d := &dupPolicy{p: p, now: now, rate: p.rateAt(now)}
	d.lowWater = max(minOutstanding, int(d.rate*2*p.minRTT.Seconds()/blockSize))
	slowest := math.Inf(1)
	for q := range s.peers {
		if q != p {
			slowest = min(slowest, q.rateAt(now))
		}
	}
	d.faster = d.rate > 0 && d.rate >= 2*slowest
	return d
}

// endgamePieceLocked is picked, a piece others are downloading (the picker found no fresh one),
// if it has a block d may ask for, else another such piece open to p, if any. The per-block look
// is paid only here, in end game: as a filter on every pick it cost 40 % of the CPU under s.mu.
func (s *Swarm) endgamePieceLocked(picked int, open func(int) bool, d *dupPolicy) (int, bool) {
	dupable := func(i int) bool {
		ps := s.pieces[i]
		if ps == nil || ps.unrequested > 0 {
			return true
		}
		_, ok := d.block(i, ps)
		return ok
	}
	if dupable(picked) {
		return picked, true
	}
	i, _, ok := s.picker.Pick(func(i int) bool { return open(i) && dupable(i) })
	return i, ok
}

// block returns the block of piece i that end game may ask p for although others owe it to us.
func (d *dupPolicy) block(i int, ps *pieceState) (int, bool) {
	low := len(d.p.outstanding) < d.lowWater
	if !low && !d.faster {
		return 0, false
	}
	for b := len(ps.claimed) - 1; b >= 0; b-- {
		if ps.claimed[b] {
			continue
		}
		k := blockKey{uint32(i), uint32(b * blockSize)}
		if _, mine := d.p.outstanding[k]; mine {
			continue
		}
		if low && ps.reqs[b] < maxEndgameReqs || d.faster && d.beatsHolders(ps, k) {
			return b, true
		}
	}
	return 0, false
}

// beatsHolders reports whether p is at least twice as fast as every peer that owes us k.
func (d *dupPolicy) beatsHolders(ps *pieceState, k blockKey) bool {
	for q := range ps.peers {
		if _, owes := q.outstanding[k]; owes && q != d.p && d.rate < 2*q.rateAt(d.now) {
			return false
		}
	}
	return true
}

// rateAt is p's download rate at now for end-game decisions: its last measured rate, or what
// it has sent since that measurement if that is more.
func (p *peer) rateAt(now time.Time) float64 {
	el := now.Sub(p.s.rateAt)
	if p.s.rateAt.IsZero() || el < 100*time.Millisecond {
		return p.downRate
	}
	return max(p.downRate, float64(p.downBytes-p.lastDownBytes)/el.Seconds())
}
