package merkle

import (
	"encoding/binary"
	"fmt"
)

// BEP 52 message IDs on the peer wire.
const (
	MsgHashRequest = 21
	MsgHashes      = 22
	MsgHashReject  = 23
)

// RequestSize is the payload of a hash request or hash reject after its ID byte: the pieces root
// and four 32-bit fields. A hashes message adds 32 bytes per hash.
const RequestSize = HashSize + 16

// MaxHashesPayload bounds a hashes message's payload: a full request (MaxRequestLength base
// hashes) with the uncles of the deepest tree a 32-bit index allows.
const MaxHashesPayload = RequestSize + (MaxRequestLength+64)*HashSize

// AppendRequest appends the payload (after the ID byte) of a hash request or hash reject for the
// file with the given root.
func AppendRequest(dst []byte, root Hash, r HashRequest) []byte {
	dst = append(dst, root[:]...)
	for _, v := range []int64{int64(r.BaseLayer), r.Index, r.Length, int64(r.ProofLayers)} {
		dst = binary.BigEndian.AppendUint32(dst, uint32(v))
	}
	return dst
}

// ParseRequest parses the payload of a hash request or hash reject. The fields are not checked
// against any tree: HashRequest.Check does that.
func ParseRequest(p []byte) (root Hash, r HashRequest, err error) {
	if len(p) != RequestSize {
		return root, r, fmt.Errorf("merkle: hash request of %d bytes, want %d", len(p), RequestSize)
	}
	return parseHeader(p)
}

func parseHeader(p []byte) (root Hash, r HashRequest, err error) {
	copy(root[:], p)
	f := func(i int) uint32 { return binary.BigEndian.Uint32(p[HashSize+4*i:]) }
	// Layers beyond 63 mean nothing in any tree; keep them out of int arithmetic.
	if f(0) > 63 || f(3) > 63 {
		return root, r, fmt.Errorf("%w: layer %d, proof layers %d", ErrBadRequest, f(0), f(3))
	}
	r = HashRequest{BaseLayer: int(f(0)), Index: int64(f(1)), Length: int64(f(2)), ProofLayers: int(f(3))}
	return root, r, nil
}

// AppendHashes appends the payload (after the ID byte) of a hashes message answering r.
func AppendHashes(dst []byte, root Hash, r HashRequest, hashes []Hash) []byte {
	dst = AppendRequest(dst, root, r)
	for _, h := range hashes {
		dst = append(dst, h[:]...)
	}
	return dst
}

// ParseHashesMsg parses the payload of a hashes message: its request fields and the hashes that
// follow (at most MaxHashesPayload bytes in all). VerifyHashes checks them.
func ParseHashesMsg(p []byte) (root Hash, r HashRequest, hashes []Hash, err error) {
	if len(p) < RequestSize || len(p) > MaxHashesPayload || (len(p)-RequestSize)%HashSize != 0 {
		return root, r, nil, fmt.Errorf("merkle: hashes message of %d bytes", len(p))
	}
	if root, r, err = parseHeader(p); err != nil {
		return root, r, nil, err
	}
	hashes, err = ParseHashes(p[RequestSize:])
	return root, r, hashes, err
}
