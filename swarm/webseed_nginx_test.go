package swarm

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// TestWebSeedNginx downloads multi- and single-file torrents from nginx alone.
func TestWebSeedNginx(t *testing.T) {
	multi := makeTorrent(t, "Album: live", 32<<10, webTestFiles, 31)
	single := makeSingle(t, "image.iso", 64<<10, 3_000_017, 32)
	root := t.TempDir()
	multi.writeFiles(t, root)
	single.writeFiles(t, root)
	url := rctest.Nginx(t, root)
	_, p := downloadWeb(t, multi, []string{url})
	if p.WebSeedDown != multi.total() {
		t.Errorf("%d bytes from nginx, want %d", p.WebSeedDown, multi.total())
	}
	downloadWeb(t, single, []string{url + "image.iso"})
}

// BenchmarkWebSeed downloads one file (MAGNETGET_BENCH_MIB, default 1024 MiB) from nginx on
// loopback with curl -o, from nginx as a web seed, from one seeding peer (a child process),
// and from the peer and the web seed together. Run it once: -benchtime=1x.
func BenchmarkWebSeed(b *testing.B) {
	size := int64(1024)
	if v, err := strconv.ParseInt(os.Getenv("MAGNETGET_BENCH_MIB"), 10, 64); err == nil && v > 0 {
		size = v
	}
	d, err := makeBenchData(size << 20)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d.dir) })
	url := rctest.Nginx(b, d.dir) + "big.bin"
	peer, stop := startSeederProcess(b, d, "127.0.1.9")
	b.Cleanup(stop)
	out := func(b *testing.B) string {
		dir, err := os.MkdirTemp(d.dir, "out-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	report := func(b *testing.B, wall time.Duration) {
		b.ReportMetric(float64(d.size)/(1<<20)/wall.Seconds(), "MiB/s")
	}
	b.Run("curl", func(b *testing.B) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			b.Skip("no curl")
		}
		var wall, cpu time.Duration
		for range b.N {
			dst := filepath.Join(out(b), "big.bin")
			start := time.Now()
			cmd := exec.Command(curl, "-sS", "-o", dst, url)
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("curl: %v: %s", err, o)
			}
			wall += time.Since(start)
			cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		report(b, wall/time.Duration(b.N))
	})
	// On loopback the sources are limited by our CPU alone, so adding a source adds work, not
	// bandwidth. The "limited" runs cap each source as a real mirror and a real peer are
	// capped (32 MiB/s each: nginx limit_rate 8m on each of the 4 connections, the peer's
	// upload limit), where together should approach the sum.
	// They start on first use, so their start-up (the seeder checks its data) does not
	// overlap the other runs.
	var (
		limitedOnce sync.Once
		limitedURL  string
		limitedPeer netip.AddrPort
	)
	startLimited := func() {
		limitedURL = rctest.NginxConf(b, d.dir, "limit_rate 8m;") + "big.bin"
		limitedPeer = startSeedingSwarm(b, Config{InfoHash: d.ih, Info: d.info, Dir: d.dir, ReadOnly: true, Seed: true,
			UploadLimit: 32 << 20, Listener: listen(b, "127.0.1.10")})
	}
	for _, c := range []struct {
		name      string
		web, peer bool
		limited   bool
	}{{"webseed", true, false, false}, {"peer", false, true, false}, {"peer+webseed", true, true, false},
		{"limited/webseed", true, false, true}, {"limited/peer", false, true, true}, {"limited/peer+webseed", true, true, true}} {
		b.Run(c.name, func(b *testing.B) {
			if c.limited {
				limitedOnce.Do(startLimited)
			}
			var wall, cpu time.Duration
			for range b.N {
				cfg := Config{InfoHash: d.ih, Info: d.info, Dir: out(b)}
				if c.web {
					cfg.WebSeeds = []string{url}
					if c.limited {
						cfg.WebSeeds = []string{limitedURL}
					}
				}
				var last lastProgress
				cfg.OnProgress = last.set
				s, err := New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				if c.peer && c.limited {
					s.AddPeer(limitedPeer)
				} else if c.peer {
					s.AddPeer(peer)
				}
				start, before := time.Now(), rusage()
				if err := s.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
				wall += time.Since(start)
				cpu += rusage() - before // the limited runs' seeder is in this process: its CPU counts too
				p := last.get()
				b.ReportMetric(float64(p.WebSeedDown)/float64(d.size), "web-share")
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			report(b, wall/time.Duration(b.N))
		})
	}
}

// startSeedingSwarm runs cfg (a seeder with a Listener) in this process until the test ends.
func startSeedingSwarm(tb testing.TB, cfg Config) netip.AddrPort {
	tb.Helper()
	ready := make(chan struct{})
	var once sync.Once
	cfg.OnProgress = func(p Progress) {
		if p.Complete { // its data is checked: ready to serve
			once.Do(func() { close(ready) })
		}
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("seeder Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-errc:
		errc <- err // for the cleanup
		tb.Fatalf("seeder Run ended: %v", err)
	}
	return addrOf(cfg.Listener)
}
