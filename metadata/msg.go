package metadata

import (
	"errors"
	"fmt"
	"strconv"
)

// BEP 9 msg_type values.
const (
	msgRequest = 0
	msgData    = 1
	msgReject  = 2
)

// utMsg is one ut_metadata message: the bencoded dict and, for data, the bytes after it.
type utMsg struct {
	Type      int
	Piece     int
	TotalSize int    // data only
	Data      []byte // data only; aliases the payload it was parsed from
}

// maxPieces bounds piece indexes we parse: far above any accepted metadata size.
const maxPieces = 1 << 20

// parseUTMsg parses an extended message payload carrying ut_metadata. The dict is scanned by
// hand (it is on the hot path of every piece): keys other than msg_type, piece and total_size are
// skipped whatever their type.
func parseUTMsg(p []byte) (utMsg, error) {
	m := utMsg{Type: -1, Piece: -1}
	n, err := scanDict(p, func(key, val []byte) bool {
		var field *int
		var lo, hi int64
		switch string(key) {
		case "msg_type":
			field, lo, hi = &m.Type, 0, 1<<20
		case "piece":
			field, lo, hi = &m.Piece, 0, maxPieces
		case "total_size":
			field, lo, hi = &m.TotalSize, 1, 1<<40
		default:
			return true
		}
		v, ok := bencodeInt(val, lo, hi)
		*field = v
		return ok
	})
	if err != nil {
		return utMsg{}, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if m.Type < 0 {
		return utMsg{}, fmt.Errorf("%w: msg_type missing or invalid", ErrBadMessage)
	}
	if m.Piece < 0 {
		return utMsg{}, fmt.Errorf("%w: piece missing or invalid", ErrBadMessage)
	}
	switch m.Type {
	case msgData:
		if m.TotalSize <= 0 {
			return utMsg{}, fmt.Errorf("%w: total_size missing or invalid", ErrBadMessage)
		}
		m.Data = p[n:]
	default:
		m.TotalSize = 0
		if n != len(p) {
			return utMsg{}, fmt.Errorf("%w: %d trailing bytes after msg_type %d", ErrBadMessage, len(p)-n, m.Type)
		}
	}
	return m, nil
}

var (
	errSyntax   = errors.New("bencode syntax error")
	errTooDeep  = errors.New("bencode nested too deeply")
	errBadValue = errors.New("bad value for a ut_metadata key")
)

// maxDepth bounds nesting inside values we skip.
const maxDepth = 32

// scanDict walks the bencoded dict at the start of b, calling fn with each key and the raw bytes
// of its value, and returns the dict's length. fn returning false is an error.
func scanDict(b []byte, fn func(key, val []byte) bool) (int, error) {
	if len(b) == 0 || b[0] != 'd' {
		return 0, errSyntax
	}
	i := 1
	for {
		if i >= len(b) {
			return 0, errSyntax
		}
		if b[i] == 'e' {
			return i + 1, nil
		}
		ks, ke, err := scanString(b, i)
		if err != nil {
			return 0, err
		}
		ve, err := skipValue(b, ke, 0)
		if err != nil {
			return 0, err
		}
		if !fn(b[ks:ke], b[ke:ve]) {
			return 0, errBadValue
		}
		i = ve
	}
}

// scanString parses a byte string at b[i:] and returns the bounds of its content.
func scanString(b []byte, i int) (start, end int, err error) {
	j := i
	n := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		if j > i && b[i] == '0' || n > len(b) {
			return 0, 0, errSyntax // leading zero, or longer than the input anyway
		}
		n = n*10 + int(b[j]-'0')
		j++
	}
	if j == i || j >= len(b) || b[j] != ':' {
		return 0, 0, errSyntax
	}
	j++
	if n > len(b)-j {
		return 0, 0, errSyntax
	}
	return j, j + n, nil
}

// skipValue returns the end of the bencoded value at b[i:].
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch c := b[i]; {
	case c == 'i':
		j := i + 1
		for j < len(b) && b[j] != 'e' {
			j++
		}
		if j >= len(b) {
			return 0, errSyntax
		}
		if _, ok := parseInt(b[i+1 : j]); !ok {
			return 0, errSyntax
		}
		return j + 1, nil
	case c >= '0' && c <= '9':
		_, end, err := scanString(b, i)
		return end, err
	case c == 'l' || c == 'd':
		if depth >= maxDepth {
			return 0, errTooDeep
		}
		j := i + 1
		for {
			if j >= len(b) {
				return 0, errSyntax
			}
			if b[j] == 'e' {
				return j + 1, nil
			}
			if c == 'd' {
				_, ke, err := scanString(b, j)
				if err != nil {
					return 0, err
				}
				j = ke
			}
			var err error
			if j, err = skipValue(b, j, depth+1); err != nil {
				return 0, err
			}
		}
	}
	return 0, errSyntax
}

// parseInt parses the digits of a bencoded integer, refusing what bencode forbids (leading zeros,
// "-0", empty).
func parseInt(s []byte) (int64, bool) {
	v, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil || strconv.FormatInt(v, 10) != string(s) {
		return 0, false
	}
	return v, true
}

// bencodeInt decodes a raw bencoded integer within [lo, hi].
func bencodeInt(b []byte, lo, hi int64) (int, bool) {
	if len(b) < 3 || b[0] != 'i' || b[len(b)-1] != 'e' {
		return 0, false
	}
	v, ok := parseInt(b[1 : len(b)-1])
	if !ok || v < lo || v > hi {
		return 0, false
	}
	return int(v), true
}

// appendUTMsg appends the payload of m (dict, then Data for data messages).
func appendUTMsg(dst []byte, m utMsg) []byte {
	dst = append(dst, "d8:msg_typei"...)
	dst = strconv.AppendInt(dst, int64(m.Type), 10)
	dst = append(dst, "e5:piecei"...)
	dst = strconv.AppendInt(dst, int64(m.Piece), 10)
	dst = append(dst, 'e')
	if m.Type == msgData {
		dst = append(dst, "10:total_sizei"...)
		dst = strconv.AppendInt(dst, int64(m.TotalSize), 10)
		dst = append(dst, 'e')
	}
	dst = append(dst, 'e')
	if m.Type == msgData {
		dst = append(dst, m.Data...)
	}
	return dst
}

// numPieces is how many BEP 9 pieces a metadata of size bytes has.
func numPieces(size int) int { return (size + PieceSize - 1) / PieceSize }

// pieceLen is the length of piece i of a metadata of size bytes.
func pieceLen(size, i int) int {
	if i == numPieces(size)-1 {
		return size - i*PieceSize
	}
	return PieceSize
}
