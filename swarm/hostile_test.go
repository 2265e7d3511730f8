package swarm

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// fakePeer is a hand-written peer for tests: it accepts connections for one torrent, claims
// to have every piece, unchokes, and answers requests through serve (nil: ignore them).
type fakePeer struct {
	addr    netip.AddrPort
	accepts atomic.Int32
	mu      sync.Mutex
	got     []peerwire.Message // every message received, for assertions
}

func startFakePeer(t testing.TB, ip string, ih [20]byte, hello func(c *peerwire.Conn) error,
	serve func(c *peerwire.Conn, m peerwire.Message) error) *fakePeer {
	t.Helper()
	ln := listen(t, ip)
	fp := &fakePeer{addr: addrOf(ln)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			fp.accepts.Add(1)
			wg.Add(1)
			go func(nc net.Conn) {
				defer wg.Done()
				c, err := peerwire.Accept(ctx, nc, func(h [20]byte) bool { return h == ih }, peerwire.Options{
					ExtHandshake: peerwire.ExtHandshake{M: map[string]int{"ut_pex": 7}}})
				if err != nil {
					return
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				defer c.Close()
				if err := hello(c); err != nil {
					return
				}
				for {
					m, err := c.ReadMsg()
					if err != nil {
						return
					}
					fp.mu.Lock()
					fp.got = append(fp.got, m)
					fp.mu.Unlock()
					if serve != nil {
						if err := serve(c, m); err != nil {
							return
						}
					}
				}
			}(nc)
		}
	}()
	return fp
}

func helloHaveAll(c *peerwire.Conn) error {
	return c.WriteMsgs(peerwire.Message{ID: peerwire.HaveAll}, peerwire.Message{ID: peerwire.Unchoke})
}

func TestCorruptPeerBanned(t *testing.T) {
	tt := makeTorrent(t, "corrupt", 32<<10, multiFiles, 4)
	// The hostile peer answers every request with random bytes of the right length.
	hostile := startFakePeer(t, "127.0.0.66", tt.ih, helloHaveAll, func(c *peerwire.Conn, m peerwire.Message) error {
		if m.ID != peerwire.Request {
			return nil
		}
		b := make([]byte, m.Length)
		for i := range b {
			b[i] = byte(rand.Uint32())
		}
		return c.WriteMsg(peerwire.Message{ID: peerwire.Piece, Index: m.Index, Begin: m.Begin, Block: b})
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// Only the hostile peer is known at first, so it must be the one banned.
	errc := runUntilBan(t, s, hostile.addr)
	s.AddPeer(hostile.addr) // ignored: banned
	s.AddPeer(startSeeder(t, tt, "127.0.0.7", nil))
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	if got := hostile.accepts.Load(); got != 1 {
		t.Errorf("hostile peer was dialled %d times, want 1", got)
	}
	if b := s.Banned(); len(b) != 1 || b[0] != hostile.addr.Addr() {
		t.Errorf("Banned() = %v", b)
	}
}

func TestBadBitfieldDisconnects(t *testing.T) {
	tt := makeTorrent(t, "bf", 32<<10, multiFiles, 5)
	// A bitfield one byte too long, all ones: it must be refused and the peer dropped before
	// we ask it for anything; the download completes from a good seeder.
	nPieces := (len(multiFilesStream(tt)) + 32<<10 - 1) / (32 << 10)
	bf := make([]byte, (nPieces+7)/8+1)
	for i := range bf {
		bf[i] = 0xff
	}
	bad := startFakePeer(t, "127.0.0.67", tt.ih, func(c *peerwire.Conn) error {
		return c.WriteMsgs(peerwire.Message{ID: peerwire.Bitfield, Bitfield: bf}, peerwire.Message{ID: peerwire.Unchoke})
	}, nil)
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(bad.addr)
	s.AddPeer(startSeeder(t, tt, "127.0.0.8", nil))
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	if bad.accepts.Load() != 1 {
		t.Fatalf("bad peer accepted %d connections, want 1", bad.accepts.Load())
	}
	bad.mu.Lock()
	defer bad.mu.Unlock()
	for _, m := range bad.got {
		if m.ID == peerwire.Request || m.ID == peerwire.Interested {
			t.Errorf("peer with a bad bitfield was sent %v", m)
		}
	}
}

func TestResumeAfterCancel(t *testing.T) {
	tt := makeTorrent(t, "resume", 64<<10, []testFile{{"a.bin", 3<<20 + 5}, {"b/c.bin", 1<<20 + 77}}, 6)
	seed := startSeeder(t, tt, "127.0.0.9", nil)
	dir := t.TempDir()

	// First run: slowed down, cancelled once some pieces are verified.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s1, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, DownloadLimit: 1 << 20,
		OnProgress: func(p Progress) {
			if p.Done >= 1<<20 {
				cancel()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	s1.AddPeer(seed)
	if err := runUntil(t, s1, ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first Run: %v, want context.Canceled", err)
	}
	verified := s1.picker.HaveField()
	if verified.Count() == 0 || verified.Count() == verified.Len() {
		t.Fatalf("first run verified %d of %d pieces; the test needs a partial download", verified.Count(), verified.Len())
	}

	// Second run: completes without requesting any piece verified before.
	s2, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	requested := map[int]int{}
	s2.onRequest = func(i int) {
		mu.Lock()
		requested[i]++
		mu.Unlock()
	}
	s2.AddPeer(seed)
	if err := runUntil(t, s2, context.Background()); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	tt.checkFiles(t, dir)
	if len(requested) == 0 {
		t.Fatal("second run requested nothing")
	}
	for i := range requested {
		if verified.Has(i) {
			t.Errorf("second run requested piece %d, verified by the first", i)
		}
	}
}

// TestUnrequestedBlocksIgnored: a peer that pushes blocks nobody asked for (here garbage for
// each piece we announce as verified) must not get them written.
func TestUnrequestedBlocksIgnored(t *testing.T) {
	tt := makeTorrent(t, "unasked", 32<<10, []testFile{{"x.bin", 1 << 20}}, 12)
	// Slow enough that pushes for early pieces arrive while the download runs.
	seed := startSeeder(t, tt, "127.0.0.20", func(c *Config) { c.UploadLimit = 512 << 10 })
	var pushed atomic.Int32
	pusher := startFakePeer(t, "127.0.0.21", tt.ih, func(c *peerwire.Conn) error {
		return c.WriteMsg(peerwire.Message{ID: peerwire.HaveNone})
	}, func(c *peerwire.Conn, m peerwire.Message) error {
		if m.ID != peerwire.Have {
			return nil
		}
		pushed.Add(1)
		junk := make([]byte, blockSize)
		for i := range junk {
			junk[i] = 0xAA
		}
		return c.WriteMsg(peerwire.Message{ID: peerwire.Piece, Index: m.Index, Begin: 0, Block: junk})
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(pusher.addr)
	s.AddPeer(seed)
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	if pushed.Load() == 0 {
		t.Fatal("the pusher never heard of a verified piece; the test proved nothing")
	}
}
