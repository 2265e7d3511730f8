package swarm

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/peerwire"
)

// hashBuf is each verifier's read buffer: memory stays flat whatever the piece length.
const hashBuf = 256 << 10

// verifier finishes the hashes of pieces whose blocks are all on disk.
func (s *Swarm) verifier(ctx context.Context) {
	buf := make([]byte, hashBuf)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.verifyCh:
			ok, err := s.checkPiece(j, buf)
			if err != nil {
				s.setFatal(fmt.Errorf("%w: reading back piece %d: %w", ErrStorage, j.piece, err))
				return
			}
			var leaves []merkle.Hash
			if !ok {
				ph := &j.ps.hash
				ph.mu.Lock()
				if m, isV2 := ph.h.(*merkleHash); isV2 {
					leaves = m.Leaves()
				}
				ph.mu.Unlock()
				if leaves == nil {
					leaves = s.hybridLeaves(j.piece, buf)
				}
			}
			s.pieceCheckedLeaves(j.piece, ok, leaves)
		}
	}
}

// pieceChecked records a verification result. A good piece is announced to every peer; a bad
// one is forgotten (so it is fetched again) and its senders earn strikes toward a ban. A bad
// piece of a v2-only torrent, or of a hybrid whose v2 piece hash is known, first has its block
// hashes asked of a peer (see askLeavesLocked): then only the bad blocks are fetched again, and
// only their senders are blamed.
func (s *Swarm) pieceChecked(i int, ok bool) { s.pieceCheckedLeaves(i, ok, nil) }

// pieceCheckedLeaves is pieceChecked with the hashes of the blocks of a failed piece (v2-only or
// hybrid: see hybridLeaves).
func (s *Swarm) pieceCheckedLeaves(i int, ok bool, leaves []merkle.Hash) {
	s.mu.Lock()
	ps := s.pieces[i]
	if ps == nil {
		s.mu.Unlock()
		return
	}
	if !ok && s.askLeavesLocked(i, ps, leaves) {
		s.mu.Unlock()
		return
	}
	toClose := s.finishPieceLocked(i, ps, ok)
	complete := s.picker.Missing() == 0
	s.mu.Unlock()
	for _, c := range toClose {
		_ = c.Close()
	}
	if complete {
		s.nudge()
	}
}

// finishPieceLocked ends the download of piece i: verified (ok), or failed and forgotten, its
// senders struck. It returns the connections of peers banned now, to close outside the lock.
func (s *Swarm) finishPieceLocked(i int, ps *pieceState, ok bool) []*peerwire.Conn {
	for p := range ps.peers {
		var cancels []peerwire.Message
		for k, r := range p.outstanding {
			if int(k.piece) == i { // end-game duplicates still in flight
				cancels = append(cancels, peerwire.Message{ID: peerwire.Cancel, Index: k.piece, Begin: k.begin, Length: r.length})
			}
		}
		p.enqueue(cancels...)
		s.releasePieceLocked(p, i)
	}
	delete(s.pieces, i)
	var toClose []*peerwire.Conn
	if ok {
		s.markHaveLocked(i)
		s.dirty = true
		for p := range s.peers {
			if p.has.Has(i) {
				p.useful--
				if p.useful == 0 && p.amInterested {
					p.amInterested = false
					p.enqueue(peerwire.Message{ID: peerwire.NotInterested})
				}
			} else {
				p.enqueue(peerwire.Message{ID: peerwire.Have, Index: uint32(i)})
			}
		}
	} else {
		s.picker.Stop(i, false) // nothing of it is trusted now
		strike := 1
		if len(ps.contrib) == 1 {
			strike = 2 // sole sender: certainly at fault
		}
		for ip := range ps.contrib {
			toClose = append(toClose, s.strikeLocked(ip, strike, i)...)
		}
	}
	for p := range s.peers {
		s.fillLocked(p)
	}
	return toClose
}

// strikeLocked counts strikes against the sender of bad data in piece i, banning it (and
// returning its connections) when they add up.
func (s *Swarm) strikeLocked(ip netip.Addr, strike, i int) []*peerwire.Conn {
	strikes, banned := s.bans.strike(ip, strike, time.Now())
	s.log.Info("piece failed verification", "piece", i, "peer", ip, "strikes", strikes)
	if !banned {
		return nil
	}
	s.log.Warn("banning peer that sent bad data", "peer", ip)
	var toClose []*peerwire.Conn
	key := senderKey(ip)
	for p := range s.peers {
		if key.Contains(p.addr.Addr()) {
			// The caller closes it after letting go of the lock; meanwhile a fill (the
			// refetch of the very blocks it spoiled) must not ask it again.
			p.banned = true
			toClose = append(toClose, p.c)
		}
	}
	if s.onBan != nil {
		s.onBan(ip)
	}
	return toClose
}

// Banned returns the senders banned now for sending data that failed verification: IPv4
// addresses, and for IPv6 the first address of each banned /64.
func (s *Swarm) Banned() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bans.list(time.Now())
}
