package dht

import (
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// BEP 51 (DHT infohash indexing). The library answers sample_infohashes with error 204, so the
// node answers it itself (handler.go); this file holds the querying side's decoding.

// maxSamples is how many infohashes one reply carries: 20 bytes each, and libtorrent's figure, so
// the packet stays well under a typical MTU together with 8 nodes.
const maxSamples = 20

// sampleFromReturn converts a reply, bounding what the remote node claims.
func sampleFromReturn(r *krpc.Return) Sample {
	var s Sample
	if r == nil {
		return s
	}
	if r.Samples != nil {
		s.Infohashes = make([][20]byte, len(*r.Samples))
		copy(s.Infohashes, *r.Samples)
	}
	if r.Num != nil && *r.Num > 0 {
		s.Num = int(min(*r.Num, 1<<40))
	}
	if r.Interval != nil && *r.Interval > 0 {
		// BEP 51 caps the interval at 6 hours.
		s.Interval = time.Duration(min(*r.Interval, 21600)) * time.Second
	}
	r.ForAllNodes(func(ni krpc.NodeInfo) {
		if ap, ok := toAddrPort(ni.Addr); ok {
			s.Nodes = append(s.Nodes, ap)
		}
	})
	return s
}
