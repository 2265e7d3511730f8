package swarm

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/torrentfile"
)

// The benchmark downloads one large file from 1 and from 4 seeding Swarms. Seeders run in child
// processes (this test binary re-executed; TestMain runs runSeederProcess) so the CPU time and peak RSS
// reported are the downloader's own. MAGNETGET_BENCH_MIB sets the size (default 1024);
// MAGNETGET_BENCH_DIR the directory for data and downloads (default: the system temp dir; a
// tmpfs such as /dev/shm takes the disk out of the measurement).

const (
	envSeederDir  = "MAGNETGET_SEEDER_DIR"
	envSeederInfo = "MAGNETGET_SEEDER_INFO"
	envSeederIP   = "MAGNETGET_SEEDER_IP"
	// envSeederTorrent names a .torrent (v2 or hybrid) the seeder child serves instead of the
	// info file.
	envSeederTorrent = "MAGNETGET_SEEDER_TORRENT"
)

// runSeederProcess is the seeder child of BenchmarkDownload: TestMain runs it instead of the
// tests when envSeederDir is set, so it never shows up as a (skipped) test. It prints
// "LISTEN addr" once its data is checked and seeds until its stdin is closed.
func runSeederProcess() error {
	info, err := os.ReadFile(os.Getenv(envSeederInfo))
	if err != nil {
		return err
	}
	ih := sha1.Sum(info)
	var layers map[[32]byte][]byte
	if tf := os.Getenv(envSeederTorrent); tf != "" { // a v2 torrent (BenchmarkDownloadV2)
		tor, err := torrentfile.LoadTorrent(tf)
		if err != nil {
			return err
		}
		info, layers = tor.Meta.InfoBytes, tor.PieceLayers
		if _, ok := tor.HashV1(); !ok {
			v2, _ := tor.HashV2()
			ih = [20]byte(v2[:20])
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv(envSeederIP), "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	var once sync.Once
	s, err := New(Config{InfoHash: ih, Info: info, PieceLayers: layers, Dir: os.Getenv(envSeederDir), Listener: ln, Seed: true,
		OnProgress: func(p Progress) {
			if p.Complete { // data checked: ready to serve
				once.Do(func() { fmt.Printf("LISTEN %s\n", ln.Addr()) })
			}
		}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // the parent closes our stdin to stop us
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := s.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

type benchData struct {
	dir  string
	info []byte
	ih   [20]byte
	path string // info file
	size int64
}

var (
	benchOnce sync.Once
	bench     benchData
	benchErr  error
)

// makeBenchData writes size bytes of pseudo-random data in 1 MiB chunks (never the whole file
// in memory) and builds its info dict.
func makeBenchData(size int64) (benchData, error) {
	dir, err := os.MkdirTemp(os.Getenv("MAGNETGET_BENCH_DIR"), "magnetget-bench-")
	if err != nil {
		return benchData{}, err
	}
	const pieceLen = 1 << 20
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	if err != nil {
		return benchData{}, err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, pieceLen)
	var pieces []byte
	for off := int64(0); off < size; off += pieceLen {
		n := min(int64(pieceLen), size-off)
		rng.Read(buf[:n])
		h := sha1.Sum(buf[:n])
		pieces = append(pieces, h[:]...)
		if _, err := f.Write(buf[:n]); err != nil {
			return benchData{}, err
		}
	}
	info, err := bencode.Marshal(metainfo.Info{Name: "big.bin", PieceLength: pieceLen, Length: size, Pieces: pieces})
	if err != nil {
		return benchData{}, err
	}
	path := filepath.Join(dir, "info")
	if err := os.WriteFile(path, info, 0o644); err != nil {
		return benchData{}, err
	}
	return benchData{dir: dir, info: info, ih: sha1.Sum(info), path: path, size: size}, nil
}

// startSeederProcess runs a seeder child on ip and returns its address and a stop function.
func startSeederProcess(b *testing.B, d benchData, ip string, env ...string) (netip.AddrPort, func()) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envSeederDir+"="+d.dir, envSeederInfo+"="+d.path, envSeederIP+"="+ip)
	cmd.Env = append(cmd.Env, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() {
		stdin.Close()
		_ = cmd.Wait()
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
			go io.Copy(io.Discard, stdout)
			return netip.MustParseAddrPort(a), stop
		}
	}
	stop()
	b.Fatal("seeder process did not start")
	return netip.AddrPort{}, nil
}

func BenchmarkDownload(b *testing.B) {
	size := int64(1024)
	if v, err := strconv.ParseInt(os.Getenv("MAGNETGET_BENCH_MIB"), 10, 64); err == nil && v > 0 {
		size = v
	}
	size <<= 20
	benchOnce.Do(func() { bench, benchErr = makeBenchData(size) })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("seeders=%d", n), func(b *testing.B) {
			var addrs []netip.AddrPort
			for i := range n {
				a, stop := startSeederProcess(b, bench, fmt.Sprintf("127.0.1.%d", i+1))
				b.Cleanup(stop)
				addrs = append(addrs, a)
			}
			b.SetBytes(bench.size)
			b.ResetTimer()
			var cpu time.Duration
			var wall time.Duration
			for range b.N {
				b.StopTimer()
				out, err := os.MkdirTemp(bench.dir, "out-")
				if err != nil {
					b.Fatal(err)
				}
				cfg := Config{InfoHash: bench.ih, Info: bench.info, Dir: out}
				if os.Getenv("MAGNETGET_BENCH_VERBOSE") != "" {
					cfg.OnProgress = func(p Progress) {
						b.Logf("done %d MiB, %.0f MiB/s, %d peers", p.Done>>20, p.RateDown/(1<<20), p.Peers)
					}
				}
				s, err := New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				for _, a := range addrs {
					s.AddPeer(a)
				}
				before := rusage()
				start := time.Now()
				b.StartTimer()
				if err := s.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				wall += time.Since(start)
				cpu += rusage() - before
				os.RemoveAll(out)
				b.StartTimer()
			}
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			b.ReportMetric(float64(bench.size*int64(b.N))/(1<<20)/wall.Seconds(), "MiB/s")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
		})
	}
	os.RemoveAll(bench.dir)
}

// rusage returns this process's user+system CPU time so far.
func rusage() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHostileDownload downloads the benchmark file from one seeder process twice per
// iteration: clean, and beside 16 peers that each send a handshake and the 13-byte head of an
// unrequested Piece message and then nothing (issue 9, row 4), plus 50 idle connections from
// one address sending keepalives (row 7). It reports both times and their ratio (issue 9's
// target: within 2x).
func BenchmarkHostileDownload(b *testing.B) {
	size := int64(1024)
	if v, err := strconv.ParseInt(os.Getenv("MAGNETGET_BENCH_MIB"), 10, 64); err == nil && v > 0 {
		size = v
	}
	size <<= 20
	bench, err := makeBenchData(size) // its own: the function runs once per b.N tried
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(bench.dir)
	seed, stop := startSeederProcess(b, bench, "127.0.1.1")
	defer stop()
	var clean, hostile time.Duration
	run := func(withHostile bool) time.Duration {
		out, err := os.MkdirTemp(bench.dir, "out-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(out)
		ln, err := net.Listen("tcp", "127.0.1.100:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		s, err := New(Config{InfoHash: bench.ih, Info: bench.info, Dir: out, Listener: ln})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		errc := make(chan error, 1)
		start := time.Now()
		go func() { errc <- s.Run(ctx) }()
		if withHostile {
			addr := ln.Addr().(*net.TCPAddr).AddrPort()
			head := append(binary.BigEndian.AppendUint32(nil, 9+blockSize), peerwire.Piece, 0, 0, 0, 0, 0, 0, 0, 0)
			var stops []func()
			for i, ip := range ipRange(50, 16) {
				st, err := openHostile([]string{ip}, addr, append(handshakeBytes(bench.ih, i), head...), 0)
				stops = append(stops, st)
				if err != nil {
					b.Fatal(err)
				}
			}
			for i := range 50 {
				st, err := openHostile([]string{"127.0.51.1"}, addr, handshakeBytes(bench.ih, 100+i), time.Second)
				stops = append(stops, st)
				if err != nil {
					b.Fatal(err)
				}
			}
			defer func() {
				for _, st := range stops {
					st()
				}
			}()
		}
		s.AddPeer(seed)
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for range b.N {
		clean += run(false)
		hostile += run(true)
	}
	b.ReportMetric(clean.Seconds()/float64(b.N), "clean-s/op")
	b.ReportMetric(hostile.Seconds()/float64(b.N), "hostile-s/op")
	b.ReportMetric(hostile.Seconds()/clean.Seconds(), "hostile/clean")
}
