package wan

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/netem"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/swarm"
)

var (
	wanMiB     = flag.Int("wan.mib", 64, "BenchmarkWANDownload payload size in MiB (1024 for the 1 GiB case)")
	wanClients = flag.String("wan.clients", "magnetget,libtorrent", "BenchmarkWANDownload downloaders")
)

// wanCase is one shape of the seeders' links.
type wanCase struct {
	name  string
	peers int
	rtt   time.Duration
	rate  int64 // bytes/s per peer, each direction
}

var wanCases = []wanCase{
	{"8x8MiBps-40ms", 8, 40 * time.Millisecond, 8 << 20},
	{"2x40MiBps-100ms", 2, 100 * time.Millisecond, 40 << 20},
	// Control: the same caps with no delay, so what latency costs stands apart from what the
	// emulator and the token buckets cost.
	{"2x40MiBps-0ms", 2, 0, 40 << 20},
}

// ideal is the time the payload takes at the sum of the peers' caps.
func (c wanCase) ideal(size int64) time.Duration {
	return time.Duration(float64(size) / float64(int64(c.peers)*c.rate) * float64(time.Second))
}

// wanSeeder is one real swarm seeding the payload behind a netem listener.
type wanSeeder struct {
	addr netip.AddrPort
	ln   *netem.Listener
}

// BenchmarkWANDownload downloads the payload from in-process swarm seeders behind netem links
// and reports efficiency (ideal time / actual) per downloader. Knobs: -wan.mib (default 64),
// -wan.clients, WAN_DL_ROUNDS (runs per case and client, default 1), WAN_DIR (where the payload
// and downloads go; default the temp dir).
func BenchmarkWANDownload(b *testing.B) {
	size := int64(*wanMiB) << 20
	rounds := max(1, envInt(b, "WAN_DL_ROUNDS", 1))
	clients := map[string]bool{}
	for _, c := range strings.FieldsFunc(*wanClients, func(r rune) bool { return r == ',' || r == ' ' }) {
		clients[c] = true
	}
	if clients["libtorrent"] {
		if err := realclient.LibtorrentAvailable(); err != nil {
			if os.Getenv("CI") == "true" {
				b.Fatalf("libtorrent: %v", err)
			}
			b.Logf("leaving libtorrent out: %v", err)
			delete(clients, "libtorrent")
		}
	}
	dir, err := os.MkdirTemp(os.Getenv("WAN_DIR"), "magnetget-wan-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	pl, err := realclient.MakePayload(dir, realclient.PayloadSpec{Name: "wan.bin", Size: size, Seed: 5})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("payload %d MiB, %d pieces of %d KiB", size>>20, pl.Info.NumPieces(), pl.Info.PieceLength>>10)
	seeders := startSwarmSeeders(b, pl, 8)

	for _, wc := range wanCases {
		b.Run(wc.name, func(b *testing.B) {
			link := netem.Symmetric(wc.rtt, wc.rate)
			var addrs []netip.AddrPort
			for _, s := range seeders[:wc.peers] {
				s.ln.SetLink(link)
				addrs = append(addrs, s.addr)
			}
			ideal := wc.ideal(size)
			logLoad(b)
			times := map[string][]time.Duration{}
			for r := range rounds {
				for _, client := range []string{"magnetget", "libtorrent"} {
					if !clients[client] {
						continue
					}
					out := filepath.Join(dir, fmt.Sprintf("out-%s-%s-%d", wc.name, client, r))
					var d time.Duration
					var err error
					if client == "magnetget" {
						d, err = downloadMagnetget(pl, addrs, out, 20*ideal+time.Minute)
					} else {
						d, err = downloadLibtorrent(pl, addrs, out, 20*ideal+time.Minute)
					}
					if err == nil {
						err = pl.Compare(out)
					}
					os.RemoveAll(out)
					if err != nil {
						b.Fatalf("%s: %v", client, err)
					}
					times[client] = append(times[client], d)
					b.Logf("%s round %d %-10s %6.2f s, efficiency %.2f (ideal %.2f s)", wc.name, r, client, d.Seconds(), ideal.Seconds()/d.Seconds(), ideal.Seconds())
				}
			}
			for client, ds := range times {
				m := median(ds)
				b.ReportMetric(ideal.Seconds()/m.Seconds(), "eff-"+client)
				b.ReportMetric(m.Seconds(), "s-"+client)
			}
		})
	}
}

// startSwarmSeeders starts n seeding swarms, each on its own IP (127.0.230.x) with its own copy
// (a hard link) of the payload, and waits until each has checked its data.
func startSwarmSeeders(b *testing.B, pl *realclient.Payload, n int) []wanSeeder {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	src := filepath.Join(pl.DataDir, pl.Name)
	out := make([]wanSeeder, n)
	ready := make(chan error, n)
	for i := range n {
		sdir := filepath.Join(filepath.Dir(pl.DataDir), fmt.Sprintf("seed-%d", i))
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.Link(src, filepath.Join(sdir, pl.Name)); err != nil {
			b.Fatal(err)
		}
		inner, err := net.Listen("tcp4", netip.AddrPortFrom(ipOf(230, i), 0).String())
		if err != nil {
			b.Fatal(err)
		}
		ln := netem.NewListener(inner, netem.Link{})
		b.Cleanup(func() { ln.Close() })
		out[i] = wanSeeder{addr: inner.Addr().(*net.TCPAddr).AddrPort(), ln: ln}
		var once sync.Once
		s, err := swarm.New(swarm.Config{InfoHash: pl.InfoHash, Info: pl.InfoBytes, Dir: sdir, Listener: ln, Seed: true,
			OnProgress: func(p swarm.Progress) {
				if p.Complete {
					once.Do(func() { ready <- nil })
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx); err != nil && ctx.Err() == nil {
				once.Do(func() { ready <- err })
			}
		}()
	}
	timeout := time.After(5 * time.Minute)
	for range n {
		select {
		case err := <-ready:
			if err != nil {
				b.Fatalf("seeder: %v", err)
			}
		case <-timeout:
			b.Fatal("seeders did not finish checking their data")
		}
	}
	return out
}

// downloadMagnetget runs one swarm download and returns the time Run took.
func downloadMagnetget(pl *realclient.Payload, peers []netip.AddrPort, dir string, limit time.Duration) (time.Duration, error) {
	s, err := swarm.New(swarm.Config{InfoHash: pl.InfoHash, Info: pl.InfoBytes, Dir: dir})
	if err != nil {
		return 0, err
	}
	for _, a := range peers {
		s.AddPeer(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	if err := s.Run(ctx); err != nil {
		return 0, fmt.Errorf("swarm: %w", err)
	}
	return time.Since(start), nil
}

// downloadLibtorrent runs one libtorrent download from the .torrent and returns the time from
// the torrent being added (libtorrent's metadata mark, taken at once when it has the .torrent)
// to the files flushed, leaving out interpreter and library start-up.
func downloadLibtorrent(pl *realclient.Payload, peers []netip.AddrPort, dir string, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	r, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Torrent: pl.Torrent, Dir: dir, Peers: peers, MaxLifetime: limit})
	if err != nil {
		return 0, err
	}
	if r.Total <= r.Metadata {
		return 0, errors.New("libtorrent reported no transfer time")
	}
	return r.Total - r.Metadata, nil
}
