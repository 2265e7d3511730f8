package index

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func benchIH(i int) [20]byte {
	// Spread like real infohashes (random), but deterministic.
	var ih [20]byte
	x := uint64(i)*0x9E3779B97F4A7C15 + 1
	for j := 0; j < 20; j += 8 {
		x ^= x >> 31
		x *= 0xBF58476D1CE4E5B9
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], x)
		copy(ih[j:], b[:])
	}
	return ih
}

// BenchmarkObserve measures index write throughput: b.N distinct new
// infohashes, batched as the crawler writes them (fsync on every commit).
func BenchmarkObserve(b *testing.B) {
	x, err := Open(filepath.Join(b.TempDir(), "i.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	at := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := x.Observe(benchIH(i), Sampled, netip.AddrPort{}, at); err != nil {
			b.Fatal(err)
		}
	}
	if err := x.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "infohashes/s")
}

// BenchmarkMillion writes 1M infohashes per iteration into a fresh index
// and reports throughput, heap in use afterwards and the file size.
func BenchmarkMillion(b *testing.B) {
	bs, _ := strconv.Atoi(os.Getenv("BENCH_BATCH"))
	const n = 1_000_000
	for it := 0; it < b.N; it++ {
		path := filepath.Join(b.TempDir(), "i.db")
		x, err := Open(path, Options{BatchSize: bs, NoSync: os.Getenv("BENCH_NOSYNC") != ""})
		if err != nil {
			b.Fatal(err)
		}
		at := time.Now()
		start := time.Now()
		var peak uint64
		var ms runtime.MemStats
		for i := 0; i < n; i++ {
			if err := x.Observe(benchIH(i), Sampled, netip.AddrPort{}, at); err != nil {
				b.Fatal(err)
			}
			if i%100_000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
		if err := x.Flush(); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		st, _ := x.Stats()
		if st.Infohashes != n {
			b.Fatalf("stored %d infohashes", st.Infohashes)
		}
		x.Close()
		fi, _ := os.Stat(path)
		b.ReportMetric(n/el.Seconds(), "infohashes/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-after-MiB")
		b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
	}
}
