package peerwire

import (
	"errors"
	"fmt"

	"github.com/anacrolix/torrent/bencode"

	"github.com/magnetget/magnetget/internal/bencscan"
)

// ErrBadExtHandshake is returned for an extended handshake that is not a bencoded dict.
var ErrBadExtHandshake = errors.New("peerwire: bad extended handshake")

// ExtHandshake is the BEP 10 extended handshake (extended message id 0).
//
// M maps extension names ("ut_metadata", "ut_pex") to the extended message id the sender wants to
// receive them with; 0 means the sender disabled that extension. Decoding is lenient about the keys
// we do not use and about wrongly typed values (they are dropped), as real clients differ.
type ExtHandshake struct {
	M            map[string]int
	MetadataSize int    // BEP 9 metadata_size; 0 when absent or invalid
	V            string // client name and version
	Port         int    // p: the sender's listen port; 0 when absent or invalid
	Reqq         int    // outstanding requests the sender accepts; 0 when absent
	YourIP       []byte // yourip: our address as the sender sees it (4 or 16 bytes)
}

// maxExtID bounds extension ids: they travel as one byte.
const maxExtID = 255

// extWire is the wire form of ExtHandshake; anacrolix/bencode sorts the keys and drops the
// omitempty ones.
type extWire struct {
	M            map[string]int `bencode:"m"`
	MetadataSize int            `bencode:"metadata_size,omitempty"`
	Port         int            `bencode:"p,omitempty"`
	Reqq         int            `bencode:"reqq,omitempty"`
	V            string         `bencode:"v,omitempty"`
	YourIP       []byte         `bencode:"yourip,omitempty"`
}

// EncodeExtHandshake returns the bencoded dict for h. Zero and negative numbers and empty strings
// are left out, except M which is always present (BEP 10 requires it).
func EncodeExtHandshake(h ExtHandshake) []byte {
	w := extWire{M: h.M, MetadataSize: max(h.MetadataSize, 0), Port: max(h.Port, 0), Reqq: max(h.Reqq, 0), V: h.V, YourIP: h.YourIP}
	if w.M == nil {
		w.M = map[string]int{}
	}
	b, err := bencode.Marshal(w)
	if err != nil {
		// Impossible for these field types; an empty handshake is still valid BEP 10.
		return []byte("d1:mdee")
	}
	return b
}

// decodeBencode decodes one value from b into v and returns how many bytes it used: strings
// capped at len(b), nesting at MaxBencodeDepth, never a panic (bencscan.DecodePrefix).
func decodeBencode(b []byte, v any) (int, error) {
	return bencscan.DecodePrefix(b, MaxBencodeDepth, v)
}

// DecodeBencodeDict decodes the bencoded dict at the start of b into v and returns the number of
// bytes it used (ut_metadata data messages carry raw bytes after the dict). It never panics.
func DecodeBencodeDict(b []byte, v any) (int, error) {
	if len(b) == 0 || b[0] != 'd' {
		return 0, errors.New("bencode: not a dict")
	}
	return decodeBencode(b, v)
}

// DecodeExtHandshake parses a BEP 10 extended handshake payload.
func DecodeExtHandshake(b []byte) (ExtHandshake, error) {
	var raw map[string]bencode.Bytes
	n, err := DecodeBencodeDict(b, &raw)
	if err != nil {
		return ExtHandshake{}, fmt.Errorf("%w: %w", ErrBadExtHandshake, err)
	}
	if n != len(b) {
		return ExtHandshake{}, fmt.Errorf("%w: %d trailing bytes", ErrBadExtHandshake, len(b)-n)
	}
	var h ExtHandshake
	h.M = map[string]int{}
	if mb := raw["m"]; len(mb) > 0 {
		var m map[string]bencode.Bytes
		if _, err := DecodeBencodeDict(mb, &m); err == nil {
			for k, v := range m {
				if id, ok := rawInt(v); ok && id >= 0 && id <= maxExtID {
					h.M[k] = int(id)
				}
			}
		}
	}
	h.MetadataSize = rawNonNegInt(raw["metadata_size"])
	h.Port = rawNonNegInt(raw["p"])
	if h.Port > 65535 {
		h.Port = 0
	}
	h.Reqq = rawNonNegInt(raw["reqq"])
	if s, ok := rawString(raw["v"]); ok {
		h.V = s
	}
	if s, ok := rawString(raw["yourip"]); ok && (len(s) == 4 || len(s) == 16) {
		h.YourIP = []byte(s)
	}
	return h, nil
}

// rawInt decodes a raw bencoded integer; ok is false for any other type.
func rawInt(b bencode.Bytes) (int64, bool) {
	if len(b) == 0 || b[0] != 'i' {
		return 0, false
	}
	var v int64
	if _, err := decodeBencode(b, &v); err != nil {
		return 0, false
	}
	return v, true
}

func rawNonNegInt(b bencode.Bytes) int {
	v, ok := rawInt(b)
	if !ok || v < 0 || v > 1<<40 {
		return 0
	}
	return int(v)
}

func rawString(b bencode.Bytes) (string, bool) {
	if len(b) == 0 || b[0] < '0' || b[0] > '9' {
		return "", false
	}
	var s string
	if _, err := decodeBencode(b, &s); err != nil {
		return "", false
	}
	return s, true
}
