package peerwire

import (
	"errors"
	"fmt"
)

// MaxBencodeDepth is how deeply lists and dicts may nest in the bencoded messages we decode
// (extended handshakes, ut_metadata, ut_pex: two levels at most in practice). The decoder we
// use recurses and allocates a few hundred bytes per level, so without a cap a 128 KiB message
// of "dddd..." makes it allocate for minutes and run out of memory.
const MaxBencodeDepth = 8

var errBencode = errors.New("bencode")

// scanBencode checks that b starts with one well-formed bencoded value nested at most maxDepth
// deep and returns its length. It allocates nothing and runs in one pass, so it can stand in
// front of a decoder that does neither.
func scanBencode(b []byte, maxDepth int) (int, error) {
	depth := 0
	i := 0
	for {
		if i >= len(b) {
			return 0, fmt.Errorf("%w: truncated at byte %d", errBencode, i)
		}
		switch c := b[i]; {
		case c == 'i':
			j := i + 1
			if j < len(b) && b[j] == '-' {
				j++
			}
			start := j
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j == start || j >= len(b) || b[j] != 'e' {
				return 0, fmt.Errorf("%w: bad integer at byte %d", errBencode, i)
			}
			i = j + 1
		case c == 'l' || c == 'd':
			if depth++; depth > maxDepth {
				return 0, fmt.Errorf("%w: nested more than %d deep", errBencode, maxDepth)
			}
			i++
			continue
		case c == 'e':
			if depth == 0 {
				return 0, fmt.Errorf("%w: unexpected end at byte %d", errBencode, i)
			}
			depth--
			i++
		case c >= '0' && c <= '9':
			n, j := 0, i
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				n = n*10 + int(b[j]-'0')
				if n > len(b) {
					return 0, fmt.Errorf("%w: string longer than the message at byte %d", errBencode, i)
				}
				j++
			}
			if j >= len(b) || b[j] != ':' || len(b)-(j+1) < n {
				return 0, fmt.Errorf("%w: bad string at byte %d", errBencode, i)
			}
			i = j + 1 + n
		default:
			return 0, fmt.Errorf("%w: unexpected byte %q at %d", errBencode, c, i)
		}
		if depth == 0 {
			return i, nil
		}
	}
}
