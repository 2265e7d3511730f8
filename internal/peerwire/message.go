package peerwire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Message IDs of BEP 3, BEP 5 (Port), BEP 6 (fast extension) and BEP 10 (Extended).
const (
	Choke         byte = 0
	Unchoke       byte = 1
	Interested    byte = 2
	NotInterested byte = 3
	Have          byte = 4
	Bitfield      byte = 5
	Request       byte = 6
	Piece         byte = 7
	Cancel        byte = 8
	Port          byte = 9
	Suggest       byte = 13 // BEP 6 suggest piece
	HaveAll       byte = 14 // BEP 6
	HaveNone      byte = 15 // BEP 6
	Reject        byte = 16 // BEP 6 reject request
	AllowedFast   byte = 17 // BEP 6
	Extended      byte = 20 // BEP 10
	HashRequest   byte = 21 // BEP 52: a root, layer, index, length and proof layers
	Hashes        byte = 22 // BEP 52: the request echoed, then the hashes
	HashReject    byte = 23 // BEP 52: the request echoed
)

// BEP 52 payload sizes: a hash request and a hash reject carry a 32-byte pieces root and four
// 32-bit fields; a hashes message adds the hashes. MaxHashesLen is the largest hashes message
// (ID byte included) we read or send: the answer to a request of internal/merkle's
// MaxRequestLength (8192) base hashes with the most uncles a tree can have (64). Requests of
// that length are what libtorrent accepts; we send shorter ones (swarm asks for at most 512).
const (
	hashRequestLen = 32 + 16
	MaxHashesLen   = 1 + hashRequestLen + (8192+64)*32
)

// MaxMessageLen bounds the length prefix of every message except Bitfield: a Piece message with a
// 16 KiB block needs 1<<14+9 bytes, and we allow blocks up to 128 KiB plus an ut_metadata data
// message (a small dict followed by 16 KiB).
const MaxMessageLen = 1<<17 + 64

// MaxBitfieldLen bounds a Bitfield message's payload: 1<<21 bytes describe 16.7 million pieces,
// more than any real torrent has. The exact length (ceil(pieces/8)) can only be checked by the
// caller, which knows the piece count.
const MaxBitfieldLen = 1 << 21

var (
	// ErrMessageTooLarge is returned by ReadMsg when a length prefix exceeds the caps; nothing is
	// allocated for it and the connection should be closed.
	ErrMessageTooLarge = errors.New("peerwire: message too large")
	// ErrBadMessage is returned for a message whose length does not fit its ID.
	ErrBadMessage = errors.New("peerwire: malformed message")
)

// Message is one peer wire message. Keepalive is set for the zero-length message; otherwise ID
// selects which of the other fields are meaningful:
//
//	Have, Suggest, AllowedFast: Index
//	Request, Cancel, Reject:    Index, Begin, Length
//	Piece:                      Index, Begin, Block
//	Bitfield:                   Bitfield
//	Port:                       Port
//	Extended:                   ExtID, Payload (bencoded dict, possibly followed by raw data)
//	HashRequest, Hashes, HashReject: Payload (BEP 52; internal/merkle parses it: ParseRequest,
//	                            ParseHashesMsg), its length checked here
//	unknown IDs:                Payload (everything after the ID byte), so callers can skip them
//
// Slices returned by ReadMsg are freshly allocated and owned by the caller.
type Message struct {
	Keepalive            bool
	ID                   byte
	Index, Begin, Length uint32
	Block                []byte
	Bitfield             []byte
	ExtID                byte
	Payload              []byte
	Port                 uint16
}

// String is for logs.
func (m Message) String() string {
	if m.Keepalive {
		return "keepalive"
	}
	switch m.ID {
	case Have, Suggest, AllowedFast:
		return fmt.Sprintf("msg%d(%d)", m.ID, m.Index)
	case Request, Cancel, Reject:
		return fmt.Sprintf("msg%d(%d,%d,%d)", m.ID, m.Index, m.Begin, m.Length)
	case Piece:
		return fmt.Sprintf("piece(%d,%d,len %d)", m.Index, m.Begin, len(m.Block))
	case Bitfield:
		return fmt.Sprintf("bitfield(len %d)", len(m.Bitfield))
	case Extended:
		return fmt.Sprintf("extended(%d,len %d)", m.ExtID, len(m.Payload))
	}
	return fmt.Sprintf("msg%d", m.ID)
}

// maxLenFor is the largest length prefix (ID byte included) accepted for a message with this ID.
func maxLenFor(id byte) uint32 {
	switch id {
	case Bitfield:
		return MaxBitfieldLen + 1
	case Hashes:
		return MaxHashesLen
	}
	return MaxMessageLen
}

// DecodeMessage parses one message body: b is everything after the 4-byte length prefix (so an
// empty b is a keepalive). The returned slices alias b.
func DecodeMessage(b []byte) (Message, error) {
	if len(b) == 0 {
		return Message{Keepalive: true}, nil
	}
	if uint64(len(b)) > uint64(maxLenFor(b[0])) {
		return Message{}, fmt.Errorf("%w: id %d, length %d", ErrMessageTooLarge, b[0], len(b))
	}
	m := Message{ID: b[0]}
	p := b[1:]
	want := -1 // exact payload length, -1 when variable
	switch m.ID {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
		want = 0
	case Have, Suggest, AllowedFast:
		want = 4
	case Request, Cancel, Reject:
		want = 12
	case Port:
		want = 2
	case Piece:
		if len(p) < 8 {
			return Message{}, fmt.Errorf("%w: piece message of %d bytes", ErrBadMessage, len(b))
		}
	case Extended:
		if len(p) < 1 {
			return Message{}, fmt.Errorf("%w: empty extended message", ErrBadMessage)
		}
	case HashRequest, HashReject:
		want = hashRequestLen
	case Hashes:
		if len(p) < hashRequestLen || (len(p)-hashRequestLen)%32 != 0 {
			return Message{}, fmt.Errorf("%w: hashes message of %d bytes", ErrBadMessage, len(b))
		}
	}
	if want >= 0 && len(p) != want {
		return Message{}, fmt.Errorf("%w: message id %d with %d payload bytes, want %d", ErrBadMessage, m.ID, len(p), want)
	}
	switch m.ID {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
	case Have, Suggest, AllowedFast:
		m.Index = binary.BigEndian.Uint32(p)
	case Request, Cancel, Reject:
		m.Index = binary.BigEndian.Uint32(p)
		m.Begin = binary.BigEndian.Uint32(p[4:])
		m.Length = binary.BigEndian.Uint32(p[8:])
	case Port:
		m.Port = binary.BigEndian.Uint16(p)
	case Piece:
		m.Index = binary.BigEndian.Uint32(p)
		m.Begin = binary.BigEndian.Uint32(p[4:])
		m.Block = p[8:]
	case Bitfield:
		m.Bitfield = p
	case Extended:
		m.ExtID = p[0]
		m.Payload = p[1:]
	default:
		m.Payload = p
	}
	return m, nil
}

// encodedLen is the message's length prefix value.
func (m Message) encodedLen() int {
	if m.Keepalive {
		return 0
	}
	switch m.ID {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
		return 1
	case Have, Suggest, AllowedFast:
		return 5
	case Request, Cancel, Reject:
		return 13
	case Port:
		return 3
	case Piece:
		return 9 + len(m.Block)
	case Bitfield:
		return 1 + len(m.Bitfield)
	case Extended:
		return 2 + len(m.Payload)
	}
	return 1 + len(m.Payload)
}

// appendHeader appends the length prefix and every field except the trailing variable-length
// slice (Block, Bitfield or Payload), which writers send separately to avoid a copy.
func (m Message) appendHeader(dst []byte) (out []byte, tail []byte) {
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.encodedLen()))
	if m.Keepalive {
		return dst, nil
	}
	dst = append(dst, m.ID)
	switch m.ID {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
	case Have, Suggest, AllowedFast:
		dst = binary.BigEndian.AppendUint32(dst, m.Index)
	case Request, Cancel, Reject:
		dst = binary.BigEndian.AppendUint32(dst, m.Index)
		dst = binary.BigEndian.AppendUint32(dst, m.Begin)
		dst = binary.BigEndian.AppendUint32(dst, m.Length)
	case Port:
		dst = binary.BigEndian.AppendUint16(dst, m.Port)
	case Piece:
		dst = binary.BigEndian.AppendUint32(dst, m.Index)
		dst = binary.BigEndian.AppendUint32(dst, m.Begin)
		tail = m.Block
	case Bitfield:
		tail = m.Bitfield
	case Extended:
		dst = append(dst, m.ExtID)
		tail = m.Payload
	default:
		tail = m.Payload
	}
	return dst, tail
}

// AppendMessage appends m's wire form (length prefix included) to dst.
func AppendMessage(dst []byte, m Message) []byte {
	dst, tail := m.appendHeader(dst)
	return append(dst, tail...)
}

// checkSendable refuses messages that the peer would reject as too large, so we never send what
// we would not accept ourselves.
func (m Message) checkSendable() error {
	if m.Keepalive {
		return nil
	}
	if n := m.encodedLen(); uint64(n) > uint64(maxLenFor(m.ID)) {
		return fmt.Errorf("%w: sending id %d with length %d", ErrMessageTooLarge, m.ID, n)
	}
	return nil
}
