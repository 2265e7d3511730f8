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
type peerStore struct {
	ttl   time.Duration
	perIH int
	total int
	now   func() time.Time // replaced in tests

	mu    sync.Mutex // guards the fields below
	byIH  map[[20]byte]*ihPeers
	ihs   [][20]byte // every infohash in byIH, for uniform BEP 51 sampling
	count int        // peers over all infohashes
}

type ihPeers struct {
	idx   int // position in peerStore.ihs
	peers map[netip.AddrPort]time.Time
}

// maxValues bounds the values list of one get_peers reply so it fits a UDP packet (libtorrent
// uses the same figure).
const maxValues = 100

func newPeerStore(ttl time.Duration, perIH, total int) *peerStore {
	return &peerStore{ttl: ttl, perIH: perIH, total: total, now: time.Now, byIH: make(map[[20]byte]*ihPeers)}
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
	if s.count >= s.total {
		return false
	}
	if e == nil {
		e = &ihPeers{idx: len(s.ihs), peers: make(map[netip.AddrPort]time.Time, 1)}
		s.byIH[ih] = e
		s.ihs = append(s.ihs, ih)
	}
	if len(e.peers) >= s.perIH {
		var oldest netip.AddrPort
		var oldestT time.Time
		for p, t := range e.peers {
			if !oldest.IsValid() || t.Before(oldestT) {
				oldest, oldestT = p, t
			}
		}
		delete(e.peers, oldest)
		s.count--
	}
	e.peers[peer] = now
	s.count++
	return true
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
				delete(e.peers, p)
				s.count--
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
