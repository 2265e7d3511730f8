package dht

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// peerStore holds the peers announced to this node. It is keyed by ip:port (so several clients
// behind one IP are all kept, unlike the library's InMemory store), expires entries after ttl,
// keeps at most perIH peers per infohash (evicting the oldest) and at most total peers overall
// (refusing new ones when full, so a flood cannot grow memory without bound).
//
// One IP cannot take the store over: it holds at most perIPPerIH ports under one infohash (a new
// port replaces its oldest) and appears under at most ihsPerIP infohashes (further ones are
// refused until its entries expire). Without these, one host announcing 100 ports made every
// get_peers reply a list of its own ports, and one announcing 1,100 infohashes filled the store.
type peerStore struct {
	ttl      time.Duration
	perIH    int
	total    int
	ihsPerIP int
	now      func() time.Time // replaced in tests

	mu    sync.Mutex // guards the fields below
	byIH  map[[20]byte]*ihPeers
	ihs   [][20]byte         // every infohash in byIH, for uniform BEP 51 sampling
	count int                // peers over all infohashes
	byIP  map[netip.Addr]int // infohashes under which each IP has at least one peer
}

type ihPeers struct {
	idx   int // position in peerStore.ihs
	peers map[netip.AddrPort]time.Time
	perIP map[netip.Addr]int // peers per IP under this infohash
}

// maxValues bounds the values a lookup takes from one get_peers reply (libtorrent sends at most
// 100).
const maxValues = 100

// perIPPerIH is how many ports of one IP an infohash keeps: a few, for clients sharing a NAT.
const perIPPerIH = 4

// DefaultMaxInfohashesPerIP caps the infohashes one IP can have peers stored under. Each node
// holds only the infohashes whose ids are near its own, so a host seeding thousands of torrents
// announces few of them to any one node.
const DefaultMaxInfohashesPerIP = 100

func newPeerStore(ttl time.Duration, perIH, total, ihsPerIP int) *peerStore {
	return &peerStore{ttl: ttl, perIH: perIH, total: total, ihsPerIP: ihsPerIP, now: time.Now,
		byIH: make(map[[20]byte]*ihPeers), byIP: make(map[netip.Addr]int)}
}

func normAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// add records peer under ih and reports whether it was stored.
func (s *peerStore) add(ih [20]byte, peer netip.AddrPort) bool {
	if !peer.IsValid() || peer.Port() == 0 || s.perIH <= 0 {
		return false
	}
	peer = normAddrPort(peer)
	ip := peer.Addr()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byIH[ih]
	if e != nil {
		if _, ok := e.peers[peer]; ok {
			e.peers[peer] = now
			return true
		}
	}
	newIP := e == nil || e.perIP[ip] == 0
	if newIP && s.byIP[ip] >= s.ihsPerIP {
		return false
	}
	if s.count >= s.total && (e == nil || e.perIP[ip] < perIPPerIH) {
		return false // full, and no entry of this IP to replace
	}
	if e == nil {
		e = &ihPeers{idx: len(s.ihs), peers: make(map[netip.AddrPort]time.Time, 1), perIP: make(map[netip.Addr]int, 1)}
		s.byIH[ih] = e
		s.ihs = append(s.ihs, ih)
	}
	switch {
	case e.perIP[ip] >= perIPPerIH:
		s.removeLocked(e, oldest(e, func(p netip.AddrPort) bool { return p.Addr() == ip }))
	case len(e.peers) >= s.perIH:
		s.removeLocked(e, oldest(e, nil))
	}
	e.peers[peer] = now
	s.count++
	if e.perIP[ip]++; e.perIP[ip] == 1 {
		s.byIP[ip]++
	}
	return true
}

// oldest returns the least recently announced peer of e that match accepts (nil: any).
func oldest(e *ihPeers, match func(netip.AddrPort) bool) netip.AddrPort {
	var old netip.AddrPort
	var oldT time.Time
	for p, t := range e.peers {
		if (match == nil || match(p)) && (!old.IsValid() || t.Before(oldT)) {
			old, oldT = p, t
		}
	}
	return old
}

// removeLocked deletes one peer of e, keeping the counts; it leaves e in place even when empty.
func (s *peerStore) removeLocked(e *ihPeers, p netip.AddrPort) {
	if _, ok := e.peers[p]; !ok {
		return
	}
	delete(e.peers, p)
	s.count--
	ip := p.Addr()
	if e.perIP[ip]--; e.perIP[ip] <= 0 {
		delete(e.perIP, ip)
		if s.byIP[ip]--; s.byIP[ip] <= 0 {
			delete(s.byIP, ip)
		}
	}
}

// get returns up to max live peers of ih, a random selection when there are more.
func (s *peerStore) get(ih [20]byte, max int) []netip.AddrPort {
	cutoff := s.now().Add(-s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byIH[ih]
	if e == nil {
		return nil
	}
	out := make([]netip.AddrPort, 0, min(len(e.peers), max))
	seen := 0
	// Map iteration order is unspecified but not uniformly random; reservoir sampling makes the
	// choice fair when an infohash holds more peers than fit in one reply.
	for p, t := range e.peers {
		if t.Before(cutoff) {
			continue
		}
		seen++
		if len(out) < max {
			out = append(out, p)
		} else if j := rand.IntN(seen); j < max {
			out[j] = p
		}
	}
	return out
}

// expire drops peers older than the ttl and infohashes left empty.
func (s *peerStore) expire() {
	cutoff := s.now().Add(-s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	for ih, e := range s.byIH {
		for p, t := range e.peers {
			if t.Before(cutoff) {
				s.removeLocked(e, p)
			}
		}
		if len(e.peers) == 0 {
			s.removeIHLocked(ih, e)
		}
	}
}

func (s *peerStore) removeIHLocked(ih [20]byte, e *ihPeers) {
	last := len(s.ihs) - 1
	moved := s.ihs[last]
	s.ihs[e.idx] = moved
	s.byIH[moved].idx = e.idx
	s.ihs = s.ihs[:last]
	delete(s.byIH, ih)
}

// sample returns up to max distinct infohashes chosen uniformly, and how many are stored.
func (s *peerStore) sample(max int) ([][20]byte, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.ihs)
	if n <= max {
		return append([][20]byte(nil), s.ihs...), n
	}
	// Partial Fisher-Yates over an index permutation kept sparse in a map.
	swapped := make(map[int]int, max)
	at := func(i int) int {
		if v, ok := swapped[i]; ok {
			return v
		}
		return i
	}
	out := make([][20]byte, 0, max)
	for i := range max {
		j := i + rand.IntN(n-i)
		vi, vj := at(i), at(j)
		swapped[j] = vi
		out = append(out, s.ihs[vj])
	}
	return out, n
}

// counts reports stored peers and infohashes.
func (s *peerStore) counts() (peers, infohashes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, len(s.ihs)
}
