package merkle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) Hash {
	t.Helper()
	var h Hash
	if n, err := hex.Decode(h[:], []byte(s)); err != nil || n != HashSize {
		t.Fatalf("bad hex %q", s)
	}
	return h
}

// content returns n deterministic pseudo-random bytes.
func content(seed uint64, n int) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// fullTree is the naive reference: every layer of the padded tree, leaves first.
func fullTree(data []byte) [][]Hash {
	var leaves []Hash
	for off := 0; off < len(data); off += BlockSize {
		leaves = append(leaves, sha256.Sum256(data[off:min(off+BlockSize, len(data))]))
	}
	for int64(len(leaves)) < NextPow2(int64(len(leaves))) {
		leaves = append(leaves, Hash{})
	}
	layers := [][]Hash{leaves}
	for cur := leaves; len(cur) > 1; {
		next := make([]Hash, len(cur)/2)
		for i := range next {
			next[i] = sha256.Sum256(append(append([]byte{}, cur[2*i][:]...), cur[2*i+1][:]...))
		}
		layers = append(layers, next)
		cur = next
	}
	return layers
}

// Hand-checked vectors (computed with Python's hashlib, independently of this package).
func TestVectors(t *testing.T) {
	if got, want := PadHash(2), mustHex(t, "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"); got != want {
		t.Errorf("PadHash(2) = %x, want SHA-256 of 64 zero bytes %x", got, want)
	}
	if got, want := PadHash(4), mustHex(t, "db56114e00fdd4c1f85c892bf35ac9a89289aaecb1ebd0a96cde606a748b5d71"); got != want {
		t.Errorf("PadHash(4) = %x, want %x", got, want)
	}
	if PadHash(1) != (Hash{}) {
		t.Errorf("PadHash(1) is not the zero hash")
	}
	// One full block of 'a' and a 100-byte block of 'b': the short block is hashed as it is.
	data := append(bytes.Repeat([]byte("a"), BlockSize), bytes.Repeat([]byte("b"), 100)...)
	b := NewBuilder(BlockSize * 4)
	b.Write(data)
	root, layer := b.Sum()
	if want := mustHex(t, "63525ed4b91f0569b913175a0c96ca1510ccdf850e7d3f0c7034081887d529a2"); root != want || layer != nil {
		t.Errorf("root of 'a'*16384+'b'*100 = %x (layer %d), want %x and no layer", root, len(layer), want)
	}
	// Three full blocks of 0,1,2 bytes: the fourth leaf is the zero hash.
	var three []byte
	for i := range 3 {
		three = append(three, bytes.Repeat([]byte{byte(i)}, BlockSize)...)
	}
	if got, want := PieceHash(three, 4), mustHex(t, "3a399668ed9c3bb00bde9e1d7cde44b39b39867155793bbc0a879cbc4ca9dd1e"); got != want {
		t.Errorf("PieceHash of three blocks = %x, want %x", got, want)
	}
	// A single block's root is its leaf.
	b = NewBuilder(BlockSize)
	b.Write([]byte("abc"))
	if root, _ := b.Sum(); root != sha256.Sum256([]byte("abc")) {
		t.Errorf("root of \"abc\" = %x, want SHA-256(\"abc\")", root)
	}
	if root, layer := NewBuilder(BlockSize).Sum(); root != (Hash{}) || layer != nil {
		t.Errorf("empty file: root %x layer %v, want none", root, layer)
	}
}

// sizes covers block and piece boundaries and odd counts of pieces.
var sizes = []int{1, BlockSize - 1, BlockSize, BlockSize + 1, 3 * BlockSize, 5*BlockSize + 7, 64 << 10, 64<<10 + 1, 200001, 1 << 20, 1<<20 + 3*BlockSize + 5}

func TestBuilderMatchesNaiveTree(t *testing.T) {
	for _, pl := range []int64{BlockSize, 32 << 10, 64 << 10, 256 << 10} {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("pl%d/size%d", pl, size), func(t *testing.T) {
				data := content(uint64(size), size)
				layers := fullTree(data)
				want := layers[len(layers)-1][0]
				// Write in irregular chunks: block alignment must not depend on the writer.
				b := NewBuilder(pl)
				rng := rand.New(rand.NewPCG(uint64(size), uint64(pl)))
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 1+rng.IntN(3*BlockSize))
					b.Write(rest[:n])
					rest = rest[n:]
				}
				root, layer := b.Sum()
				if root != want {
					t.Fatalf("root %x, want %x", root, want)
				}
				perPiece := pl / BlockSize
				pieces := (int64(size) + pl - 1) / pl
				if pieces == 1 {
					if layer != nil {
						t.Fatalf("a one-piece file got a piece layer of %d", len(layer))
					}
					return
				}
				pieceLayer := layers[NumLayers(perPiece)-1]
				if int64(len(layer)) != pieces || !equalHashes(layer, pieceLayer[:pieces]) {
					t.Fatalf("piece layer differs from the naive tree's layer %d", NumLayers(perPiece)-1)
				}
				for _, h := range pieceLayer[pieces:] {
					if h != PadHash(perPiece) {
						t.Fatalf("naive tree pads the piece layer with %x, not PadHash(%d)", h, perPiece)
					}
				}
				got, err := RootFromPieceLayer(LayerBytes(layer), pl, int64(size))
				if err != nil || got != want {
					t.Fatalf("RootFromPieceLayer = %x, %v; want %x", got, err, want)
				}
				for i := int64(0); i < pieces; i++ {
					piece := data[i*pl : min((i+1)*pl, int64(size))]
					if h := PieceHash(piece, PieceWidth(pl, int64(size))); h != layer[i] {
						t.Fatalf("PieceHash(piece %d) = %x, want %x", i, h, layer[i])
					}
				}
			})
		}
	}
}

func equalHashes(a, b []Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRootFromPieceLayerRejectsBadShapes(t *testing.T) {
	layer := make([]byte, 3*HashSize)
	for _, tc := range []struct {
		name               string
		layer              []byte
		pieceLen, fileSize int64
	}{
		{"short layer", layer[:2*HashSize], 32 << 10, 3 * 32 << 10},
		{"long layer", layer, 32 << 10, 2 * 32 << 10},
		{"ragged", layer[:HashSize+5], 32 << 10, 2 * 32 << 10},
		{"one piece has no layer", layer[:HashSize], 32 << 10, 32 << 10},
		{"piece length not a power of two", layer, 48 << 10, 3 * 48 << 10},
		{"piece length below a block", layer, 8 << 10, 3 * 8 << 10},
	} {
		if _, err := RootFromPieceLayer(tc.layer, tc.pieceLen, tc.fileSize); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	// A changed hash changes the root: the layer is bound to the info dict's pieces root.
	data := content(7, 5*32<<10+3)
	b := NewBuilder(32 << 10)
	b.Write(data)
	root, l := b.Sum()
	lb := LayerBytes(l)
	lb[HashSize*2] ^= 1
	if got, _ := RootFromPieceLayer(lb, 32<<10, int64(len(data))); got == root {
		t.Errorf("a flipped bit in the piece layer still gives the root")
	}
}

// A bad 16 KiB block is found from the piece's verified leaves, without refetching the piece.
func TestBadBlocksAndVerifyBlock(t *testing.T) {
	const pl = 256 << 10
	data := content(3, 3*pl+5*BlockSize+77)
	layers := fullTree(data)
	b := NewBuilder(pl)
	b.Write(data)
	root, layer := b.Sum()
	piece := 3 // the short last piece
	pd := append([]byte(nil), data[piece*pl:]...)
	perPiece := int64(pl / BlockSize)
	// The leaves of this piece, as a hashes message with base layer 0 carries them, are checked
	// against the piece hash first.
	r := HashRequest{BaseLayer: 0, Index: int64(piece) * perPiece, Length: perPiece}
	leaves := layers[0][r.Index : r.Index+r.Length]
	known := func(l int, i int64) (Hash, bool) {
		if l == NumLayers(perPiece)-1 && i < int64(len(layer)) {
			return layer[i], true
		}
		return Hash{}, false
	}
	if err := VerifyHashes(root, int64(len(data)), r, leaves, known); err != nil {
		t.Fatalf("VerifyHashes(leaves of piece %d): %v", piece, err)
	}
	if bad := BadBlocks(pd, leaves); len(bad) != 0 {
		t.Fatalf("BadBlocks of a good piece = %v", bad)
	}
	pd[2*BlockSize+10] ^= 0xff
	pd[5*BlockSize+1] ^= 0xff // inside the short last block
	if bad := BadBlocks(pd, leaves); fmt.Sprint(bad) != "[2 5]" {
		t.Fatalf("BadBlocks = %v, want [2 5]", bad)
	}
	// VerifyBlock with uncles up to the piece hash.
	blk := data[piece*pl+BlockSize : piece*pl+2*BlockSize]
	var proof []Hash
	idx := int64(1)
	for l := 0; l < NumLayers(perPiece)-1; l++ {
		proof = append(proof, layers[l][(r.Index>>l)+(idx>>l^1)])
	}
	if !VerifyBlock(blk, idx, proof, layer[piece]) {
		t.Fatalf("VerifyBlock rejects a good block")
	}
	bad := append([]byte(nil), blk...)
	bad[0] ^= 1
	if VerifyBlock(bad, idx, proof, layer[piece]) || VerifyBlock(blk, idx^1, proof, layer[piece]) {
		t.Fatalf("VerifyBlock accepts a bad block or a wrong index")
	}
}

func TestVerifyHashes(t *testing.T) {
	const pl = 64 << 10
	data := content(11, 37*pl+1234) // 38 pieces, 149 blocks: 256 leaves, 9 layers
	layers := fullTree(data)
	root := layers[len(layers)-1][0]
	size := int64(len(data))
	// answer builds what libtorrent's merkle_tree::get_hashes sends.
	answer := func(r HashRequest) []Hash {
		out := append([]Hash(nil), layers[r.BaseLayer][r.Index:r.Index+r.Length]...)
		idx, l := r.Index/r.Length, r.BaseLayer+NumLayers(r.Length)-1
		for range r.uncles() {
			out = append(out, layers[l][idx^1])
			idx >>= 1
			l++
		}
		return out
	}
	full := []HashRequest{
		{BaseLayer: 2, Index: 0, Length: 64, ProofLayers: 5},  // the whole piece layer: no uncles
		{BaseLayer: 2, Index: 32, Length: 32, ProofLayers: 5}, // half of it, one uncle
		{BaseLayer: 0, Index: 8, Length: 4, ProofLayers: 7},   // one piece's leaves with the full proof
		{BaseLayer: 0, Index: 252, Length: 4, ProofLayers: 7}, // padding leaves past the end of the file
		{BaseLayer: 3, Index: 2, Length: 2, ProofLayers: 4},
	}
	for _, r := range full {
		h := answer(r)
		if n, err := r.Check(size); err != nil || n != len(h) {
			t.Fatalf("%+v: Check = %d, %v; the answer has %d", r, n, err, len(h))
		}
		if err := VerifyHashes(root, size, r, h, nil); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
		for i := range h {
			tampered := append([]Hash(nil), h...)
			tampered[i][31] ^= 1
			if err := VerifyHashes(root, size, r, tampered, nil); err == nil {
				t.Errorf("%+v: hash %d tampered, accepted", r, i)
			}
		}
		if err := VerifyHashes(root, size, r, h[:len(h)-1], nil); err == nil {
			t.Errorf("%+v: short answer accepted", r)
		}
	}
	// A proof that stops below the root needs a known node.
	r := HashRequest{BaseLayer: 0, Index: 8, Length: 4, ProofLayers: 0}
	if err := VerifyHashes(root, size, r, answer(r), nil); err == nil {
		t.Errorf("a proof stopping below the root was accepted with no known node")
	}
	known := func(l int, i int64) (Hash, bool) { return layers[l][i], true }
	if err := VerifyHashes(root, size, r, answer(r), known); err != nil {
		t.Errorf("against the piece layer: %v", err)
	}
	for _, bad := range []HashRequest{
		{BaseLayer: 0, Index: 0, Length: 1},
		{BaseLayer: 0, Index: 0, Length: 3},
		{BaseLayer: 0, Index: 2, Length: 4},
		{BaseLayer: 0, Index: 256, Length: 4},
		{BaseLayer: 0, Index: 1<<62 - 4, Length: 4},
		{BaseLayer: 8, Index: 0, Length: 2},
		{BaseLayer: -1, Index: 0, Length: 2},
		{BaseLayer: 0, Index: 0, Length: 16384},
		{BaseLayer: 0, Index: 0, Length: 4, ProofLayers: 8},
		{BaseLayer: 0, Index: 0, Length: 4, ProofLayers: -1},
	} {
		if _, err := bad.Check(size); err == nil {
			t.Errorf("Check(%+v) accepted", bad)
		}
	}
	if _, err := (HashRequest{Length: 2}).Check(BlockSize); err == nil {
		t.Errorf("a request for a one-block file was accepted")
	}
}

func TestParseHashes(t *testing.T) {
	if _, err := ParseHashes(make([]byte, 33)); err == nil {
		t.Errorf("33 bytes accepted")
	}
	h, err := ParseHashes(bytes.Repeat([]byte{7}, 64))
	if err != nil || len(h) != 2 || h[1][31] != 7 {
		t.Errorf("ParseHashes = %v, %v", h, err)
	}
}

// The builder holds one block and one piece's subtree, not the file: memory per byte written stays
// far below the 1/512 a leaf layer would need.
func TestBuilderAllocationBound(t *testing.T) {
	const pl = 1 << 20
	chunk := content(5, 1<<20)
	allocs := testing.AllocsPerRun(3, func() {
		b := NewBuilder(pl)
		for range 64 {
			b.Write(chunk)
		}
		b.Sum()
	})
	// 64 pieces: the piece layer grows by append (a handful of allocations), nothing per block.
	if allocs > 20 {
		t.Errorf("%.0f allocations to hash 64 MiB, want at most 20", allocs)
	}
}

// libtorrentV2 makes a v2-only torrent of one file with libtorrent's create_torrent and prints the
// file's pieces root and piece layer in hex.
const libtorrentV2 = `
import os, sys, libtorrent as lt
path, pl = sys.argv[1], int(sys.argv[2])
fs = lt.file_storage()
fs.add_file(os.path.basename(path), os.path.getsize(path))
ct = lt.create_torrent(fs, pl, flags=lt.create_torrent.v2_only)
lt.set_piece_hashes(ct, os.path.dirname(path))
e = ct.generate()
node = e[b"info"][b"file tree"][os.path.basename(path).encode()][b""]
root = node[b"pieces root"]
print(root.hex(), e.get(b"piece layers", {}).get(root, b"").hex())
`

func TestMatchesLibtorrent(t *testing.T) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import libtorrent").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 libtorrent not importable (required with CI=true): %v: %s", err, out)
		}
		t.Skipf("python3 libtorrent not importable: %v: %s", err, out)
	}
	dir := t.TempDir()
	for _, size := range []int{1, BlockSize + 1, 100000, 1<<20 + 3*BlockSize + 5} {
		path := filepath.Join(dir, fmt.Sprintf("f%d", size))
		data := content(uint64(size)+99, size)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, pl := range []int64{BlockSize, 32 << 10, 256 << 10} {
			out, err := exec.Command(python, "-c", libtorrentV2, path, fmt.Sprint(pl)).Output()
			if err != nil {
				t.Fatalf("libtorrent: %v", err)
			}
			f := strings.Fields(string(out))
			b := NewBuilder(pl)
			b.Write(data)
			root, layer := b.Sum()
			if f[0] != hex.EncodeToString(root[:]) {
				t.Errorf("size %d piece length %d: root %x, libtorrent %s", size, pl, root, f[0])
			}
			lt := ""
			if len(f) > 1 {
				lt = f[1]
			}
			if got := hex.EncodeToString(LayerBytes(layer)); got != lt {
				t.Errorf("size %d piece length %d: piece layer %s, libtorrent %s", size, pl, got, lt)
			}
		}
	}
}

// Tree answers every valid request as the naive full tree would, for a multi-piece file and a
// one-piece file, and every answer verifies against the root.
func TestTreeAnswers(t *testing.T) {
	for _, tc := range []struct{ pl, size int64 }{{64 << 10, 37*(64<<10) + 1234}, {256 << 10, 3*BlockSize + 5}, {BlockSize, 5*BlockSize + 1}} {
		data := content(uint64(tc.size), int(tc.size))
		layers := fullTree(data)
		b := NewBuilder(tc.pl)
		b.Write(data)
		root, layer := b.Sum()
		if layer == nil {
			layer = []Hash{root}
		}
		tr, err := NewTree(layer, tc.pl, tc.size)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Root() != root {
			t.Fatalf("Tree root %x, want %x", tr.Root(), root)
		}
		calls := 0
		leaves := func(piece int64) ([]Hash, error) {
			calls++
			lo := piece * tc.pl
			return LeafHashes(nil, data[lo:min(lo+tc.pl, tc.size)]), nil
		}
		treeLayers := NumLayers(NumLeaves(tc.size)) - 1
		checked := 0
		for base := 0; base < treeLayers; base++ {
			width := NumLeaves(tc.size) >> base
			for length := int64(2); length <= width; length *= 2 {
				for index := int64(0); index < width; index += length {
					for proof := 0; proof < treeLayers-base; proof++ {
						r := HashRequest{BaseLayer: base, Index: index, Length: length, ProofLayers: proof}
						got, err := tr.Answer(r, leaves)
						if err != nil {
							t.Fatalf("%+v: %v", r, err)
						}
						if !answerIsTrue(layers, r, got) {
							t.Fatalf("%+v: answer differs from the naive tree", r)
						}
						known := func(l int, i int64) (Hash, bool) { return layers[l][i], true }
						if err := VerifyHashes(root, tc.size, r, got, known); err != nil {
							t.Fatalf("%+v: %v", r, err)
						}
						checked++
					}
				}
			}
		}
		if checked == 0 {
			t.Fatalf("no request checked")
		}
		// Below the piece layer without data: refused, not guessed.
		if tc.pl > BlockSize {
			if _, err := tr.Answer(HashRequest{BaseLayer: 0, Index: 0, Length: 2}, nil); err == nil {
				t.Errorf("a leaf request without data was answered")
			}
		}
		// Leaves that do not match the piece hash (a corrupt file on disk) are refused.
		bad := func(piece int64) ([]Hash, error) {
			ls, _ := leaves(piece)
			ls[0][0] ^= 1
			return ls, nil
		}
		if _, err := tr.Answer(HashRequest{BaseLayer: 0, Index: 0, Length: 2}, bad); tc.pl > BlockSize && err == nil {
			t.Errorf("leaves of a corrupt piece were sent")
		}
	}
}
