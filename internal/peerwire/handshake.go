package peerwire

import (
	"bytes"
	"errors"
	"fmt"
)

const (
	protocolString = "BitTorrent protocol"
	// HandshakeLen is the size of a full BEP 3 handshake.
	HandshakeLen = 1 + len(protocolString) + 8 + 20 + 20
	// handshakeHeadLen is everything before the peer id: what Accept needs to pick the torrent.
	handshakeHeadLen = HandshakeLen - 20
)

// Reserved-bit positions (byte index, mask) in the handshake's 8 reserved bytes.
const (
	reservedExtByte, reservedExtMask   = 5, 0x10 // BEP 10 extension protocol
	reservedFastByte, reservedFastMask = 7, 0x04 // BEP 6 fast extension
	reservedDHTByte, reservedDHTMask   = 7, 0x01 // BEP 5 DHT (peer sends Port messages)
	reservedV2Byte, reservedV2Mask     = 7, 0x10 // BEP 52 BitTorrent v2 (hash request/hashes/hash reject)
)

var (
	// ErrBadHandshake is returned when the peer's handshake is not a BitTorrent handshake.
	ErrBadHandshake = errors.New("peerwire: bad handshake")
	// ErrInfoHashMismatch is returned when the peer's handshake names another torrent (Dial) or one
	// we do not serve (Accept).
	ErrInfoHashMismatch = errors.New("peerwire: infohash mismatch")
)

// Handshake is the content of a BEP 3 handshake.
type Handshake struct {
	Reserved [8]byte
	InfoHash [20]byte
	PeerID   [20]byte
}

// SupportsExtensions reports the BEP 10 reserved bit.
func (h Handshake) SupportsExtensions() bool {
	return h.Reserved[reservedExtByte]&reservedExtMask != 0
}

// SupportsFast reports the BEP 6 reserved bit.
func (h Handshake) SupportsFast() bool {
	return h.Reserved[reservedFastByte]&reservedFastMask != 0
}

// SupportsDHT reports the BEP 5 reserved bit.
func (h Handshake) SupportsDHT() bool {
	return h.Reserved[reservedDHTByte]&reservedDHTMask != 0
}

// SupportsV2 reports the BEP 52 reserved bit.
func (h Handshake) SupportsV2() bool {
	return h.Reserved[reservedV2Byte]&reservedV2Mask != 0
}

// AppendHandshake appends h's 68-byte wire form to dst.
func AppendHandshake(dst []byte, h Handshake) []byte {
	dst = append(dst, byte(len(protocolString)))
	dst = append(dst, protocolString...)
	dst = append(dst, h.Reserved[:]...)
	dst = append(dst, h.InfoHash[:]...)
	return append(dst, h.PeerID[:]...)
}

// parseHandshakeHead parses the first 48 bytes of a handshake (no peer id).
func parseHandshakeHead(b []byte) (Handshake, error) {
	var h Handshake
	if len(b) < handshakeHeadLen {
		return h, fmt.Errorf("%w: %d bytes", ErrBadHandshake, len(b))
	}
	if int(b[0]) != len(protocolString) || !bytes.Equal(b[1:1+len(protocolString)], []byte(protocolString)) {
		return h, fmt.Errorf("%w: protocol %q", ErrBadHandshake, b[:min(len(b), 1+len(protocolString))])
	}
	p := b[1+len(protocolString):]
	copy(h.Reserved[:], p[:8])
	copy(h.InfoHash[:], p[8:28])
	return h, nil
}

// ParseHandshake parses a full 68-byte handshake.
func ParseHandshake(b []byte) (Handshake, error) {
	if len(b) != HandshakeLen {
		return Handshake{}, fmt.Errorf("%w: %d bytes, want %d", ErrBadHandshake, len(b), HandshakeLen)
	}
	h, err := parseHandshakeHead(b)
	if err != nil {
		return h, err
	}
	copy(h.PeerID[:], b[handshakeHeadLen:])
	return h, nil
}
