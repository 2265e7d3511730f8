package swarm

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magnetget/magnetget/torrentfile"
)

// v2Files: a multi-piece file (its piece layer is 5 hashes), files of one piece and of less
// than a block, an empty one, and one ending mid-piece before another: padding in the v1 view.
var v2Files = []testFile{
	{"a.bin", 150_000}, {"sub/b.bin", 40_000}, {"sub/c.txt", 333}, {"sub/empty", 0}, {"z.bin", 70_001},
}

// makeV2 writes tt's files under a fresh directory and creates a v2-only or hybrid torrent of
// them with torrentfile (the creator interop tests hold to libtorrent's).
func makeV2(t testing.TB, tt *testTorrent, hybrid bool) *torrentfile.Torrent {
	t.Helper()
	dir := t.TempDir()
	tt.writeFiles(t, dir)
	tor, err := torrentfile.CreateTorrent(context.Background(), filepath.Join(dir, tt.name),
		torrentfile.Options{PieceLength: 32 << 10, V2: !hybrid, Hybrid: hybrid})
	if err != nil {
		t.Fatal(err)
	}
	return tor
}

func truncV2(tor *torrentfile.Torrent) [20]byte {
	h, _ := tor.HashV2()
	return [20]byte(h[:20])
}

// noPadFiles fails when dir holds a BEP 47 padding file (".pad"): those are never written.
func noPadFiles(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(p, string(filepath.Separator)+".pad") {
			t.Errorf("padding written to disk: %s", p)
		}
		return nil
	})
}

// Issue 12: a v2-only torrent is downloaded under its truncated v2 infohash, every piece checked
// by merkle; the leecher starts with no piece layer (as from a btmh magnet) and gets them from
// the seeder with hash requests, each answer checked against the file's root from the info dict.
// The seeder answers from its .torrent's layers. Bytes on disk equal, no padding written, and
// the layers the leecher ends with are the .torrent's (what `meta` saves).
func TestV2DownloadFetchesPieceLayers(t *testing.T) {
	tt := makeTorrent(t, "v2set", 32<<10, v2Files, 52)
	tor := makeV2(t, tt, false)
	if len(tor.PieceLayers) == 0 {
		t.Fatal("test torrent has no piece layer to fetch")
	}
	ih := truncV2(tor)
	seed := startSeeder(t, tt, "127.0.0.2", func(c *Config) {
		c.InfoHash, c.Info, c.PieceLayers = ih, tor.Meta.InfoBytes, tor.PieceLayers
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: ih, Info: tor.Meta.InfoBytes, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(seed)
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	noPadFiles(t, dir)
	if got := s.PieceLayers(); !maps.EqualFunc(got, tor.PieceLayers, bytes.Equal) {
		t.Errorf("leecher ends with %d piece layers, the .torrent has %d (or they differ)", len(got), len(tor.PieceLayers))
	}
}

// A hybrid joined under its truncated v2 hash (a btmh or dual-xt magnet, metadata fetched that
// way): stored through its v1 half, padding files never written, layers learned from the seeder.
func TestHybridDownloadUnderV2Hash(t *testing.T) {
	tt := makeTorrent(t, "hybset", 32<<10, v2Files, 53)
	tor := makeV2(t, tt, true)
	ih := truncV2(tor)
	seed := startSeeder(t, tt, "127.0.0.3", func(c *Config) {
		c.InfoHash, c.Info, c.PieceLayers = ih, tor.Meta.InfoBytes, tor.PieceLayers
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: ih, Info: tor.Meta.InfoBytes, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(seed)
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	noPadFiles(t, dir)
}
