package swarm

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// regularUnchokedLocked counts the interested peers other than p holding a regular (not
// optimistic) upload slot.
func (s *Swarm) regularUnchokedLocked(p *peer) int {
	n := 0
	for q := range s.peers {
		if q != p && !q.amChoking && !q.optimistic && q.peerInterested {
			n++
		}
	}
	return n
}

// unchokeIfFreeLocked gives a newly interested peer a regular slot at once when one is free,
// rather than making it wait for the next rechoke. A peer we unchoked before it was interested
// (preUnchokeLocked) is choked again if the slots filled up meanwhile.
func (s *Swarm) unchokeIfFreeLocked(p *peer) {
	if p.optimistic {
		return
	}
	s.setChokeLocked(p, s.regularUnchokedLocked(p) >= unchokeSlots)
}

// preUnchokeLocked unchokes a new connection, in the same batch as our bitfield, when we have
// pieces to give and a regular slot is free. Otherwise the peer's first requests wait for its
// interested message to reach us and our unchoke to come back: a round trip, 100 ms on a long
// link, before its first block (allowed-fast pieces go earlier, but every peer we have offers
// the same few, BEP 6 deriving them from the address). Until it is interested the peer holds no
// slot; the next rechoke chokes it if it never becomes interested.
func (s *Swarm) preUnchokeLocked(p *peer) {
	if s.picker.HaveCount() > 0 && s.regularUnchokedLocked(p) < unchokeSlots {
		s.setChokeLocked(p, false)
	}
}

// setChokeLocked chokes or unchokes p; choking drops its queued requests (rejected under BEP 6).
func (s *Swarm) setChokeLocked(p *peer, choke bool) {
	if p.amChoking == choke {
		return
	}
	p.amChoking = choke
	if !choke {
		p.enqueue(peerwire.Message{ID: peerwire.Unchoke})
		return
	}
	p.optimistic = false
	p.qmu.Lock()
	var ups, keep []peerwire.Message
	for _, u := range p.uploads {
		if p.fastOut[int(u.Index)] {
			keep = append(keep, u) // allowed fast: served while choked too
		} else {
			ups = append(ups, u)
		}
	}
	p.uploads = keep
	p.qmu.Unlock()
	msgs := []peerwire.Message{{ID: peerwire.Choke}}
	if p.fast {
		for _, u := range ups {
			msgs = append(msgs, peerwire.Message{ID: peerwire.Reject, Index: u.Index, Begin: u.Begin, Length: u.Length})
		}
	}
	p.enqueue(msgs...)
}

// rechoke is tit-for-tat: the interested peers that give us the most (while downloading) or
// take the most (while seeding) get the regular slots; one more, chosen at random every 30 s,
// gets an optimistic unchoke so newcomers can prove themselves.
func (s *Swarm) rechoke(newOptimistic bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seeding := s.picker.Missing() == 0
	var cands []*peer
	for p := range s.peers {
		if p.peerInterested {
			cands = append(cands, p)
		}
	}
	slices.SortFunc(cands, func(a, b *peer) int {
		ra, rb := a.downRate, b.downRate
		if seeding {
			ra, rb = a.upRate, b.upRate
		}
		switch {
		case ra > rb:
			return -1
		case ra < rb:
			return 1
		}
		return 0
	})
	keep := make(map[*peer]bool)
	for _, p := range cands[:min(len(cands), unchokeSlots)] {
		keep[p] = true
	}
	var opt *peer
	for p := range s.peers {
		if p.optimistic && p.peerInterested && !newOptimistic {
			opt = p
		}
	}
	if opt == nil {
		var choked []*peer
		for _, p := range cands {
			if !keep[p] {
				choked = append(choked, p)
			}
		}
		if len(choked) > 0 {
			opt = choked[rand.IntN(len(choked))]
		}
	}
	for p := range s.peers {
		switch {
		case keep[p]:
			s.setChokeLocked(p, false)
			p.optimistic = false
		case p == opt:
			s.setChokeLocked(p, false)
			p.optimistic = true
		default:
			s.setChokeLocked(p, true)
		}
	}
}

// updateRate refreshes p's rate estimates and resizes its request pipeline (pipeline.go).
func (p *peer) updateRate(dt float64) {
	p.downRate = ewma(p.downRate, float64(p.downBytes-p.lastDownBytes)/dt)
	p.upRate = ewma(p.upRate, float64(p.upBytes-p.lastUpBytes)/dt)
	p.lastDownBytes, p.lastUpBytes = p.downBytes, p.upBytes
	p.resizePipelineLocked()
	p.s.trimPipelineLocked(p)
}

// checkSnubbed disconnects peers that owe us blocks but have sent none for snubTimeout.
func (s *Swarm) checkSnubbed(now time.Time) {
	s.mu.Lock()
	s.forgetHashesLocked(nil, now) // hash requests unanswered too long go to other peers
	s.askAllHashesLocked()
	s.mu.Unlock()
	s.expireLeaves(now)
	s.mu.Lock()
	var stale []*peer
	for p := range s.peers {
		if len(p.outstanding) > 0 && now.Sub(p.lastBlock) > snubTimeout {
			stale = append(stale, p)
		}
	}
	s.mu.Unlock()
	for _, p := range stale {
		s.log.Debug("dropping snubbing peer", "peer", p.addr, "err", errSnubbed)
		_ = p.c.Close()
	}
}
