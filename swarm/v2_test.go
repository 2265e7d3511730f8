package swarm

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/peerwire"
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
	return makeV2PL(t, tt, hybrid, 32<<10)
}

func makeV2PL(t testing.TB, tt *testTorrent, hybrid bool, pl int64) *torrentfile.Torrent {
	t.Helper()
	dir := t.TempDir()
	tt.writeFiles(t, dir)
	tor, err := torrentfile.CreateTorrent(context.Background(), filepath.Join(dir, tt.name),
		torrentfile.Options{PieceLength: pl, V2: !hybrid, Hybrid: hybrid})
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
	s := downloadUnderV2(t, tt, tor, "127.0.0.2")
	if got := s.PieceLayers(); !maps.EqualFunc(got, tor.PieceLayers, bytes.Equal) {
		t.Errorf("leecher ends with %d piece layers, the .torrent has %d (or they differ)", len(got), len(tor.PieceLayers))
	}
}

// A hybrid joined under its truncated v2 hash (a btmh or dual-xt magnet, metadata fetched that
// way): stored through its v1 half, padding files never written, layers learned from the seeder.
func TestHybridDownloadUnderV2Hash(t *testing.T) {
	tt := makeTorrent(t, "hybset", 32<<10, v2Files, 53)
	tor := makeV2(t, tt, true)
	downloadUnderV2(t, tt, tor, "127.0.0.3")
}

// downloadUnderV2 downloads tor under its truncated v2 hash, with no piece layer, from a seeder
// on seedIP that has them, and checks the files (bytes equal, no padding file written).
func downloadUnderV2(t *testing.T, tt *testTorrent, tor *torrentfile.Torrent, seedIP string) *Swarm {
	t.Helper()
	ih := truncV2(tor)
	seed := startSeeder(t, tt, seedIP, func(c *Config) {
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
	return s
}

// Issue 12: a peer sends one bad block in a v2 torrent. The piece fails its merkle check; the
// block hashes asked of a peer (this one, answering honestly, as a peer's own mistake would)
// and checked against the piece hash show which block is bad, and only that block is fetched
// again: the download takes exactly one block more than the torrent, not one piece more.
func TestV2BadBlockRefetchedAlone(t *testing.T) {
	const pl = 64 << 10
	tt := makeTorrent(t, "v2bad", pl, []testFile{{"big.bin", 12*pl + 1000}, {"small.txt", 777}}, 54)
	tor := makeV2PL(t, tt, false, pl)
	ih := truncV2(tor)
	const badPiece, badBegin = 3, blockSize
	var corrupted atomic.Bool
	hostile := startFakePeer(t, "127.0.0.68", ih, helloHaveAll, v2Server(tt, tor, func(m peerwire.Message, b []byte) {
		if m.Index == badPiece && m.Begin == badBegin && corrupted.CompareAndSwap(false, true) {
			b[100] ^= 0xff // once: the refetch is honest
		}
	}))
	dir := t.TempDir()
	s, err := New(Config{InfoHash: ih, Info: tor.Meta.InfoBytes, PieceLayers: tor.PieceLayers, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(hostile.addr)
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	if !corrupted.Load() {
		t.Fatal("the bad block was never sent")
	}
	s.mu.Lock()
	down, bad := s.down, s.badBlocks
	s.mu.Unlock()
	if bad != 1 || down != s.layout.Total+blockSize {
		t.Errorf("downloaded %d bytes for a %d-byte stream, %d bad blocks: want exactly one block (%d bytes) again",
			down, s.layout.Total, bad, blockSize)
	}
}

// A v2 seed answers hash requests from its piece layers and, for block hashes, from the pieces
// on disk; answers check against the file's root. What it cannot or will not answer is rejected:
// an unknown root, a request past the tree, and block hashes of more pieces than maxLeafAnswer
// lets one request read back.
func TestV2SeedAnswersHashRequests(t *testing.T) {
	tt := makeTorrent(t, "v2answer", 32<<10, v2Files, 55)
	tor := makeV2(t, tt, false)
	ih := truncV2(tor)
	old := maxLeafAnswer
	maxLeafAnswer = 64 << 10 // two pieces
	defer func() { maxLeafAnswer = old }()
	seed := startSeeder(t, tt, "127.0.0.69", func(c *Config) {
		c.InfoHash, c.Info, c.PieceLayers = ih, tor.Meta.InfoBytes, tor.PieceLayers
	})
	c, err := peerwire.Dial(t.Context(), seed, ih, peerwire.Options{V2: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := tor.V2.Files[0] // 150,000 bytes: 10 blocks, 16 leaves, 5 pieces of 2 blocks
	ask := func(root merkle.Hash, r merkle.HashRequest) ([]merkle.Hash, bool) {
		t.Helper()
		if err := c.WriteMsg(peerwire.Message{ID: peerwire.HashRequest, Payload: merkle.AppendRequest(nil, root, r)}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		for {
			m, err := c.ReadMsg()
			if err != nil {
				t.Fatal(err)
			}
			switch m.ID {
			case peerwire.Hashes:
				gotRoot, got, hs, err := merkle.ParseHashesMsg(m.Payload)
				if err != nil || gotRoot != root || got != r {
					t.Fatalf("answer %+v for %+v: %v", got, r, err)
				}
				return hs, true
			case peerwire.HashReject:
				return nil, false
			}
		}
	}
	for _, r := range []merkle.HashRequest{
		{BaseLayer: 1, Index: 0, Length: 8, ProofLayers: 2}, // the piece layer, padded, no uncles
		{BaseLayer: 0, Index: 4, Length: 2, ProofLayers: 3}, // piece 2's blocks, proof to the root
		{BaseLayer: 0, Index: 0, Length: 4, ProofLayers: 3}, // two pieces' blocks: within the bound
	} {
		hs, ok := ask(a.PiecesRoot, r)
		if !ok {
			t.Fatalf("request %+v rejected", r)
		}
		if err := merkle.VerifyHashes(a.PiecesRoot, a.Length, r, hs, nil); err != nil {
			t.Errorf("answer to %+v: %v", r, err)
		}
	}
	for _, tc := range []struct {
		root merkle.Hash
		r    merkle.HashRequest
	}{
		{merkle.Hash{1}, merkle.HashRequest{BaseLayer: 1, Length: 8, ProofLayers: 2}}, // not ours
		{a.PiecesRoot, merkle.HashRequest{BaseLayer: 4, Length: 2}},                   // past the root
		{a.PiecesRoot, merkle.HashRequest{BaseLayer: 0, Length: 8, ProofLayers: 3}},   // 4 pieces of blocks
	} {
		if _, ok := ask(tc.root, tc.r); ok {
			t.Errorf("request %+v for %x answered, want a reject", tc.r, tc.root[:2])
		}
	}
}

// A peer that answers our hash requests with hashes that do not lead to the file's root is cut
// off (nothing it said is kept), and the piece layers come from an honest seeder instead.
func TestV2LyingHashesRefused(t *testing.T) {
	tt := makeTorrent(t, "v2liar", 32<<10, v2Files, 56)
	tor := makeV2(t, tt, false)
	ih := truncV2(tor)
	var lies atomic.Int32
	liar := startFakePeer(t, "127.0.0.70", ih, helloHaveAll, func(c *peerwire.Conn, m peerwire.Message) error {
		if m.ID != peerwire.HashRequest {
			return nil
		}
		root, r, err := merkle.ParseRequest(m.Payload)
		if err != nil {
			return err
		}
		n, _ := r.Check(tor.V2.Files[0].Length)
		hs := make([]merkle.Hash, n)
		for i := range hs {
			hs[i][0] = byte(i + 1)
		}
		lies.Add(1)
		return c.WriteMsg(peerwire.Message{ID: peerwire.Hashes, Payload: merkle.AppendHashes(nil, root, r, hs)})
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: ih, Info: tor.Meta.InfoBytes, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(liar.addr)
	errc := runBackground(t, s)
	for lies.Load() == 0 || len(s.PeerStats()) > 0 {
		select {
		case err := <-errc:
			t.Fatalf("Run ended before the liar was dropped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n := len(s.PieceLayers()); n != 0 {
		t.Fatalf("%d piece layers taken from the liar", n)
	}
	s.AddPeer(startSeeder(t, tt, "127.0.0.71", func(c *Config) {
		c.InfoHash, c.Info, c.PieceLayers = ih, tor.Meta.InfoBytes, tor.PieceLayers
	}))
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
}
