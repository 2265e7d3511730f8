// Package metadata fetches a torrent's info dictionary from peers with the BEP 9 (ut_metadata)
// extension, and serves it to peers that ask.
//
// Flow of Fetch: peers arrive on a channel and are dialled in parallel (Options.Dials at a time).
// Each connected peer's BEP 10 handshake tells its ut_metadata id and the metadata size. One
// "attempt" assembles a copy of a given size from 16 KiB pieces requested from several peers at
// once; a rejected or timed-out piece goes back to the queue for another peer. The assembled copy
// must hash (SHA-1) to the infohash; the first verified copy wins. Peers are checked one by one
// after a copy from several peers fails the hash, so one liar cannot get honest peers dropped.
// Peers that behaved stay open and are returned for the swarm.
package metadata

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/torrentfile"
)

var (
	// ErrNoPeers: the peer channel closed and every peer failed.
	ErrNoPeers = errors.New("metadata: no peer gave the metadata")
	// ErrTooLarge: a peer announced a metadata_size above Options.MaxSize.
	ErrTooLarge = errors.New("metadata: metadata_size too large")
	// ErrHashMismatch: an assembled copy did not hash to the infohash.
	ErrHashMismatch = errors.New("metadata: info dict does not match the infohash")
	// ErrBadMessage: a ut_metadata message that does not follow BEP 9.
	ErrBadMessage = errors.New("metadata: bad ut_metadata message")
	// ErrNoMetadataExt: the peer does not support ut_metadata (or told no metadata_size).
	ErrNoMetadataExt = errors.New("metadata: peer does not offer ut_metadata")
	// ErrRejected: the peer rejected our requests.
	ErrRejected = errors.New("metadata: peer rejected requests")
	// ErrTimeout: the peer did not answer a request in time.
	ErrTimeout = errors.New("metadata: peer did not answer in time")
)

const (
	// ExtName is the BEP 10 extension name of BEP 9.
	ExtName = "ut_metadata"
	// LocalExtID is the extended message id Fetch asks peers to use for ut_metadata messages sent
	// to us (the swarm recognises metadata requests on connections Fetch returned with it; in
	// general use Conn.LocalExt().M[ExtName]).
	LocalExtID = 2
	// PieceSize is the BEP 9 metadata piece size.
	PieceSize = 16 << 10
	// DefaultMaxSize is Options.MaxSize when zero.
	DefaultMaxSize = 16 << 20
	// DefaultDials is Options.Dials when zero.
	DefaultDials = 16
)

// Options configure Fetch. The zero value works.
type Options struct {
	MaxSize int // largest metadata_size accepted; 0: DefaultMaxSize
	Dials   int // dials in flight at once; 0: DefaultDials
	PeerID  [20]byte
	Logger  *slog.Logger // nil: discard
	// HandshakeTimeout bounds dial + BEP 3 handshake, and then the wait for the peer's BEP 10
	// handshake; 0: 10 s.
	HandshakeTimeout time.Duration
	// RequestTimeout bounds waiting for the answer to a piece request; 0: 5 s.
	RequestTimeout time.Duration
	// HedgeDelay: when no piece is left to hand out, pieces a peer has held this long are also
	// requested from an idle peer (the first answer counts); 0: RequestTimeout/4.
	HedgeDelay time.Duration
	// LocalAddr is the address dials leave from (the peer listen address, so peers see and
	// pass on one that answers); zero: the system chooses.
	LocalAddr netip.Addr
	// UTP also reaches peers over uTP (BEP 29; see peerwire.Options.UTP); nil: TCP only.
	UTP peerwire.UTPDialer
	// MaxConns bounds the connected peers kept at once (parked, idle or busy); 0: 2*Dials.
	MaxConns int
	// InfoHashV2 is the torrent's full v2 infohash (a btmh magnet), zero when unknown. When set,
	// the info dict must also hash to it (SHA-256), whichever 20-byte hash Fetch was given; and
	// when that hash is its truncation, Fetch's handshakes set the BEP 52 bit, so the
	// connections it hands on can carry hash requests for piece layers.
	InfoHashV2 [32]byte
	// Incoming carries connections peers opened to us (peerwire.Accept, for ih or another
	// hash of the same torrent) while the fetch runs: each is asked for the metadata like a
	// dialled peer and, when it behaved, returned in Result.Conns. Nil: none. Fetch reads it
	// only while it has room for more connections; one it did not read stays the caller's.
	// It does not keep Fetch alive: with peers closed and nobody connected, Fetch fails.
	Incoming <-chan *peerwire.Conn
	// Sources are http(s) URLs of the torrent's .torrent file (a magnet's xs=), fetched beside
	// the peers (torrenturl.Get, at most 2*MaxSize+1 MiB each): one whose info dict is the one
	// asked for (Identify) ends Fetch as a verified copy from peers does; one that is not is
	// logged and ignored. At most 8 are fetched.
	Sources []string
}

func (o Options) v2() *[32]byte {
	if o.InfoHashV2 == ([32]byte{}) {
		return nil
	}
	return &o.InfoHashV2
}

// Result is the outcome of Fetch.
type Result struct {
	Info []byte // bencoded info dict, checked by Identify against the hashes asked for
	// Hashes says what Info is: its v1 and v2 infohashes, which halves it has, and which hash
	// matched the one asked for (Hashes.SwarmHash, the hash Conns speak).
	Hashes Hashes
	Conns  []*peerwire.Conn // still open, deadline cleared, ready for the swarm; owned by the caller
	// Torrent is the .torrent Info came from (Options.Sources), validated by
	// torrentfile.ParseTorrent (its piece layers checked against their roots); nil when Info
	// came from peers.
	Torrent *torrentfile.Torrent
}

// LocalExtHandshake is the BEP 10 handshake Fetch advertises; size is our metadata_size (0 while
// we do not have the info dict). Callers that accept connections may use it too.
func LocalExtHandshake(size int) peerwire.ExtHandshake {
	return peerwire.ExtHandshake{M: map[string]int{ExtName: LocalExtID}, MetadataSize: size, V: "magnetget", Reqq: 250}
}
