package merkle

import (
	"fmt"
	"math/bits"
)

// Tree is a file's merkle tree from its piece layer up to the root: 64 bytes per piece, enough to
// answer hash requests (BEP 52) for the piece layer and above without the data. Requests below
// the piece layer need the leaves of the pieces they touch, which the caller computes from the
// data (LeafHashes of the piece's bytes) when asked.
type Tree struct {
	fileLength int64
	pieces     int64    // real pieces; the piece layer is padded past them
	pieceLayer int      // index of the piece layer (0 = leaves)
	layers     [][]Hash // layers[k] is layer pieceLayer+k, padded to its full width; the last is the root
}

// NewTree builds the tree above a file's piece layer: for a file longer than one piece, its
// piece layer (as the .torrent or verified hashes messages give it); for a file of one piece,
// the single hash of that piece, its root. The layer must be complete (one hash per piece).
func NewTree(pieceLayer []Hash, pieceLength, fileLength int64) (*Tree, error) {
	if pieceLength < BlockSize || pieceLength&(pieceLength-1) != 0 || fileLength <= 0 {
		return nil, fmt.Errorf("merkle: NewTree: piece length %d, file length %d", pieceLength, fileLength)
	}
	pieces := (fileLength + pieceLength - 1) / pieceLength
	if int64(len(pieceLayer)) != pieces {
		return nil, fmt.Errorf("merkle: NewTree: %d piece hashes for %d pieces", len(pieceLayer), pieces)
	}
	width := PieceWidth(pieceLength, fileLength)
	t := &Tree{fileLength: fileLength, pieces: pieces, pieceLayer: bits.TrailingZeros64(uint64(width))}
	layer := make([]Hash, NumLeaves(fileLength)/width)
	pad := PadHash(width)
	for i := range layer {
		if i < len(pieceLayer) {
			layer[i] = pieceLayer[i]
		} else {
			layer[i] = pad
		}
	}
	t.layers = append(t.layers, layer)
	for len(layer) > 1 {
		next := make([]Hash, len(layer)/2)
		for i := range next {
			next[i] = Pair(layer[2*i], layer[2*i+1])
		}
		t.layers = append(t.layers, next)
		layer = next
	}
	return t, nil
}

// Root returns the file's root.
func (t *Tree) Root() Hash { return t.layers[len(t.layers)-1][0] }

// Answer returns the hashes of a BEP 52 hashes message answering r: the Length hashes of the base
// layer from Index, then the uncles Check counts. For a base layer below the piece layer, leaves
// returns the leaf hashes of piece i (fewer than the piece's width for the file's last piece;
// the rest are zero), and is called once for each piece the answer touches. An error means the
// request is to be rejected (hash reject).
func (t *Tree) Answer(r HashRequest, leaves func(piece int64) ([]Hash, error)) ([]Hash, error) {
	if _, err := r.Check(t.fileLength); err != nil {
		return nil, err
	}
	var cached struct {
		piece int64
		sub   [][]Hash // the piece's subtree, leaves first
	}
	cached.piece = -1
	node := func(layer int, index int64) (Hash, error) {
		if layer >= t.pieceLayer {
			return t.layers[layer-t.pieceLayer][index], nil
		}
		piece := (index << layer) >> t.pieceLayer
		if piece >= t.pieces {
			return padHashes[layer], nil
		}
		if piece != cached.piece {
			if leaves == nil {
				return Hash{}, fmt.Errorf("%w: hashes below the piece layer need the data", ErrBadRequest)
			}
			ls, err := leaves(piece)
			if err != nil {
				return Hash{}, err
			}
			width := int64(1) << t.pieceLayer
			if int64(len(ls)) > width {
				return Hash{}, fmt.Errorf("merkle: %d leaves for a piece of %d", len(ls), width)
			}
			sub := [][]Hash{make([]Hash, width)}
			copy(sub[0], ls)
			for l := sub[0]; len(l) > 1; {
				next := make([]Hash, len(l)/2)
				for i := range next {
					next[i] = Pair(l[2*i], l[2*i+1])
				}
				sub = append(sub, next)
				l = next
			}
			if sub[len(sub)-1][0] != t.layers[0][piece] {
				return Hash{}, fmt.Errorf("%w: the leaves of piece %d do not hash to its piece hash", ErrBadProof, piece)
			}
			cached.piece, cached.sub = piece, sub
		}
		return cached.sub[layer][index-(piece<<(t.pieceLayer-layer))], nil
	}
	out := make([]Hash, 0, int(r.Length)+r.uncles())
	for i := range r.Length {
		h, err := node(r.BaseLayer, r.Index+i)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	layer, index := r.BaseLayer+bits.TrailingZeros64(uint64(r.Length)), r.Index/r.Length
	for range r.uncles() {
		h, err := node(layer, index^1)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
		layer, index = layer+1, index>>1
	}
	return out, nil
}
