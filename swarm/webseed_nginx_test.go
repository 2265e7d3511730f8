package swarm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startNginx serves root with Debian's nginx, a child process on 127.0.0.1 with a generated
// config (no daemon, no master, everything it writes in a temp dir), and returns its base URL.
// Without nginx the test is skipped, except under CI=true, where .ci/run installs it.
func startNginx(tb testing.TB, root string) string {
	tb.Helper()
	return startNginxConf(tb, root, "")
}

// startNginxConf is startNginx with extra directives for the location (e.g. "limit_rate 8m;").
func startNginxConf(tb testing.TB, root, extra string) string {
	tb.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") != "" {
				tb.Fatal("nginx is not installed (apt-get install nginx-light); CI must run this test")
			}
			tb.Skip("nginx not installed (apt-get install nginx-light); skipping the test against a real HTTP server")
		}
	}
	tmp := tb.TempDir()
	var lastErr error
	for range 5 { // the free port found may be taken before nginx binds it
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		conf := filepath.Join(tmp, "nginx.conf")
		// master_process off: one process, which runs as us (root in CI) and so reads root
		// whatever its permissions; no user directive needed.
		text := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	default_type application/octet-stream;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:%[2]d;
		root %[3]s;
		location / { %[4]s }
	}
}
`, tmp, port, root, extra)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(bin, "-p", tmp, "-e", filepath.Join(tmp, "error.log"), "-c", conf)
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-exited:
				log, _ := os.ReadFile(filepath.Join(tmp, "error.log"))
				lastErr = fmt.Errorf("nginx exited: %v: %s", err, log)
			default:
			}
			if lastErr != nil {
				break
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				tb.Cleanup(func() {
					_ = cmd.Process.Kill()
					<-exited
				})
				return "http://" + addr + "/"
			}
			time.Sleep(20 * time.Millisecond)
		}
		if lastErr == nil {
			_ = cmd.Process.Kill()
			<-exited
			lastErr = fmt.Errorf("nginx did not listen on %s", addr)
		}
	}
	tb.Fatal(lastErr)
	return ""
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// TestWebSeedNginx downloads multi- and single-file torrents from nginx alone.
func TestWebSeedNginx(t *testing.T) {
	multi := makeTorrent(t, "Album: live", 32<<10, webTestFiles, 31)
	single := makeSingle(t, "image.iso", 64<<10, 3_000_017, 32)
	root := t.TempDir()
	multi.writeFiles(t, root)
	single.writeFiles(t, root)
	url := startNginx(t, root)
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
	url := startNginx(b, d.dir) + "big.bin"
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
		limitedURL = startNginxConf(b, d.dir, "limit_rate 8m;") + "big.bin"
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
