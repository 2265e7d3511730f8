package utp

import (
	"encoding/binary"
	"errors"
)

// Packet types (BEP 29 "type" nibble).
const (
	stData  = 0 // payload, consumes a sequence number
	stFin   = 1 // end of the sender's stream, consumes a sequence number
	stState = 2 // an ack: no payload, no sequence number of its own
	stReset = 3 // the connection is gone
	stSyn   = 4 // opens a connection, consumes sequence number 1
)

const (
	version   = 1
	headerLen = 20

	extNone = 0
	extSACK = 1 // selective ack bitmask
	// extension 2 ("extension bits") is sent by old uTorrents; skipped like any unknown one.
)

// maxSACKLen caps the selective ack bitmask we send; one we parse may be up to 255 bytes (the
// length byte), and only the part that covers our send window is looked at.
const maxSACKLen = 32

// errNotUTP: the datagram is not a uTP packet (a KRPC message, say).
var errNotUTP = errors.New("utp: not a uTP packet")

// errBadExtension: the extension chain runs past the packet, or a selective ack is empty or
// repeated. A static error: parsing hostile bytes allocates nothing.
var errBadExtension = errors.New("utp: bad extension")

// header is a uTP packet header with its selective ack, if any.
type header struct {
	typ       byte
	connID    uint16
	timestamp uint32 // sender's clock, microseconds
	tsDiff    uint32 // sender's clock minus the timestamp of the last packet it received
	wnd       uint32 // bytes the sender can still receive
	seq       uint16
	ack       uint16
	sack      []byte // bitmask from ack+2, LSB first within each byte; aliases the packet
}

// looksUTP reports whether b starts like a uTP packet: version 1, a known type and room for a
// header. KRPC messages start with 'd' (type 6, version 4) and never pass.
func looksUTP(b []byte) bool {
	return len(b) >= headerLen && b[0]&0x0f == version && b[0]>>4 <= stSyn
}

// parse decodes a packet, returning its header and payload (both aliasing b). Every length
// comes from b itself: the extension chain is walked within b and ends at the first bad link.
func parse(b []byte) (header, []byte, error) {
	var h header
	if !looksUTP(b) {
		return h, nil, errNotUTP
	}
	h.typ = b[0] >> 4
	h.connID = binary.BigEndian.Uint16(b[2:])
	h.timestamp = binary.BigEndian.Uint32(b[4:])
	h.tsDiff = binary.BigEndian.Uint32(b[8:])
	h.wnd = binary.BigEndian.Uint32(b[12:])
	h.seq = binary.BigEndian.Uint16(b[16:])
	h.ack = binary.BigEndian.Uint16(b[18:])
	ext, rest := b[1], b[headerLen:]
	for ext != extNone {
		if len(rest) < 2 {
			return h, nil, errBadExtension
		}
		next, n := rest[0], int(rest[1])
		if len(rest) < 2+n {
			return h, nil, errBadExtension
		}
		if ext == extSACK {
			if n == 0 || h.sack != nil {
				return h, nil, errBadExtension
			}
			h.sack = rest[2 : 2+n : 2+n]
		}
		ext, rest = next, rest[2+n:]
	}
	return h, rest, nil
}

// appendPacket encodes h and payload onto dst.
func appendPacket(dst []byte, h *header, payload []byte) []byte {
	ext := byte(extNone)
	if len(h.sack) > 0 {
		ext = extSACK
	}
	dst = append(dst, h.typ<<4|version, ext)
	dst = binary.BigEndian.AppendUint16(dst, h.connID)
	dst = binary.BigEndian.AppendUint32(dst, h.timestamp)
	dst = binary.BigEndian.AppendUint32(dst, h.tsDiff)
	dst = binary.BigEndian.AppendUint32(dst, h.wnd)
	dst = binary.BigEndian.AppendUint16(dst, h.seq)
	dst = binary.BigEndian.AppendUint16(dst, h.ack)
	if len(h.sack) > 0 {
		dst = append(dst, extNone, byte(len(h.sack)))
		dst = append(dst, h.sack...)
	}
	return append(dst, payload...)
}

// seqLess reports whether a comes before b in the wrapping 16-bit sequence space.
func seqLess(a, b uint16) bool { return a != b && b-a < 0x8000 }
