package merkle

import (
	"crypto/sha1"
	"crypto/sha256"
	"testing"
)

// BenchmarkBuilder is SHA-256 tree hashing; compare with BenchmarkSHA1Pieces (v1's cost for the same
// bytes) and BenchmarkSHA256Raw (the machine's limit for SHA-256 over large buffers).
func BenchmarkBuilder(b *testing.B) {
	data := content(1, 4<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		t := NewBuilder(1 << 20)
		t.Write(data)
		t.Sum()
	}
}

func BenchmarkPieceHash(b *testing.B) {
	data := content(1, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		PieceHash(data, 64)
	}
}

func BenchmarkSHA256Raw(b *testing.B) {
	data := content(1, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		_ = sha256Sum(data)
	}
}

func BenchmarkSHA1Pieces(b *testing.B) {
	data := content(1, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		_ = sha1.Sum(data)
	}
}

func sha256Sum(b []byte) Hash { return sha256.Sum256(b) }
