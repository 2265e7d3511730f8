package storage

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// BenchmarkWriteThenSync writes 256 MiB in 256 KiB runs, as a download does, then syncs as a
// completed download does. "sync-ms" is the final Sync alone: with writeback started as the
// data arrives (startWriteback) it is the last few MiB, not the whole file.
func BenchmarkWriteThenSync(b *testing.B) {
	const size, run = 256 << 20, 256 << 10
	buf := make([]byte, run)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var syncTotal time.Duration
	for range b.N {
		b.StopTimer()
		mi := &metainfo.Info{Name: "w.bin", PieceLength: 1 << 20, Length: size, Pieces: make([]byte, 20*size>>20)}
		l, err := NewLayout(mi)
		if err != nil {
			b.Fatal(err)
		}
		s, err := Open(b.TempDir(), l)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for off := int64(0); off < size; off += run {
			if err := s.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		t := time.Now()
		if err := s.Sync(); err != nil {
			b.Fatal(err)
		}
		syncTotal += time.Since(t)
		b.StopTimer()
		s.Close()
	}
	b.SetBytes(size)
	b.ReportMetric(float64(syncTotal.Milliseconds())/float64(b.N), "sync-ms")
}

// TestWritebackGoroutineEnds: writing enough to start writeback leaves no goroutine behind
// once the storage is closed, and the bytes are all there.
func TestWritebackGoroutineEnds(t *testing.T) {
	const size = 3 * writebackEvery
	before := runtime.NumGoroutine()
	mi := &metainfo.Info{Name: "w.bin", PieceLength: 1 << 20, Length: size, Pieces: make([]byte, 20*size>>20)}
	l, err := NewLayout(mi)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := Open(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0xa5}, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := s.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	started := s.wb != nil
	s.mu.Unlock()
	if !started {
		t.Fatal("no writeback started after writing 24 MiB")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The goroutine has signalled its end; give it a moment to be gone from the count.
	n := runtime.NumGoroutine()
	for i := 0; i < 100 && n > before; i++ {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
	got, err := os.ReadFile(filepath.Join(dir, "w.bin"))
	if err != nil || len(got) != size || !bytes.Equal(got[size-len(buf):], buf) {
		t.Fatalf("file: %d bytes, err %v", len(got), err)
	}
}
