package swarm

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/torrentfile"
)

// BenchmarkDownloadV2 downloads the same file (MAGNETGET_BENCH_MIB, default 256; data under
// MAGNETGET_BENCH_DIR) as a v1 torrent and as a v2-only one from one seeder process each, and
// reports MiB/s and the downloader's CPU seconds per GiB for both (issue 12's target: v2 at most
// 1.5x v1's CPU), plus libtorrent's v2 download of it from the same seeder when python3-libtorrent
// is installed. The leecher has the .torrent's piece layers (as `get x.torrent`).
func BenchmarkDownloadV2(b *testing.B) {
	size := int64(256)
	if v, err := strconv.ParseInt(os.Getenv("MAGNETGET_BENCH_MIB"), 10, 64); err == nil && v > 0 {
		size = v
	}
	size <<= 20
	d, err := makeBenchData(size)
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(d.dir)
	ctx := context.Background()
	for _, mode := range []string{"v1", "v2"} {
		tor, err := torrentfile.CreateTorrent(ctx, filepath.Join(d.dir, "big.bin"), torrentfile.Options{PieceLength: 1 << 20, V2: mode == "v2"})
		if err != nil {
			b.Fatal(err)
		}
		tfile := filepath.Join(d.dir, mode+".torrent")
		var buf bytes.Buffer
		if err := torrentfile.WriteTorrent(&buf, tor); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(tfile, buf.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
		ih, _ := tor.HashV1()
		if mode == "v2" {
			v2, _ := tor.HashV2()
			ih = [20]byte(v2[:20])
		}
		b.Run(mode, func(b *testing.B) {
			seed, stop := startSeederProcess(b, d, "127.0.1.20", envSeederTorrent+"="+tfile)
			defer stop()
			b.SetBytes(size)
			var cpu, wall time.Duration
			for range b.N {
				out, err := os.MkdirTemp(d.dir, "out-")
				if err != nil {
					b.Fatal(err)
				}
				s, err := New(Config{InfoHash: ih, Info: tor.Meta.InfoBytes, PieceLayers: tor.PieceLayers, Dir: out})
				if err != nil {
					b.Fatal(err)
				}
				s.AddPeer(seed)
				before, start := rusage(), time.Now()
				if err := s.Run(ctx); err != nil {
					b.Fatal(err)
				}
				wall += time.Since(start)
				cpu += rusage() - before
				os.RemoveAll(out)
			}
			gib := float64(size*int64(b.N)) / (1 << 30)
			b.ReportMetric(float64(size*int64(b.N))/(1<<20)/wall.Seconds(), "MiB/s")
			b.ReportMetric(cpu.Seconds()/gib, "cpu-s/GiB")
			if mode != "v2" || realclient.LibtorrentAvailable() != nil {
				return
			}
			out, err := os.MkdirTemp(d.dir, "lt-")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(out)
			res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Torrent: tfile, Dir: out,
				Peers: []netip.AddrPort{seed}, IP: netip.MustParseAddr("127.0.1.21"), MaxLifetime: 10 * time.Minute})
			if err != nil {
				b.Fatal(fmt.Errorf("libtorrent: %w", err))
			}
			b.ReportMetric(float64(size)/(1<<20)/res.Total.Seconds(), "libtorrent-MiB/s")
		})
	}
}
