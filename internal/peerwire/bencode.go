package peerwire

import "github.com/magnetget/magnetget/internal/bencscan"

// MaxBencodeDepth is how deeply lists and dicts may nest in the bencoded messages we decode
// (extended handshakes, ut_metadata, ut_pex: two levels at most in practice). The decoder we
// use recurses and allocates a few hundred bytes per level, so without a cap a 128 KiB message
// of "dddd..." makes it allocate for minutes and run out of memory.
const MaxBencodeDepth = 8

// scanBencode checks that b starts with one well-formed bencoded value nested at most maxDepth
// deep and returns its length: bencscan, the project's one allocation-free scanner, stands in
// front of a decoder that checks neither.
func scanBencode(b []byte, maxDepth int) (int, error) { return bencscan.Scan(b, 0, maxDepth) }
