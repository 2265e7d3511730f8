package swarm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// testFile is one file of a test torrent.
type testFile struct {
	path string // slash-separated, under the torrent name
	size int
}

// testTorrent is a torrent built in memory with random content.
type testTorrent struct {
	name  string
	files []testFile
	data  [][]byte
	info  []byte
	ih    [20]byte
}

func makeTorrent(t testing.TB, name string, pieceLen int64, files []testFile, seed uint64) *testTorrent {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	tt := &testTorrent{name: name, files: files}
	var stream []byte
	mi := metainfo.Info{Name: name, PieceLength: pieceLen}
	for _, f := range files {
		d := make([]byte, f.size)
		for i := range d {
			d[i] = byte(rng.Uint32())
		}
		tt.data = append(tt.data, d)
		stream = append(stream, d...)
		mi.Files = append(mi.Files, metainfo.FileInfo{Length: int64(f.size), Path: strings.Split(f.path, "/")})
	}
	for off := int64(0); off < int64(len(stream)); off += pieceLen {
		h := sha1.Sum(stream[off:min(off+pieceLen, int64(len(stream)))])
		mi.Pieces = append(mi.Pieces, h[:]...)
	}
	b, err := bencode.Marshal(mi)
	if err != nil {
		t.Fatal(err)
	}
	tt.info = b
	tt.ih = sha1.Sum(b)
	return tt
}

// writeFiles puts the torrent's content under dir, as a seeder has it.
func (tt *testTorrent) writeFiles(t testing.TB, dir string) {
	t.Helper()
	for i, f := range tt.files {
		p := filepath.Join(dir, tt.name, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, tt.data[i], 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkFiles asserts that dir holds exactly the torrent's content.
func (tt *testTorrent) checkFiles(t testing.TB, dir string) {
	t.Helper()
	for i, f := range tt.files {
		p := filepath.Join(dir, tt.name, filepath.FromSlash(f.path))
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("file %s: %v", f.path, err)
			continue
		}
		if !bytes.Equal(got, tt.data[i]) {
			t.Errorf("file %s: content differs (%d bytes, want %d)", f.path, len(got), len(tt.data[i]))
		}
	}
}

// listen opens a TCP listener on a loopback address, port 0.
func listen(t testing.TB, ip string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func addrOf(ln net.Listener) netip.AddrPort {
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// startSeeder runs a seeding Swarm on ip with the torrent's data present and returns its
// address. It stops when the test ends.
func startSeeder(t testing.TB, tt *testTorrent, ip string, mod func(*Config)) netip.AddrPort {
	t.Helper()
	dir := t.TempDir()
	tt.writeFiles(t, dir)
	ln := listen(t, ip)
	cfg := Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, Listener: ln, Seed: true}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("seeder Run: %v", err)
		}
	})
	return addrOf(ln)
}

// runUntil runs s.Run with a generous safety timeout so a hung test fails instead of hanging.
func runUntil(t testing.TB, s *Swarm, ctx context.Context) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return s.Run(ctx)
}

// runBackground runs s for up to 90 s (cancelled at cleanup) and returns where Run's error
// comes.
func runBackground(t *testing.T, s *Swarm) <-chan error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	return errc
}

// runUntilBan adds hostile (the only peer s knows yet) to s, starts s.Run and waits until s bans
// it; it returns Run's result. The run stops with the test.
func runUntilBan(t *testing.T, s *Swarm, hostile netip.AddrPort) <-chan error {
	t.Helper()
	banned := make(chan netip.Addr, 4)
	s.onBan = func(ip netip.Addr) { banned <- ip }
	s.AddPeer(hostile)
	errc := runBackground(t, s)
	select {
	case ip := <-banned:
		if ip != hostile.Addr() {
			t.Fatalf("banned %v, want %v", ip, hostile.Addr())
		}
	case err := <-errc:
		t.Fatalf("Run returned before banning: %v", err)
	}
	return errc
}
