package merkle

import (
	"fmt"
	"math/bits"
)

// MaxRequestLength bounds the base-layer hashes of one hash request, as libtorrent bounds it (8192
// leaves: a 128 MiB piece).
const MaxRequestLength = 8192

// HashRequest is the geometry shared by BEP 52's hash request, hashes and hash reject messages (the
// pieces root naming the file travels beside it).
type HashRequest struct {
	BaseLayer   int   // lowest layer requested; 0 is the leaf layer
	Index       int64 // first requested hash within BaseLayer; a multiple of Length
	Length      int64 // hashes requested from BaseLayer: a power of two, 2..MaxRequestLength
	ProofLayers int   // ancestor layers, counted from BaseLayer, whose uncles the answer carries
}

// Check validates r against the tree of a file of fileLength bytes, as libtorrent validates requests
// it answers, and returns how many hashes a full answer holds (Length base hashes then the uncles).
func (r HashRequest) Check(fileLength int64) (int, error) {
	bad := func(why string) (int, error) {
		return 0, fmt.Errorf("%w: %s (base layer %d, index %d, length %d, proof layers %d)",
			ErrBadRequest, why, r.BaseLayer, r.Index, r.Length, r.ProofLayers)
	}
	if fileLength <= BlockSize {
		return bad("the file's root is its only leaf")
	}
	treeLayers := NumLayers(NumLeaves(fileLength)) - 1 // layers below the root
	switch {
	case r.Length < 2 || r.Length > MaxRequestLength || r.Length&(r.Length-1) != 0:
		return bad("length is not a power of two in 2..8192")
	case r.BaseLayer < 0 || r.BaseLayer >= treeLayers:
		return bad("no such layer")
	case r.Index < 0 || r.Index%r.Length != 0:
		return bad("index is not a multiple of length")
	case r.Index > NumLeaves(fileLength)>>r.BaseLayer-r.Length:
		return bad("range past the end of the layer")
	case r.ProofLayers < 0 || r.ProofLayers >= treeLayers-r.BaseLayer:
		return bad("more proof layers than the tree has")
	}
	return int(r.Length) + r.uncles(), nil
}

// uncles is the number of proof hashes in an answer: one per requested ancestor layer above those
// the base hashes themselves give (libtorrent's merkle_tree::get_hashes).
func (r HashRequest) uncles() int {
	return max(0, r.ProofLayers-bits.TrailingZeros64(uint64(r.Length))+1)
}

// Top folds the hashes of an answer to r (base hashes then uncles, as Check counts them) into the
// node they imply: its layer (0 = leaves), its index in that layer and its hash. r must have passed
// Check and hashes must have its length.
func (r HashRequest) Top(hashes []Hash) (layer int, index int64, h Hash) {
	n := int(r.Length)
	h = Root(hashes[:n], Hash{}, r.Length) // a full subtree: no padding is used
	layer = r.BaseLayer + bits.TrailingZeros64(uint64(r.Length))
	index = r.Index / r.Length
	for _, u := range hashes[n:] {
		if index&1 == 0 {
			h = Pair(h, u)
		} else {
			h = Pair(u, h)
		}
		index >>= 1
		layer++
	}
	return layer, index, h
}

// VerifyHashes checks an answer to r (a hashes message: base hashes then uncles) for the file with
// the given root and length. When the uncles reach the root, the root must match; when they stop
// below it, the node they reach must equal known(layer, index), a node the caller already trusts
// (for instance from a verified piece layer; ok false means it knows none, and the answer is
// refused).
func VerifyHashes(root Hash, fileLength int64, r HashRequest, hashes []Hash, known func(layer int, index int64) (Hash, bool)) error {
	want, err := r.Check(fileLength)
	if err != nil {
		return err
	}
	if len(hashes) != want {
		return fmt.Errorf("%w: %d hashes, want %d", ErrBadProof, len(hashes), want)
	}
	layer, index, h := r.Top(hashes)
	if layer == NumLayers(NumLeaves(fileLength))-1 {
		if h != root {
			return fmt.Errorf("%w: the file's root", ErrBadProof)
		}
		return nil
	}
	if known == nil {
		return fmt.Errorf("%w: the proof stops at layer %d, below the root, and no node there is known", ErrBadProof, layer)
	}
	k, ok := known(layer, index)
	if !ok {
		return fmt.Errorf("%w: the proof stops at layer %d, below the root, and node %d there is not known", ErrBadProof, layer, index)
	}
	if h != k {
		return fmt.Errorf("%w: node %d of layer %d", ErrBadProof, index, layer)
	}
	return nil
}

// ParseHashes splits concatenated 32-byte hashes (a hashes message's tail, a piece layer). It
// allocates exactly len(b)/32 hashes.
func ParseHashes(b []byte) ([]Hash, error) {
	if len(b)%HashSize != 0 {
		return nil, fmt.Errorf("merkle: %d bytes of hashes is not a multiple of %d", len(b), HashSize)
	}
	out := make([]Hash, len(b)/HashSize)
	for i := range out {
		copy(out[i][:], b[i*HashSize:])
	}
	return out, nil
}
