package merkle

import "crypto/sha256"

// Builder computes a file's root and piece layer from the file's bytes, written in order. It holds
// one partial block, one piece's worth of subtree state and the piece layer (32 bytes per piece),
// whatever the file's size.
type Builder struct {
	pieceLength int64
	perPiece    int64 // blocks per piece
	block       []byte
	piece       acc
	inPiece     int64 // bytes of the current piece hashed so far
	n           int64
	layer       []Hash
}

// NewBuilder returns a Builder for a torrent whose piece length is pieceLength (a power of two of at
// least BlockSize).
func NewBuilder(pieceLength int64) *Builder {
	if pieceLength < BlockSize || pieceLength&(pieceLength-1) != 0 {
		panic("merkle: NewBuilder: piece length is not a power of two >= 16 KiB")
	}
	return &Builder{pieceLength: pieceLength, perPiece: pieceLength / BlockSize}
}

// Write hashes p as the next bytes of the file. It never fails.
func (b *Builder) Write(p []byte) (int, error) {
	n := len(p)
	b.n += int64(n)
	if len(b.block) > 0 {
		k := min(BlockSize-len(b.block), len(p))
		b.block = append(b.block, p[:k]...)
		p = p[k:]
		if len(b.block) == BlockSize {
			b.leaf(sha256.Sum256(b.block), BlockSize)
			b.block = b.block[:0]
		}
	}
	for len(p) >= BlockSize {
		b.leaf(sha256.Sum256(p[:BlockSize]), BlockSize)
		p = p[BlockSize:]
	}
	if len(p) > 0 {
		if b.block == nil {
			b.block = make([]byte, 0, BlockSize)
		}
		b.block = append(b.block, p...)
	}
	return n, nil
}

func (b *Builder) leaf(h Hash, size int64) {
	b.piece.push(h)
	b.inPiece += size
	if b.inPiece == b.pieceLength {
		b.layer = append(b.layer, b.piece.root(b.perPiece))
		b.piece, b.inPiece = acc{}, 0
	}
}

// Len returns the number of bytes written.
func (b *Builder) Len() int64 { return b.n }

// Sum ends the file and returns its root and piece layer. The layer is nil for a file of at most
// one piece (the .torrent carries none; the root is that piece's hash); an empty file has no tree
// and gives the zero root. The Builder must not be written to afterwards.
func (b *Builder) Sum() (root Hash, layer []Hash) {
	if b.n == 0 {
		return Hash{}, nil
	}
	if len(b.block) > 0 {
		h := sha256.Sum256(b.block)
		b.piece.push(h)
		b.inPiece += int64(len(b.block))
		b.block = b.block[:0]
	}
	if b.inPiece > 0 {
		b.layer = append(b.layer, b.piece.root(PieceWidth(b.pieceLength, b.n)))
		b.piece, b.inPiece = acc{}, 0
	}
	if len(b.layer) == 1 {
		return b.layer[0], nil
	}
	return Root(b.layer, PadHash(b.perPiece), NumLeaves(b.n)/b.perPiece), b.layer
}

// LayerBytes concatenates hashes, as a .torrent's "piece layers" values are written.
func LayerBytes(layer []Hash) []byte {
	out := make([]byte, 0, len(layer)*HashSize)
	for _, h := range layer {
		out = append(out, h[:]...)
	}
	return out
}
