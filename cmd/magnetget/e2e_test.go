package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/torrentfile"
)

// writeTree makes a small multi-file tree: nested dirs, a zero-length file,
// a file smaller than a piece, sizes that leave an odd last piece.
func writeTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"a.bin":           randBytes(300_001),
		"sub/b.bin":       randBytes(70_000),
		"sub/deep/c.txt":  []byte("hello, swarm\n"),
		"empty.txt":       {},
		"sub/deep/d.data": randBytes(123_457),
	}
	for name, b := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func checkTree(t *testing.T, root string, want map[string][]byte) {
	t.Helper()
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s: %d bytes on disk differ from the original %d bytes", name, len(got), len(b))
		}
	}
}

// firstMagnet waits for the magnet line a seeder prints on stdout.
func firstMagnet(t *testing.T, out *syncBuffer) string {
	t.Helper()
	var m string
	waitFor(t, 60*time.Second, "the seeder's magnet link", func() bool {
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "magnet:?") {
				m = strings.TrimSpace(l)
				return true
			}
		}
		return false
	})
	return m
}

// TestSeedMetaGet is the whole product on loopback: one process seeds a
// tree and announces it in the DHT; others find it only through the DHT,
// write its .torrent, and download it byte for byte.
func TestSeedMetaGet(t *testing.T) {
	nodes := dhttest.Network(t, 16)
	tmp := t.TempDir()
	share := filepath.Join(tmp, "share", "album")
	want := writeTree(t, share)
	madeTorrent := filepath.Join(tmp, "album.torrent")

	_, out, errb := startBin(t, "seed", share, "-o", madeTorrent, "--listen", "/ip4/127.0.201.1/udp/0",
		"--bootstrap", bootFlag(nodes[0]), "--data-dir", t.TempDir(), "--piece-length", "16K", "--announce-interval", "2s")
	uri := firstMagnet(t, out)
	m, err := magnet.Parse(uri)
	if err != nil {
		t.Fatalf("seeder printed a bad magnet %q: %v", uri, err)
	}
	if m.Name != "album" || m.Length != 300_001+70_000+13+123_457 {
		t.Errorf("magnet dn/xl = %q/%d", m.Name, m.Length)
	}

	// meta: the written .torrent carries the very info dict the seeder made.
	gotTorrent := filepath.Join(tmp, "fetched.torrent")
	r := runBin(t, 90*time.Second, "meta", uri, "-o", gotTorrent, "--print", "--listen", "/ip4/127.0.202.1/udp/0",
		"--bootstrap", bootFlag(nodes[5]), "--data-dir", t.TempDir(), "--timeout", "60s")
	if r.code != 0 {
		t.Fatalf("meta: exit %d\nstdout:\n%s\nstderr:\n%s\nseeder stderr:\n%s", r.code, r.stdout, r.stderr, errb.String())
	}
	orig, err := torrentfile.Load(madeTorrent)
	if err != nil {
		t.Fatal(err)
	}
	fetched, err := torrentfile.Load(gotTorrent)
	if err != nil {
		t.Fatalf("the fetched .torrent does not load: %v", err)
	}
	if !bytes.Equal(orig.InfoBytes, fetched.InfoBytes) {
		t.Fatal("fetched info dict differs from the seeder's")
	}
	if !strings.Contains(r.stdout, "sub/deep/c.txt") {
		t.Errorf("--print does not list the files:\n%s", r.stdout)
	}
	// An existing file is not overwritten without --force.
	r = runBin(t, 90*time.Second, "meta", uri, "-o", gotTorrent, "--listen", "/ip4/127.0.202.2/udp/0",
		"--bootstrap", bootFlag(nodes[6]), "--data-dir", t.TempDir(), "--timeout", "60s")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "--force") {
		t.Errorf("meta over an existing file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// get: the magnet downloads, byte for byte.
	dl := filepath.Join(tmp, "dl")
	r = runBin(t, 120*time.Second, "get", uri, "-o", dl, "--listen", "/ip4/127.0.203.1/udp/0",
		"--bootstrap", bootFlag(nodes[9]), "--data-dir", t.TempDir())
	if r.code != 0 {
		t.Fatalf("get: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	checkTree(t, filepath.Join(dl, "album"), want)

	// The default command takes a .torrent file as well.
	dl2 := filepath.Join(tmp, "dl2")
	r = runBin(t, 120*time.Second, gotTorrent, "-o", dl2, "--json", "--listen", "/ip4/127.0.203.2/udp/0",
		"--bootstrap", bootFlag(nodes[11]), "--data-dir", t.TempDir())
	if r.code != 0 || !strings.Contains(r.stdout, `"event":"done"`) {
		t.Fatalf("get from .torrent: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	checkTree(t, filepath.Join(dl2, "album"), want)
}

func TestCreateIsDeterministic(t *testing.T) {
	tmp := t.TempDir()
	share := filepath.Join(tmp, "tree")
	writeTree(t, share)
	a, b := filepath.Join(tmp, "a.torrent"), filepath.Join(tmp, "b.torrent")
	r1 := runBin(t, 30*time.Second, "create", share, "-o", a)
	r2 := runBin(t, 30*time.Second, "create", share, "-o", b, "--comment", "same content")
	if r1.code != 0 || r2.code != 0 {
		t.Fatalf("create: %d %d\n%s\n%s", r1.code, r2.code, r1.stderr, r2.stderr)
	}
	if r1.stdout != r2.stdout || !strings.HasPrefix(r1.stdout, "magnet:?xt=urn:btih:") {
		t.Fatalf("same tree gave different magnets:\n%s%s", r1.stdout, r2.stdout)
	}
	if r := runBin(t, 30*time.Second, "create", share, "-o", a); r.code == 0 {
		t.Error("create overwrote an existing .torrent without --force")
	}
}

// TestSeedExistingTorrentAndSelect seeds a .torrent made earlier from the
// directory that holds its data, and downloads only some files of it.
func TestSeedExistingTorrentAndSelect(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	tmp := t.TempDir()
	parent := filepath.Join(tmp, "data")
	want := writeTree(t, filepath.Join(parent, "album"))
	tf := filepath.Join(tmp, "album.torrent")
	if r := runBin(t, 30*time.Second, "create", filepath.Join(parent, "album"), "-o", tf, "--piece-length", "16K"); r.code != 0 {
		t.Fatalf("create: %s", r.stderr)
	}
	_, out, errb := startBin(t, "seed", "--torrent", tf, parent, "--print-peer", "--listen", "/ip4/127.0.207.1/udp/0",
		"--bootstrap", bootFlag(nodes[0]), "--data-dir", t.TempDir())
	uri := firstMagnet(t, out)

	dl := filepath.Join(tmp, "dl")
	r := runBin(t, 90*time.Second, "get", uri, "-o", dl, "--select", "*.txt", "--listen", "/ip4/127.0.207.2/udp/0",
		"--bootstrap", bootFlag(nodes[1]), "--data-dir", t.TempDir())
	if r.code != 0 {
		t.Fatalf("get --select: exit %d\n%s\nseeder:\n%s", r.code, r.stderr, errb.String())
	}
	checkTree(t, filepath.Join(dl, "album"), map[string][]byte{"sub/deep/c.txt": want["sub/deep/c.txt"], "empty.txt": want["empty.txt"]})
	if b, err := os.ReadFile(filepath.Join(dl, "album", "a.bin")); err == nil && bytes.Equal(b, want["a.bin"]) {
		t.Error("an unselected 300 kB file was downloaded whole")
	}
}

// TestSeedVerboseShowsPerPeerUpload: a seeder run with --verbose lists each
// peer it uploads to with up-to-date figures.
func TestSeedVerboseShowsPerPeerUpload(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	tmp := t.TempDir()
	data := randBytes(1 << 20)
	if err := os.WriteFile(filepath.Join(tmp, "one.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, errb := startBin(t, "seed", filepath.Join(tmp, "one.bin"), "-o", filepath.Join(tmp, "one.torrent"), "--print-peer",
		"--verbose", "--status-interval", "200ms", "--listen", "/ip4/127.0.208.1/udp/0", "--bootstrap", bootFlag(nodes[0]), "--data-dir", t.TempDir())
	uri := firstMagnet(t, out)
	dl := filepath.Join(tmp, "dl")
	r := runBin(t, 60*time.Second, "get", uri, "-o", dl, "--seed", "--seed-time", "2s", "--listen", "/ip4/127.0.208.2/udp/0",
		"--bootstrap", bootFlag(nodes[1]), "--data-dir", t.TempDir())
	if r.code != 0 {
		t.Fatalf("get: exit %d\n%s", r.code, r.stderr)
	}
	// The downloader dials from an address of the kernel's choice, so the
	// line is recognised by its client name and figures.
	if !strings.Contains(errb.String(), `  peer /ip4/127.`) || !strings.Contains(errb.String(), `"magnetget": uploaded 1.0 MiB`) {
		t.Fatalf("the seeder's verbose status does not show the peer it uploaded 1 MiB to:\n%s", errb.String())
	}
}
