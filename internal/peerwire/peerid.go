package peerwire

import "crypto/rand"

// ClientCode is our two-letter client code in Azureus-style peer ids (BEP 20). "MG" is
// MediaGet's in the table libtorrent and others use, so magnetget is "MN", which no table we
// know of maps to a client.
const ClientCode = "MN"

// peerIDVersion is the four version digits of the peer id: major, minor, revision, tag.
const peerIDVersion = "0100"

// PeerIDPrefix is the fixed start of every peer id we send: "-MN0100-".
const PeerIDPrefix = "-" + ClientCode + peerIDVersion + "-"

// NewPeerID returns a fresh Azureus-style peer id: PeerIDPrefix followed by 12 random bytes.
// It is the one peer-id maker of the program; the swarm, the metadata fetcher and the command
// line all take theirs from here.
func NewPeerID() [20]byte {
	var id [20]byte
	copy(id[:], PeerIDPrefix)
	_, _ = rand.Read(id[len(PeerIDPrefix):])
	return id
}
