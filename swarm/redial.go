package swarm

import (
	"net/netip"
	"time"
)

// Redial back-off. Peer sources (the DHT, trackers, PEX) keep naming the same addresses; a peer
// that refused us, failed its handshake or was dropped must not be dialled again the moment it
// is named again. Each address we dialled (or that dialled us, by its listen address) waits
// redialMin after a disconnect, doubled for each failure in a row (a dial or handshake that
// failed, or a connection that brought no block) up to redialMax. At most maxRedialEntries
// addresses are remembered.

const (
	redialMin        = 5 * time.Second
	redialMax        = 10 * time.Minute
	maxRedialEntries = 4096
)

type redialEntry struct {
	fails int
	until time.Time
}

// backoffLocked records that a connection to addr ended (failed: without any use) at now.
func (s *Swarm) backoffLocked(addr netip.AddrPort, failed bool, now time.Time) {
	if !addr.IsValid() {
		return
	}
	e, ok := s.redial[addr]
	if !ok && len(s.redial) >= maxRedialEntries {
		for a, x := range s.redial {
			if !now.Before(x.until) {
				delete(s.redial, a)
			}
		}
		if len(s.redial) >= maxRedialEntries {
			return
		}
	}
	if failed {
		e.fails++
	} else {
		e.fails = 0
	}
	e.until = now.Add(min(redialMin<<min(e.fails, 10), redialMax))
	s.redial[addr] = e
}

// mayDialLocked reports whether addr's back-off has passed.
func (s *Swarm) mayDialLocked(addr netip.AddrPort, now time.Time) bool {
	e, ok := s.redial[addr]
	return !ok || !now.Before(e.until)
}
