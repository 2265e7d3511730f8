package metadata

import (
	"fmt"
	"strconv"

	"github.com/magnetget/magnetget/internal/bencscan"
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
	if len(p) == 0 || p[0] != 'd' {
		return utMsg{}, fmt.Errorf("%w: not a dict", ErrBadMessage)
	}
	bad := false
	n, err := bencscan.Dict(p, 0, maxDepth, func(key, val []byte) bool {
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
		*field, bad = v, !ok
		return ok
	})
	if err != nil {
		return utMsg{}, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if bad {
		return utMsg{}, fmt.Errorf("%w: bad value for a ut_metadata key", ErrBadMessage)
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

// maxDepth bounds nesting inside values we skip.
const maxDepth = 32

// bencodeInt decodes a raw bencoded integer within [lo, hi].
func bencodeInt(b []byte, lo, hi int64) (int, bool) {
	v, ok := bencscan.Int(b)
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
