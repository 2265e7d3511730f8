package peerwire

// MaxBencodeDepth is how deeply lists and dicts may nest in the bencoded messages we decode
// (extended handshakes, ut_metadata, ut_pex: two levels at most in practice). The decoder we
// use recurses and allocates a few hundred bytes per level, so without a cap a 128 KiB message
// of "dddd..." makes it allocate for minutes and run out of memory.
const MaxBencodeDepth = 8
