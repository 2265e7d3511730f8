package picker

import (
	"errors"
	"fmt"
)

// ErrBadBitfield is wrapped by ParseBitfield errors.
var ErrBadBitfield = errors.New("bad bitfield")

// Bitfield is a set of piece indexes in the wire order of BEP 3: piece 0 is the high bit of
// byte 0.
type Bitfield struct {
	b []byte
	n int
}

// NewBitfield returns an empty set for n pieces.
func NewBitfield(n int) Bitfield { return Bitfield{b: make([]byte, (n+7)/8), n: n} }

// ParseBitfield checks a bitfield received for a torrent of n pieces: exactly ceil(n/8) bytes
// and the spare bits at the end clear, as BEP 3 requires. The bytes are copied.
func ParseBitfield(p []byte, n int) (Bitfield, error) {
	if n < 0 || len(p) != (n+7)/8 {
		return Bitfield{}, fmt.Errorf("%w: %d bytes for %d pieces", ErrBadBitfield, len(p), n)
	}
	if n%8 != 0 && p[len(p)-1]&(0xff>>(n%8)) != 0 {
		return Bitfield{}, fmt.Errorf("%w: spare bits set", ErrBadBitfield)
	}
	return Bitfield{b: append([]byte(nil), p...), n: n}, nil
}

// Len returns the number of pieces the set is for.
func (f Bitfield) Len() int { return f.n }

// Has reports whether i is in the set; out-of-range indexes are not.
func (f Bitfield) Has(i int) bool {
	return i >= 0 && i < f.n && f.b[i>>3]&(0x80>>(i&7)) != 0
}

// Set adds i (ignored when out of range).
func (f Bitfield) Set(i int) {
	if i >= 0 && i < f.n {
		f.b[i>>3] |= 0x80 >> (i & 7)
	}
}

// Clear removes i.
func (f Bitfield) Clear(i int) {
	if i >= 0 && i < f.n {
		f.b[i>>3] &^= 0x80 >> (i & 7)
	}
}

// SetAll adds every piece.
func (f Bitfield) SetAll() {
	for i := range f.n {
		f.Set(i)
	}
}

// Count returns the number of pieces in the set.
func (f Bitfield) Count() int {
	c := 0
	for i := range f.n {
		if f.Has(i) {
			c++
		}
	}
	return c
}

// Bytes returns the wire form (shared, do not modify).
func (f Bitfield) Bytes() []byte { return f.b }

// Clone returns an independent copy.
func (f Bitfield) Clone() Bitfield { return Bitfield{b: append([]byte(nil), f.b...), n: f.n} }
