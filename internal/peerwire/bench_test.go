package peerwire_test

import (
	"testing"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// BenchmarkPieceStream measures 16 KiB Piece messages from WriteMsg to ReadMsg over loopback TCP.
func BenchmarkPieceStream(b *testing.B) {
	d, a := pair(b, peerwire.Options{}, peerwire.Options{})
	block := make([]byte, 16<<10)
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	done := make(chan error, 1)
	n := b.N
	go func() {
		for i := range n {
			if err := d.WriteMsg(peerwire.Message{ID: peerwire.Piece, Index: uint32(i), Block: block}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for got := 0; got < n; {
		m, err := a.ReadMsg()
		if err != nil {
			b.Fatal(err)
		}
		if m.ID == peerwire.Piece {
			got++
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
