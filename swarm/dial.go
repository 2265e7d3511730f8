package swarm

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/swarm/pex"
)

// errDialRefused: Config.AllowDial said not now.
var errDialRefused = errors.New("dial refused by AllowDial")

// dialMore starts dials from the pending queue while there is room under MaxPeers (making
// room by dropping a useless peer when the slots are full: see admit.go).
func (s *Swarm) dialMore() {
	var closing []*peerwire.Conn
	defer func() { closeAll(closing) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.stopped || s.ctx.Err() != nil {
		return
	}
	if s.picker.Missing() == 0 && !s.cfg.Seed {
		return // complete and not seeding: Run is ending
	}
	// A seed dials too: a leecher that cannot accept connections is reached no other way.
	for len(s.pending) > 0 && s.dialing < maxParallelDials {
		addr := s.pending[0]
		if s.bans.banned(addr.Addr(), time.Now()) || s.perIPLocked(addr.Addr()) >= maxPerIP {
			s.pending = s.pending[1:]
			delete(s.known, addr)
			continue
		}
		if !s.roomLocked(&closing) {
			break
		}
		s.pending = s.pending[1:]
		s.dialing++
		s.connecting[addr.Addr()]++
		s.wg.Add(1)
		go func(ctx context.Context) {
			defer s.wg.Done()
			o := s.opts
			o.EncryptedRetry = true // reach peers set to require encryption
			var c *peerwire.Conn
			err := errDialRefused
			if s.cfg.AllowDial == nil || s.cfg.AllowDial(addr) {
				c, err = peerwire.Dial(ctx, addr, s.cfg.InfoHash, o)
			}
			s.mu.Lock()
			s.dialing--
			s.doneConnectingLocked(addr.Addr())
			if err != nil {
				delete(s.known, addr)
				if err != errDialRefused { // the caller's policy already spaces its dials
					s.backoffLocked(addr, true, time.Now())
				}
			}
			s.mu.Unlock()
			if err != nil {
				if ctx.Err() == nil {
					s.log.Debug("dial failed", "peer", addr, "err", err)
				}
				s.nudge()
				return
			}
			s.startPeerDir(c, false, true)
		}(s.ctx)
	}
	if len(s.pending) == 0 {
		s.pending = nil
	}
}

// doneConnectingLocked ends the count of one dial or handshake in progress with ip.
func (s *Swarm) doneConnectingLocked(ip netip.Addr) {
	if s.connecting[ip]--; s.connecting[ip] <= 0 {
		delete(s.connecting, ip)
	}
}

// acceptLoop handshakes incoming connections from cfg.Listener, within the slots, per-IP and
// handshake budgets of admit.go: a connection beyond them is closed at once.
func (s *Swarm) acceptLoop(ctx context.Context) {
	// Answer MSE-first clients (libtorrent, aria2) at once instead of making them retry in
	// plaintext. Someone who connects must send a handshake promptly.
	o := s.opts
	o.InfoHashes = func() [][20]byte {
		hs := [][20]byte{s.cfg.InfoHash}
		if s.hashes.Hybrid() {
			hs = append(hs, s.hashes.V1, s.hashes.TruncatedV2())
		}
		return hs
	}
	o.Timeout = handshakeTimeout
	known := s.ourHash
	peerwire.ServeListener(ctx, s.cfg.Listener, func(nc net.Conn) {
		ip := addrPortOf(nc.RemoteAddr()).Addr()
		var closing []*peerwire.Conn
		s.mu.Lock()
		ok := !s.stopped && !s.bans.banned(ip, time.Now()) && s.handshaking < s.handshakeBudget() &&
			s.perIPLocked(ip) < maxPerIP && s.roomLocked(&closing)
		if ok {
			s.handshaking++
			s.connecting[ip]++
		}
		s.mu.Unlock()
		closeAll(closing)
		if !ok {
			_ = nc.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c, err := peerwire.Accept(ctx, nc, known, o)
			s.mu.Lock()
			s.handshaking--
			s.doneConnectingLocked(ip)
			s.mu.Unlock()
			if err != nil {
				s.log.Debug("incoming handshake failed", "err", err)
				s.nudge()
				return
			}
			s.log.Debug("incoming peer", "addr", c.RemoteAddr(), "crypto", c.Crypto())
			s.startPeerDir(c, false, false)
		}()
	})
}

// handshakeBudget is how many incoming handshakes may run at once: maxHandshakes, and never
// more than half the slots, so dials always find room.
func (s *Swarm) handshakeBudget() int {
	return max(1, min(maxHandshakes, s.cfg.MaxPeers/2))
}

// addrPortOf is a net.Addr as an AddrPort with IPv4-mapped addresses unmapped.
func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// sendPex tells each peer that supports ut_pex which peers joined or left since last time.
func (s *Swarm) sendPex() {
	s.mu.Lock()
	defer s.mu.Unlock()
	current := make(map[netip.AddrPort]bool)
	for p := range s.peers {
		if a := p.listenAddr(); a.IsValid() {
			current[a] = true
		}
	}
	for p := range s.peers {
		if p.pexID == 0 {
			continue
		}
		self := p.listenAddr()
		var m pex.Message
		for a := range current {
			if a != self && !p.pexSent[a] && len(m.Added) < pexMaxAdd {
				m.Added = append(m.Added, a)
				p.pexSent[a] = true
			}
		}
		for a := range p.pexSent {
			if !current[a] && len(m.Dropped) < pexMaxAdd {
				m.Dropped = append(m.Dropped, a)
				delete(p.pexSent, a)
			}
		}
		if len(m.Added)+len(m.Dropped) == 0 {
			continue
		}
		p.enqueue(peerwire.Message{ID: peerwire.Extended, ExtID: byte(p.pexID), Payload: pex.Encode(m)})
	}
}

// listenAddr is where others can dial p: the address we dialled, or for an incoming
// connection its IP with the listen port from its extended handshake. An adopted connection
// without that port was most likely dialled by metadata.Fetch, so its remote address is used.
func (p *peer) listenAddr() netip.AddrPort {
	if p.outgoing {
		return p.addr
	}
	if port := p.c.PeerExt().Port; port > 0 {
		return netip.AddrPortFrom(p.addr.Addr(), uint16(port))
	}
	if p.adopted {
		return p.addr
	}
	return netip.AddrPort{}
}
