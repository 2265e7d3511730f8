package realclient_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// Reference figures for magnetget: real clients fetching from a libtorrent
// seeder over loopback through the shared 30-node libtorrent DHT. Size with
// REALCLIENT_BENCH_SIZE (bytes, default 1 GiB). Run for example:
//
//	go test -run '^$' -bench . -benchtime 3x ./internal/realclient/
//
// Metrics: MiB/s over the whole run (process start to files on disk, as
// the client reports it), and metadata-s (magnet to info dict).

var big struct {
	once    sync.Once
	err     error
	payload *realclient.Payload
	seeder  *realclient.LibtorrentSeeder
}

func benchSize(b *testing.B) int64 {
	if s := os.Getenv("REALCLIENT_BENCH_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("REALCLIENT_BENCH_SIZE=%q: want a positive byte count", s)
		}
		return n
	}
	return 1 << 30
}

// bigSeeder seeds one large payload from 127.0.100.2, announced into the
// shared DHT.
func bigSeeder(b *testing.B) (*realclient.LibtorrentDHT, *realclient.LibtorrentSeeder, *realclient.Payload) {
	d, _, _ := sharedNet(b)
	size := benchSize(b)
	big.once.Do(func() {
		start := time.Now()
		big.payload, big.err = realclient.MakePayload(filepath.Join(shared.dir, "big"), realclient.PayloadSpec{Name: "big.bin", Size: size, Seed: 7})
		if big.err != nil {
			return
		}
		b.Logf("made a %d-byte payload in %v", size, time.Since(start).Round(time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), rctest.StartTimeout)
		defer cancel()
		big.seeder, big.err = realclient.StartLibtorrentSeeder(ctx, realclient.SeederConfig{
			Torrent: big.payload.Torrent, DataDir: big.payload.DataDir, Bootstrap: d.Addrs()[10:14],
			IP: netip.MustParseAddr("127.0.100.2"),
		})
		if big.err != nil {
			return
		}
		big.err = big.seeder.WaitAnnounced(ctx)
	})
	if big.err != nil {
		b.Fatal(big.err)
	}
	return d, big.seeder, big.payload
}

func report(b *testing.B, bytes int64, total, meta time.Duration) {
	if total > 0 {
		b.ReportMetric(float64(bytes)/(1<<20)/total.Seconds(), "MiB/s")
	}
	if meta > 0 {
		b.ReportMetric(meta.Seconds()/float64(b.N), "metadata-s")
	}
	b.ReportMetric(0, "ns/op") // wall time per op is meaningless next to the above
}

func BenchmarkLibtorrentDownload(b *testing.B) {
	d, _, p := bigSeeder(b)
	var total, meta time.Duration
	for i := range b.N {
		dir := filepath.Join(b.TempDir(), strconv.Itoa(i))
		ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
		res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Magnet: p.Magnet(), Dir: dir, Bootstrap: d.Addrs()[20:23]})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		total += res.Total
		meta += res.Metadata
		b.Logf("libtorrent %d bytes: metadata %v, done %v (wall %v): %.0f MiB/s", p.Length, res.Metadata, res.Total, res.Wall, float64(p.Length)/(1<<20)/res.Total.Seconds())
		if err := p.Compare(dir); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	report(b, p.Length*int64(b.N), total, meta)
}

func BenchmarkAria2Download(b *testing.B) {
	rctest.Require(b, realclient.Aria2Available)
	d, _, p := bigSeeder(b)
	var total time.Duration
	for i := range b.N {
		dir := filepath.Join(b.TempDir(), strconv.Itoa(i))
		ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
		res, err := realclient.Aria2Download(ctx, realclient.Aria2Config{URI: p.Magnet(), Dir: dir, DHTEntry: d.Addrs()[21]})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		total += res.Elapsed
		b.Logf("aria2 %d bytes via DHT: %v: %.0f MiB/s", p.Length, res.Elapsed, float64(p.Length)/(1<<20)/res.Elapsed.Seconds())
		if err := p.Compare(dir); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	report(b, p.Length*int64(b.N), total, 0)
}

// aria2 told about the seeder by a loopback tracker: no DHT timers.
func BenchmarkAria2DownloadTracker(b *testing.B) {
	rctest.Require(b, realclient.Aria2Available)
	_, s, p := bigSeeder(b)
	tr := rctest.Tracker(b)
	tr.Add(p.InfoHash, s.Addr())
	var total time.Duration
	for i := range b.N {
		dir := filepath.Join(b.TempDir(), strconv.Itoa(i))
		ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
		res, err := realclient.Aria2Download(ctx, realclient.Aria2Config{URI: p.MagnetURI([]string{tr.URL()}, nil), Dir: dir})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		total += res.Elapsed
		b.Logf("aria2 %d bytes via tracker: %v: %.0f MiB/s", p.Length, res.Elapsed, float64(p.Length)/(1<<20)/res.Elapsed.Seconds())
		if err := p.Compare(dir); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	report(b, p.Length*int64(b.N), total, 0)
}

func BenchmarkLibtorrentMetadata(b *testing.B) {
	d, _, p := sharedNet(b)
	var meta time.Duration
	for range b.N {
		ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
		res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Magnet: p.Magnet(), Dir: b.TempDir(), Bootstrap: d.Addrs()[20:23], MetadataOnly: true})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		meta += res.Metadata
	}
	report(b, 0, 0, meta)
}

func BenchmarkAria2Metadata(b *testing.B) {
	rctest.Require(b, realclient.Aria2Available)
	d, _, p := sharedNet(b)
	var meta time.Duration
	for range b.N {
		ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
		res, err := realclient.Aria2Download(ctx, realclient.Aria2Config{URI: p.Magnet(), Dir: b.TempDir(), DHTEntry: d.Addrs()[21], MetadataOnly: true})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		meta += res.Elapsed
	}
	report(b, 0, 0, meta)
}
