// Package bencscan checks bencoded bytes without decoding them: every string length against the
// bytes that remain, integer syntax, dict keys being strings, and nesting depth. It allocates
// nothing for inputs nested up to 32 levels, so a hostile length prefix ("134217000:") costs a
// comparison, not a buffer. Callers scan first and decode second: once Scan accepts b, no string
// in b can be longer than len(b), whatever decoder runs next.
package bencscan

import (
	"errors"
	"fmt"
)

// ErrSyntax is wrapped by every error this package returns.
var ErrSyntax = errors.New("bencode syntax error")

// SyntaxError says where and why a scan failed.
type SyntaxError struct {
	Offset int
	What   string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("bencode syntax error at offset %d: %s", e.Offset, e.What)
}

func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// frame is one open list or dict.
type frame struct {
	dict   bool
	keyNow bool // in a dict: the next value must be a key
}

// Scan checks the bencoded value starting at data[off], iteratively so that hostile nesting cannot
// exhaust the stack, and returns the offset just after it. Nesting deeper than maxDepth is an
// error.
func Scan(data []byte, off, maxDepth int) (int, error) {
	var fixed [32]frame
	stack := fixed[:0]
	bad := func(what string) error { return &SyntaxError{Offset: off, What: what} }
	for {
		if off >= len(data) {
			return off, bad("unexpected end of data")
		}
		c := data[off]
		if c == 'e' {
			if len(stack) == 0 {
				return off, bad("unexpected 'e'")
			}
			if top := stack[len(stack)-1]; top.dict && !top.keyNow {
				return off, bad("dict key without a value")
			}
			stack = stack[:len(stack)-1]
			off++
		} else {
			isKey := len(stack) > 0 && stack[len(stack)-1].dict && stack[len(stack)-1].keyNow
			if isKey && (c < '0' || c > '9') {
				return off, bad("dict key is not a string")
			}
			switch {
			case c == 'd' || c == 'l':
				if len(stack) >= maxDepth {
					return off, bad("nesting too deep")
				}
				if len(stack) > 0 {
					flip(&stack[len(stack)-1])
				}
				stack = append(stack, frame{dict: c == 'd', keyNow: true})
				off++
				continue
			case c == 'i':
				end := off + 1
				for end < len(data) && data[end] != 'e' {
					end++
				}
				if end >= len(data) {
					return off, bad("unterminated integer")
				}
				if !ValidInt(data[off+1 : end]) {
					return off, bad("bad integer")
				}
				off = end + 1
			case c >= '0' && c <= '9':
				_, end, err := String(data, off)
				if err != nil {
					return off, err
				}
				off = end
			default:
				return off, bad("unexpected byte")
			}
			if len(stack) > 0 {
				flip(&stack[len(stack)-1])
			}
		}
		if len(stack) == 0 {
			return off, nil
		}
	}
}

// flip alternates a dict frame between expecting a key and a value; lists are unaffected.
func flip(f *frame) {
	if f.dict {
		f.keyNow = !f.keyNow
	}
}

// String parses the byte string at data[off:] and returns the bounds of its content. Its length
// must fit in what remains of data.
func String(data []byte, off int) (start, end int, err error) {
	colon := off
	for colon < len(data) && data[colon] >= '0' && data[colon] <= '9' {
		colon++
	}
	if colon == off || colon >= len(data) || data[colon] != ':' {
		return 0, 0, &SyntaxError{Offset: off, What: "bad string length"}
	}
	digits := data[off:colon]
	if len(digits) > 1 && digits[0] == '0' {
		return 0, 0, &SyntaxError{Offset: off, What: "string length with leading zero"}
	}
	if len(digits) > 10 {
		return 0, 0, &SyntaxError{Offset: off, What: "string longer than the data"}
	}
	n := 0
	for _, d := range digits {
		n = n*10 + int(d-'0')
	}
	if n > len(data)-colon-1 {
		return 0, 0, &SyntaxError{Offset: off, What: "string longer than the data"}
	}
	return colon + 1, colon + 1 + n, nil
}

// Dict calls fn with each key and the raw bytes of its value in the dict at data[off:], in order,
// and returns the offset after the dict. fn returning false stops the walk early (with a nil
// error). Values are checked with Scan to maxDepth-1 levels.
func Dict(data []byte, off, maxDepth int, fn func(key, val []byte) bool) (int, error) {
	if off >= len(data) || data[off] != 'd' {
		return off, &SyntaxError{Offset: off, What: "not a dict"}
	}
	if maxDepth < 1 {
		return off, &SyntaxError{Offset: off, What: "nesting too deep"}
	}
	i := off + 1
	for {
		if i >= len(data) {
			return i, &SyntaxError{Offset: i, What: "unexpected end of data"}
		}
		if data[i] == 'e' {
			return i + 1, nil
		}
		ks, ke, err := String(data, i)
		if err != nil {
			return i, err
		}
		ve, err := Scan(data, ke, maxDepth-1)
		if err != nil {
			return ve, err
		}
		if !fn(data[ks:ke], data[ke:ve]) {
			return ve, nil
		}
		i = ve
	}
}

// ValidInt accepts the digits of a canonical bencode integer that fits in an int64: no leading
// zeros, no "-0", not empty.
func ValidInt(b []byte) bool {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 || (b[0] == '0' && (len(b) > 1 || neg)) {
		return false
	}
	for _, d := range b {
		if d < '0' || d > '9' {
			return false
		}
	}
	if len(b) == 19 && string(b) > "9223372036854775807" {
		return neg && string(b) == "9223372036854775808"
	}
	return true
}
