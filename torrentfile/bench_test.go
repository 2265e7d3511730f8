package torrentfile

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchSize parses MAGNETGET_BENCH_SIZE: bytes, or a number with a K, M or G suffix (powers of 1024).
func benchSize(b *testing.B) int64 {
	s := strings.ToUpper(strings.TrimSpace(os.Getenv("MAGNETGET_BENCH_SIZE")))
	if s == "" {
		return 256 << 20
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("MAGNETGET_BENCH_SIZE=%q: want a positive size like 268435456, 256M or 2G", os.Getenv("MAGNETGET_BENCH_SIZE"))
	}
	return n * mult
}

// BenchmarkCreate hashes one file with Create. MAGNETGET_BENCH_FILE names an existing file to use
// (bench/create.sh shares one with mktorrent and libtorrent); otherwise a file of
// MAGNETGET_BENCH_SIZE bytes (default 256 MiB) is written to a temporary directory.
// MAGNETGET_BENCH_PIECE_LENGTH sets the piece length (default: automatic); MAGNETGET_BENCH_OUT, if
// set, receives the .torrent so the script can compare infohashes. One untimed Create runs first
// so that timed runs, like the other tools' in the script, hash from the page cache.
func BenchmarkCreate(b *testing.B) {
	path := benchFile(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var pl int64
	if s := os.Getenv("MAGNETGET_BENCH_PIECE_LENGTH"); s != "" {
		if pl, err = strconv.ParseInt(s, 10, 64); err != nil {
			b.Fatalf("MAGNETGET_BENCH_PIECE_LENGTH: %v", err)
		}
	}
	ctx := context.Background()
	mi, err := Create(ctx, path, Options{PieceLength: pl}) // also warms the page cache
	if err != nil {
		b.Fatal(err)
	}
	if out := os.Getenv("MAGNETGET_BENCH_OUT"); out != "" {
		var buf bytes.Buffer
		if err := Write(&buf, mi); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(fi.Size())
	for b.Loop() {
		if _, err := Create(ctx, path, Options{PieceLength: pl}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(fi.Size())*float64(b.N)/(1<<20)/b.Elapsed().Seconds(), "MiB/s")
}

// benchFile returns MAGNETGET_BENCH_FILE, or a file of MAGNETGET_BENCH_SIZE bytes it writes.
func benchFile(b *testing.B) string {
	path := os.Getenv("MAGNETGET_BENCH_FILE")
	if path != "" {
		return path
	}
	size := benchSize(b)
	path = filepath.Join(b.TempDir(), "bench.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	block := content("bench", 1<<20)
	for left := size; left > 0; left -= int64(len(block)) {
		if _, err := f.Write(block[:min(int64(len(block)), left)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkCreateVersions hashes one file (as BenchmarkCreate picks it) as a v1, v2-only and
// hybrid torrent side by side, at 1 MiB pieces: what SHA-256 merkle hashing costs next to SHA-1.
func BenchmarkCreateVersions(b *testing.B) {
	path := benchFile(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []struct {
		name string
		o    Options
	}{{"v1", Options{}}, {"v2", Options{V2: true}}, {"hybrid", Options{Hybrid: true}}} {
		m.o.PieceLength = 1 << 20
		b.Run(m.name, func(b *testing.B) {
			if _, err := CreateTorrent(ctx, path, m.o); err != nil { // warm the page cache
				b.Fatal(err)
			}
			b.SetBytes(fi.Size())
			for b.Loop() {
				if _, err := CreateTorrent(ctx, path, m.o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
