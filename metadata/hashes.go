package metadata

import (
	"crypto/sha1"
	"crypto/sha256"
	"fmt"

	"github.com/anacrolix/torrent/bencode"

	"github.com/magnetget/magnetget/internal/bencscan"
)

// Version names a BitTorrent protocol version: which infohash an info dict was asked for by.
type Version uint8

const (
	V1 Version = 1 // SHA-1 of the info dict (BEP 3)
	V2 Version = 2 // SHA-256 of the info dict (BEP 52), or its first 20 bytes in handshakes and the DHT
)

func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return fmt.Sprintf("version(%d)", uint8(v))
}

// Hashes are what an info dict is, as far as infohashes go. It is the one place that says which
// hash matched: callers (get, crawl, meta) branch on it and never hash the info themselves.
type Hashes struct {
	V1    [20]byte // SHA-1 of the info dict: the v1 infohash when HasV1
	V2    [32]byte // SHA-256 of the info dict: the v2 infohash when HasV2
	HasV1 bool     // the dict has a v1 half ("pieces"): a v1 or hybrid torrent
	HasV2 bool     // the dict has a v2 half ("meta version" 2): a v2 or hybrid torrent
	// Matched is the hash the torrent was asked for by: V1 when the 20-byte hash was the SHA-1,
	// V2 when it was the truncated SHA-256 (the full SHA-256 is then checked too when given).
	Matched Version
}

// Hybrid reports whether the info dict has both halves: one torrent with two infohashes.
func (h Hashes) Hybrid() bool { return h.HasV1 && h.HasV2 }

// SwarmHash is the 20-byte hash the torrent was asked for by, the one peers that gave the info
// dict speak: the v1 infohash, or the truncated v2 one.
func (h Hashes) SwarmHash() [20]byte {
	if h.Matched == V2 {
		return [20]byte(h.V2[:20])
	}
	return h.V1
}

// TruncatedV2 is the first 20 bytes of the v2 infohash: what the DHT, trackers and handshakes use
// for a v2 swarm (zero when !HasV2).
func (h Hashes) TruncatedV2() [20]byte {
	if !h.HasV2 {
		return [20]byte{}
	}
	return [20]byte(h.V2[:20])
}

// Identify checks that info is the torrent named by ih (a v1 infohash or a truncated v2 one) and,
// when v2 is not nil, by the full v2 infohash *v2 (a btmh magnet, or a dual-xt one whose ih is
// the v1 hash: both must match). A v2 hash matches only an info dict with a v2 half, a v1 hash
// only one with a v1 half. A mismatch is an error wrapping ErrHashMismatch.
func Identify(info []byte, ih [20]byte, v2 *[32]byte) (Hashes, error) {
	h := Hashes{V1: sha1.Sum(info), V2: sha256.Sum256(info)}
	var halves struct {
		MetaVersion int64         `bencode:"meta version"`
		Pieces      bencode.Bytes `bencode:"pieces"`
	}
	if err := bencscan.DecodeBounded(info, &halves); err != nil {
		return h, fmt.Errorf("%w: %w", ErrHashMismatch, err)
	}
	h.HasV1 = len(halves.Pieces) > 0
	h.HasV2 = halves.MetaVersion == 2
	switch {
	case h.HasV1 && h.V1 == ih:
		h.Matched = V1
	case h.HasV2 && [20]byte(h.V2[:20]) == ih:
		h.Matched = V2
	default:
		return h, fmt.Errorf("%w %x", ErrHashMismatch, ih)
	}
	if v2 != nil && (!h.HasV2 || h.V2 != *v2) {
		return h, fmt.Errorf("%w: not the v2 infohash %x", ErrHashMismatch, *v2)
	}
	return h, nil
}
