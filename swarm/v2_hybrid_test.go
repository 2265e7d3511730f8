package swarm

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/torrentfile"
)

// v2Server answers block requests and hash requests for a v2 or hybrid torrent from tt's data,
// as an honest peer would; corrupt, when not nil, may spoil a block before it is sent.
func v2Server(tt *testTorrent, tor *torrentfile.Torrent, corrupt func(m peerwire.Message, b []byte)) func(c *peerwire.Conn, m peerwire.Message) error {
	pl := tor.V2.PieceLength
	data := map[merkle.Hash][]byte{}
	for _, f := range tor.V2.Files {
		for i, tf := range tt.files {
			if tf.path == strings.Join(f.Path, "/") {
				data[f.PiecesRoot] = tt.data[i]
			}
		}
	}
	return func(c *peerwire.Conn, m peerwire.Message) error {
		switch m.ID {
		case peerwire.Request:
			pc, _ := tor.PieceV2(int64(m.Index))
			d := data[tor.V2.Files[pc.File].PiecesRoot]
			b := make([]byte, m.Length)
			if off := pc.Offset + int64(m.Begin); off < int64(len(d)) {
				copy(b, d[off:])
			}
			if corrupt != nil {
				corrupt(m, b)
			}
			return c.WriteMsg(peerwire.Message{ID: peerwire.Piece, Index: m.Index, Begin: m.Begin, Block: b})
		case peerwire.HashRequest:
			root, r, err := merkle.ParseRequest(m.Payload)
			if err != nil {
				return err
			}
			d := data[root]
			layer, _ := merkle.ParseHashes(tor.PieceLayers[root])
			if layer == nil {
				layer = []merkle.Hash{root} // a file of one piece
			}
			tree, err := merkle.NewTree(layer, pl, int64(len(d)))
			if err != nil {
				return err
			}
			hs, err := tree.Answer(r, func(piece int64) ([]merkle.Hash, error) {
				return merkle.LeafHashes(nil, d[piece*pl:min(int64(len(d)), (piece+1)*pl)]), nil
			})
			if err != nil {
				return c.WriteMsg(peerwire.Message{ID: peerwire.HashReject, Payload: m.Payload})
			}
			return c.WriteMsg(peerwire.Message{ID: peerwire.Hashes, Payload: merkle.AppendHashes(nil, root, r, hs)})
		}
		return nil
	}
}

// Issue 12: a hybrid torrent's piece that fails its SHA-1 check used to be fetched again whole,
// every sender blamed. Its v2 half knows better: with the piece layers (here from the .torrent)
// the block hashes asked of a peer, checked against the piece's v2 hash, show which 16 KiB block
// is bad, and only that block is fetched again, only its sender struck. A peer that spoils one
// block of one piece every time it sends it is the only peer at first, so it sends that piece
// whole; it is banned after its second bad copy of the block, and an honest seeder then gives
// the rest. The download takes exactly two blocks more than the torrent (two pieces more
// before), the honest seeder is never struck, the files are byte-identical.
func TestHybridBadBlockRefetchedAlone(t *testing.T) {
	const pl = 64 << 10 // four blocks a piece
	tt := makeTorrent(t, "hybbad", pl, []testFile{{"big.bin", 12*pl + 1000}, {"small.txt", 777}}, 57)
	tor := makeV2PL(t, tt, true, pl)
	if tor.V1 == nil || len(tor.PieceLayers) == 0 {
		t.Fatal("test torrent is not a hybrid with a piece layer")
	}
	ih := truncV2(tor)
	const badPiece, badBegin = 3, blockSize
	var spoiled, asked atomic.Int32 // bad copies sent; requests for the bad piece
	hostile := startFakePeer(t, "127.0.0.72", ih, helloHaveAll, v2Server(tt, tor, func(m peerwire.Message, b []byte) {
		if m.Index == badPiece {
			asked.Add(1)
			if m.Begin == badBegin {
				b[100] ^= 0xff
				spoiled.Add(1)
			}
		}
	}))
	dir := t.TempDir()
	s, err := New(Config{InfoHash: ih, Info: tor.Meta.InfoBytes, PieceLayers: tor.PieceLayers, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	errc := runUntilBan(t, s, hostile.addr)
	honest := startSeeder(t, tt, "127.0.0.73", func(c *Config) {
		c.InfoHash, c.Info, c.PieceLayers = ih, tor.Meta.InfoBytes, tor.PieceLayers
	})
	s.AddPeer(honest)
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	noPadFiles(t, dir)

	s.mu.Lock()
	down, bad, total := s.down, s.badBlocks, s.layout.Total
	honestStrikes := s.bans.m[senderKey(honest.Addr())]
	s.mu.Unlock()
	if n := spoiled.Load(); n != 2 || bad != 2 {
		t.Errorf("%d bad copies sent, %d found by block hashes: want 2 and 2 (the second copy bans)", n, bad)
	}
	if want := total + 2*blockSize; down != want {
		t.Errorf("downloaded %d bytes for a %d-byte stream: want %d (the bad block twice more), not whole pieces again", down, total, want)
	}
	// Piece 3 from the spoiling peer: its four blocks, then the bad one once more.
	if n := asked.Load(); n != pl/blockSize+1 {
		t.Errorf("the spoiling peer was asked %d times for blocks of the bad piece, want %d", n, pl/blockSize+1)
	}
	if honestStrikes != nil {
		t.Errorf("the honest seeder has %d strikes, want none", honestStrikes.strikes)
	}
	if b := s.Banned(); !slices.Contains(b, hostile.addr.Addr()) || slices.Contains(b, honest.Addr()) {
		t.Errorf("banned %v: want the spoiling peer %v and not the seeder %v", b, hostile.addr.Addr(), honest.Addr())
	}
}

// The same with two senders in the bad piece: the spoiling peer sends its first block spoiled and
// rejects the others (so it no longer counts as having the piece), the honest seeder sends the
// rest. The SHA-1 check cannot say who is wrong and used to strike both; the block hashes (asked
// of the seeder, the one peer left with the piece) prove the spoiled block alone bad: only it is
// fetched again, only its sender struck (two strikes, a proven fault), the seeder none.
func TestHybridBadBlockBlamesOnlyItsSender(t *testing.T) {
	const pl = 64 << 10
	tt := makeTorrent(t, "hybblame", pl, []testFile{{"big.bin", 6*pl + 5000}, {"small.txt", 999}}, 58)
	tor := makeV2PL(t, tt, true, pl)
	ih := truncV2(tor)
	const badPiece = 2
	var (
		mu       sync.Mutex
		sentBad  bool
		held     []peerwire.Message // rejects held until the spoiled block is out
		rejected atomic.Int32
	)
	serve := v2Server(tt, tor, func(m peerwire.Message, b []byte) {
		if m.Index == badPiece && m.Begin == 0 {
			b[7] ^= 0x55
		}
	})
	hostile := startFakePeer(t, "127.0.0.74", ih, helloHaveAll, func(c *peerwire.Conn, m peerwire.Message) error {
		if m.ID != peerwire.Request || m.Index != badPiece {
			return serve(c, m)
		}
		mu.Lock()
		defer mu.Unlock()
		var out []peerwire.Message
		if m.Begin == 0 && !sentBad {
			sentBad = true
			if err := serve(c, m); err != nil {
				return err
			}
			out, held = held, nil
		} else {
			rej := peerwire.Message{ID: peerwire.Reject, Index: m.Index, Begin: m.Begin, Length: m.Length}
			if !sentBad {
				held = append(held, rej)
				return nil
			}
			out = []peerwire.Message{rej}
		}
		if err := c.WriteMsgs(out...); err != nil {
			return err
		}
		rejected.Add(int32(len(out)))
		return nil
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: ih, Info: tor.Meta.InfoBytes, PieceLayers: tor.PieceLayers, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(hostile.addr)
	errc := runBackground(t, s)
	// The honest seeder joins once the spoiling peer has sent its block and rejected the rest.
	for rejected.Load() < pl/blockSize-1 {
		select {
		case err := <-errc:
			t.Fatalf("Run ended before the seeder joined: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	honest := startSeeder(t, tt, "127.0.0.75", func(c *Config) {
		c.InfoHash, c.Info, c.PieceLayers = ih, tor.Meta.InfoBytes, tor.PieceLayers
	})
	s.AddPeer(honest)
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)

	s.mu.Lock()
	down, bad, total := s.down, s.badBlocks, s.layout.Total
	hs, ss := s.bans.m[senderKey(hostile.addr.Addr())], s.bans.m[senderKey(honest.Addr())]
	s.mu.Unlock()
	if ss != nil {
		t.Errorf("the honest seeder, which sent good blocks of the bad piece, has %d strikes; want none", ss.strikes)
	}
	if hs == nil || hs.strikes != 2 {
		n := 0
		if hs != nil {
			n = hs.strikes
		}
		t.Errorf("the spoiling peer has %d strikes, want 2 (its block is proven bad)", n)
	}
	if want := total + blockSize; bad != 1 || down != want {
		t.Errorf("downloaded %d bytes for a %d-byte stream, %d bad blocks: want %d bytes, one block again", down, total, bad, want)
	}
}
