// Package merkle implements the SHA-256 merkle trees of BitTorrent v2 (BEP 52).
//
// Vocabulary. Each file of a v2 torrent has its own tree. A "block" is 16 KiB of the file (the last
// may be shorter); a "leaf" is the SHA-256 of one block, hashed as it is (a short last block is not
// padded with bytes). The leaf layer is padded up to a power of two with zero hashes (32 zero bytes,
// not the hash of a zero block); each node above is SHA-256(left || right). The file's "pieces root"
// is the top of that tree. Layer 0 is the leaf layer; the "piece layer" is the layer whose nodes each
// cover one piece (log2(piece length / 16 KiB) layers up). A .torrent carries, for each file longer
// than one piece, that file's piece layer without padding; the pad hash for a piece-layer position
// is the root of a subtree of piece-size all-zero leaves (PadHash).
//
// Flow for a downloader: the info dict gives each file's root; piece layers come from the .torrent or
// from peers (BEP 52 hash request / hashes messages, checked with VerifyHashes against the root);
// each piece is then checked against its piece-layer hash (PieceHash), and when a piece fails, the
// leaf hashes of that piece (a hashes message with base layer 0, checked against the piece hash)
// say which 16 KiB blocks were bad (BadBlocks), so only those are fetched again.
//
// Memory is bounded: Builder keeps one piece's leaf hashes plus the piece layer (32 bytes per
// piece), never the whole tree.
package merkle

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
)

// BlockSize is the size of a leaf's block: 16 KiB.
const BlockSize = 16 << 10

// HashSize is the size of a SHA-256 hash.
const HashSize = sha256.Size

// Hash is a node of a merkle tree.
type Hash = [HashSize]byte

// ErrBadProof: hashes do not lead to the root or node they were checked against.
var ErrBadProof = errors.New("merkle: hashes do not match")

// ErrBadRequest: a hash request's geometry (layer, index, length, proof layers) does not fit the tree.
var ErrBadRequest = errors.New("merkle: bad hash request")

// padHashes[k] is the root of a subtree of 2^k zero leaves.
var padHashes [64]Hash

func init() {
	for k := 1; k < len(padHashes); k++ {
		padHashes[k] = Pair(padHashes[k-1], padHashes[k-1])
	}
}

// PadHash returns the root of a subtree of n zero leaves; n must be a power of two (1 gives the zero
// hash, the leaf padding).
func PadHash(n int64) Hash {
	if n <= 0 || n&(n-1) != 0 {
		panic(fmt.Sprintf("merkle: PadHash(%d): not a power of two", n))
	}
	return padHashes[bits.TrailingZeros64(uint64(n))]
}

// Pair returns SHA-256(left || right), the parent of two nodes.
func Pair(left, right Hash) Hash {
	var b [2 * HashSize]byte
	copy(b[:], left[:])
	copy(b[HashSize:], right[:])
	return sha256.Sum256(b[:])
}

// NextPow2 returns the smallest power of two >= n (1 for n <= 1).
func NextPow2(n int64) int64 {
	if n <= 1 {
		return 1
	}
	return 1 << (64 - bits.LeadingZeros64(uint64(n-1)))
}

// NumBlocks returns the number of 16 KiB blocks of a file of length bytes.
func NumBlocks(length int64) int64 { return (length + BlockSize - 1) / BlockSize }

// NumLeaves returns the width of a file's leaf layer: its block count rounded up to a power of two.
func NumLeaves(length int64) int64 { return NextPow2(NumBlocks(length)) }

// NumLayers returns the number of layers of a tree with numLeaves leaves (a power of two), root included.
func NumLayers(numLeaves int64) int { return bits.TrailingZeros64(uint64(numLeaves)) + 1 }

// PieceWidth returns how many leaves the hash of one piece of a file covers: the piece's blocks, or,
// for a file of at most one piece, the file's whole (padded) leaf layer, whose top is the root.
func PieceWidth(pieceLength, fileLength int64) int64 {
	return min(pieceLength/BlockSize, NumLeaves(fileLength))
}

// Root returns the root of the tree whose layer is nodes, padded with pad up to width nodes (a power
// of two >= len(nodes)). It works in place on a copy no larger than nodes.
func Root(nodes []Hash, pad Hash, width int64) Hash {
	if width <= 0 || width&(width-1) != 0 || int64(len(nodes)) > width {
		panic(fmt.Sprintf("merkle: Root of %d nodes in width %d", len(nodes), width))
	}
	if len(nodes) == 0 {
		return rootOfPad(pad, width)
	}
	layer := append([]Hash(nil), nodes...)
	for ; width > 1; width /= 2 {
		n := len(layer)
		for i := 0; i < n; i += 2 {
			if i+1 < n {
				layer[i/2] = Pair(layer[i], layer[i+1])
			} else {
				layer[i/2] = Pair(layer[i], pad)
			}
		}
		layer = layer[:(n+1)/2]
		pad = Pair(pad, pad)
	}
	return layer[0]
}

func rootOfPad(pad Hash, width int64) Hash {
	for ; width > 1; width /= 2 {
		pad = Pair(pad, pad)
	}
	return pad
}

// LeafHashes appends the leaf hashes of data (consecutive blocks, the last possibly short) to dst.
func LeafHashes(dst []Hash, data []byte) []Hash {
	for off := 0; off < len(data); off += BlockSize {
		dst = append(dst, sha256.Sum256(data[off:min(off+BlockSize, len(data))]))
	}
	return dst
}

// PieceHash returns the hash of one piece of a file, as the piece layer (or, for a file of one
// piece, the root) holds it: data is the piece's bytes inside the file (shorter than pieceLength
// only for the file's last piece), width is PieceWidth(pieceLength, fileLength). It allocates
// nothing.
func PieceHash(data []byte, width int64) Hash {
	var a acc
	for off := 0; off < len(data); off += BlockSize {
		a.push(sha256.Sum256(data[off:min(off+BlockSize, len(data))]))
	}
	return a.root(width)
}

// acc computes the root of a layer fed one node at a time, holding one node per level: a binary
// counter whose set bits are complete subtrees waiting for their right sibling.
type acc struct {
	st  [64]Hash
	cnt uint64
}

func (a *acc) push(h Hash) {
	k := 0
	for ; a.cnt&(1<<k) != 0; k++ {
		h = Pair(a.st[k], h)
	}
	a.st[k] = h
	a.cnt++
}

// root pads the leaves pushed so far with zero leaves up to width (a power of two >= the count)
// and returns the top.
func (a *acc) root(width int64) Hash {
	levels := bits.TrailingZeros64(uint64(width))
	if a.cnt == uint64(width) {
		return a.st[levels]
	}
	var cur Hash
	have := false
	for k := 0; k < levels; k++ {
		switch {
		case a.cnt&(1<<k) != 0 && have:
			cur = Pair(a.st[k], cur)
		case a.cnt&(1<<k) != 0:
			cur, have = Pair(a.st[k], padHashes[k]), true
		case have:
			cur = Pair(cur, padHashes[k])
		}
	}
	if !have {
		return padHashes[levels]
	}
	return cur
}

// RootFromPieceLayer checks a file's piece layer (concatenated hashes, as in a .torrent's "piece
// layers") for shape and returns the root it implies, padding with PadHash(piece blocks). The layer
// exists only for files longer than one piece.
func RootFromPieceLayer(layer []byte, pieceLength, fileLength int64) (Hash, error) {
	if pieceLength < BlockSize || pieceLength&(pieceLength-1) != 0 {
		return Hash{}, fmt.Errorf("merkle: piece length %d is not a power of two >= %d", pieceLength, BlockSize)
	}
	if fileLength <= pieceLength {
		return Hash{}, fmt.Errorf("merkle: a file of %d bytes has no piece layer at piece length %d", fileLength, pieceLength)
	}
	pieces := (fileLength + pieceLength - 1) / pieceLength
	if int64(len(layer)) != pieces*HashSize {
		return Hash{}, fmt.Errorf("merkle: piece layer is %d bytes, want %d (%d pieces)", len(layer), pieces*HashSize, pieces)
	}
	nodes := make([]Hash, pieces)
	for i := range nodes {
		copy(nodes[i][:], layer[i*HashSize:])
	}
	perPiece := pieceLength / BlockSize
	return Root(nodes, PadHash(perPiece), NumLeaves(fileLength)/perPiece), nil
}

// BadBlocks compares the blocks of piece (the piece's bytes) with its verified leaf hashes and
// returns the indexes, within the piece, of blocks that do not match. A leaf missing from leaves
// counts as a mismatch.
func BadBlocks(piece []byte, leaves []Hash) []int {
	var bad []int
	for i, off := 0, 0; off < len(piece); i, off = i+1, off+BlockSize {
		if i >= len(leaves) || sha256.Sum256(piece[off:min(off+BlockSize, len(piece))]) != leaves[i] {
			bad = append(bad, i)
		}
	}
	return bad
}

// VerifyBlock checks one block against a known node above it (a piece-layer hash or the root): leaf
// index is the block's index under that node, and proof holds the uncle hashes from the leaf layer
// up (len(proof) layers).
func VerifyBlock(block []byte, index int64, proof []Hash, node Hash) bool {
	if len(block) > BlockSize || index < 0 || len(proof) < 63 && index>>len(proof) != 0 {
		return false
	}
	h := sha256.Sum256(block)
	for _, u := range proof {
		if index&1 == 0 {
			h = Pair(h, u)
		} else {
			h = Pair(u, h)
		}
		index >>= 1
	}
	return h == node
}
