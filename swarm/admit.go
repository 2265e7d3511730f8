package swarm

import (
	"net/netip"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// Admission: who gets one of the MaxPeers slots. A slot is taken by a connected peer, a dial
// in progress or an incoming handshake in progress, so connections that never finish their
// handshake cannot pile up beyond the cap (issue 9, row 8: 3,000 of them made 3,000 goroutines
// and 290 MiB of buffers). On top of that:
//
//   - at most maxPerIP connections (connected or being set up) per IP address, so one host
//     cannot hold the slots with idle connections under many peer ids (row 7);
//   - at most maxHandshakes incoming handshakes at once, each within handshakeTimeout, so a
//     flood of half-open connections cannot take the slots that dials need;
//   - when the slots are full and someone new could use one, the most useless peer is dropped
//     to make room: one that has been connected for evictAfter and has, for that long, neither
//     sent nor been sent a block, and either has nothing we want or keeps us choked (while
//     downloading), or does not want anything from us (while seeding).

const (
	maxPerIP         = 4
	maxHandshakes    = 16
	handshakeTimeout = 5 * time.Second
	evictIdle        = 30 * time.Second
)

// occupiedLocked counts the slots in use: peers (except those being evicted), dials and
// incoming handshakes.
func (s *Swarm) occupiedLocked() int {
	return len(s.peers) - s.evicting + s.dialing + s.handshaking
}

// perIPLocked counts connections with ip: connected peers plus dials and handshakes in
// progress.
func (s *Swarm) perIPLocked(ip netip.Addr) int {
	n := s.connecting[ip]
	for p := range s.peers {
		if p.addr.Addr() == ip && !p.evicting {
			n++
		}
	}
	return n
}

// roomLocked reports whether one more connection may be set up, evicting a useless peer to
// make room when the slots are full. The evicted peer's connection is appended to *closing,
// for the caller to close once it has released the lock.
func (s *Swarm) roomLocked(closing *[]*peerwire.Conn) bool {
	if s.occupiedLocked() < s.cfg.MaxPeers {
		return true
	}
	p := s.uselessPeerLocked(time.Now())
	if p == nil {
		return false
	}
	p.evicting = true
	s.evicting++
	*closing = append(*closing, p.c)
	s.log.Debug("dropping a useless peer to make room", "peer", p.addr)
	return true
}

// uselessPeerLocked returns the peer that has been useless for longest (see the package
// comment above), or nil when none has been for evictAfter.
func (s *Swarm) uselessPeerLocked(now time.Time) *peer {
	after := s.evictAfter
	if after <= 0 {
		after = evictIdle
	}
	seeding := s.picker.Missing() == 0
	var worst *peer
	var worstIdle time.Duration
	for p := range s.peers {
		if p.evicting {
			continue
		}
		idle := now.Sub(p.lastPayload)
		if idle < after {
			continue
		}
		useless := p.useful == 0 || p.peerChoking
		if seeding {
			useless = !p.peerInterested
		}
		if useless && idle > worstIdle {
			worst, worstIdle = p, idle
		}
	}
	return worst
}

// closeAll closes connections outside the lock.
func closeAll(cs []*peerwire.Conn) {
	for _, c := range cs {
		_ = c.Close()
	}
}
