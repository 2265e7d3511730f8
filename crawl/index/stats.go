package index

import (
	"encoding/binary"
	bolt "go.etcd.io/bbolt"
	"time"
)

// Stats summarises the index.
type Stats struct {
	Infohashes   int64     // distinct infohashes
	WithMetadata int64     // metadata fetched
	Failed       int64     // metadata tried and failed (not fetched yet)
	Sampled      int64     // seen in BEP 51 samples
	GetPeers     int64     // seen in get_peers queries
	Announced    int64     // seen in announce_peer queries
	Sightings    int64     // sightings recorded, repeats included
	FirstSeen    time.Time // earliest first sighting
	LastSeen     time.Time // latest sighting
}

// account adds (sign +1) or removes (sign -1) e's contribution. FirstSeen
// and LastSeen only ever widen: they are bounds, not counters.
func (s *Stats) account(e *Entry, exists bool, sign int64) {
	if !exists {
		return
	}
	s.Infohashes += sign
	switch e.Meta {
	case MetaFetched:
		s.WithMetadata += sign
	case MetaFailed:
		s.Failed += sign
	}
	if e.How&Sampled != 0 {
		s.Sampled += sign
	}
	if e.How&GetPeers != 0 {
		s.GetPeers += sign
	}
	if e.How&Announce != 0 {
		s.Announced += sign
	}
	s.Sightings += sign * e.Seen
	if sign > 0 {
		if !e.FirstSeen.IsZero() && (s.FirstSeen.IsZero() || e.FirstSeen.Before(s.FirstSeen)) {
			s.FirstSeen = e.FirstSeen
		}
		if e.LastSeen.After(s.LastSeen) {
			s.LastSeen = e.LastSeen
		}
	}
}

func (s *Stats) encode() []byte {
	b := make([]byte, 0, 64)
	for _, v := range []int64{s.Infohashes, s.WithMetadata, s.Failed, s.Sampled, s.GetPeers, s.Announced, unixMilli(s.FirstSeen), unixMilli(s.LastSeen), s.Sightings} {
		b = binary.AppendVarint(b, v)
	}
	return b
}

// decodeStats reads the counters; a missing or damaged value yields zeros
// for what cannot be read (the counters are advisory).
func decodeStats(b []byte) Stats {
	var v [9]int64
	for i := range v {
		x, n := binary.Varint(b)
		if n <= 0 {
			break
		}
		v[i], b = x, b[n:]
	}
	return Stats{
		Infohashes: v[0], WithMetadata: v[1], Failed: v[2], Sampled: v[3], GetPeers: v[4], Announced: v[5],
		FirstSeen: fromMilli(v[6]), LastSeen: fromMilli(v[7]), Sightings: v[8],
	}
}

// Stats commits pending changes and returns the counters.
func (x *Index) Stats() (Stats, error) {
	if err := x.Flush(); err != nil {
		return Stats{}, err
	}
	var s Stats
	err := x.guarded(func() error {
		return x.db.View(func(tx *bolt.Tx) error {
			s = decodeStats(tx.Bucket(bucketMeta).Get(keyStats))
			return nil
		})
	})
	return s, err
}
