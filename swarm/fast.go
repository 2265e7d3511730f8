package swarm

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
)

// allowedFastCount is how many pieces we let a fast-extension peer (BEP 6) request while we
// still choke it. Sent with our bitfield, they let a new peer's first requests go out with its
// interest instead of a round trip later, after our unchoke: on a 100 ms link that is 100 ms
// sooner to the first block. The set is BEP 6's canonical one, derived from the peer's /24 and
// the infohash, so reconnecting gains a free rider nothing.
const allowedFastCount = 10

// allowedFastSet is BEP 6's canonical allowed-fast set of k pieces for a peer at ip (IPv4
// only, as BEP 6 defines it; nil for IPv6).
func allowedFastSet(ip netip.Addr, ih [20]byte, numPieces, k int) []int {
	ip = ip.Unmap()
	if !ip.Is4() || numPieces <= 0 {
		return nil
	}
	k = min(k, numPieces)
	a := ip.As4()
	x := append([]byte{a[0], a[1], a[2], 0}, ih[:]...)
	var out []int
	for len(out) < k {
		h := sha1.Sum(x)
		x = h[:]
		for i := 0; i < 5 && len(out) < k; i++ {
			idx := int(binary.BigEndian.Uint32(h[4*i:]) % uint32(numPieces))
			dup := false
			for _, o := range out {
				dup = dup || o == idx
			}
			if !dup {
				out = append(out, idx)
			}
		}
	}
	return out
}
