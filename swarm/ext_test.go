package swarm

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/swarm/pex"
)

// TestMagnetFlow fetches the info dict from a seeding Swarm with metadata.Fetch (so the swarm
// answers ut_metadata through metadata.Serve), then downloads over the same connections.
func TestMagnetFlow(t *testing.T) {
	tt := makeTorrent(t, "magnet", 32<<10, multiFiles, 7)
	seed := startSeeder(t, tt, "127.0.0.10", nil)
	peers := make(chan netip.AddrPort, 1)
	peers <- seed
	close(peers)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	res, err := metadata.Fetch(ctx, tt.ih, peers, metadata.Options{})
	t.Logf("Fetch took %v", time.Since(start))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if string(res.Info) != string(tt.info) {
		t.Fatal("fetched info differs")
	}
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: res.Info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Conns {
		s.AddConn(c)
	}
	if len(res.Conns) == 0 {
		t.Fatal("Fetch returned no connection")
	}
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
}

// TestPex: the downloader knows only a peer that has nothing but tells (BEP 11) where a seeder
// is; the download can only complete through PEX. The downloader's own PEX to that peer must
// then list the seeder.
func TestPex(t *testing.T) {
	tt := makeTorrent(t, "pex", 32<<10, multiFiles, 8)
	seed := startSeeder(t, tt, "127.0.0.11", nil)
	gotPex := make(chan pex.Message, 4)
	tip := startFakePeer(t, "127.0.0.12", tt.ih, func(c *peerwire.Conn) error {
		if err := c.WriteMsg(peerwire.Message{ID: peerwire.HaveNone}); err != nil {
			return err
		}
		var early []peerwire.Message
		for c.PeerExt().M["ut_pex"] == 0 {
			m, err := c.ReadMsg()
			if err != nil {
				return err
			}
			early = append(early, m)
		}
		c.Unread(early...)
		payload := pex.Encode(pex.Message{Added: []netip.AddrPort{seed}})
		return c.WriteMsg(peerwire.Message{ID: peerwire.Extended, ExtID: byte(c.PeerExt().M["ut_pex"]), Payload: payload})
	}, func(c *peerwire.Conn, m peerwire.Message) error {
		if m.ID == peerwire.Extended && m.ExtID == 7 { // our ut_pex id in the fake's handshake
			msg, err := pex.Decode(m.Payload)
			if err != nil {
				return err
			}
			gotPex <- msg
		}
		return nil
	})
	dir := t.TempDir()
	done := make(chan struct{})
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, Seed: true,
		OnProgress: func(p Progress) {
			if p.Complete {
				select {
				case <-done:
				default:
					close(done)
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(tip.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-done:
	case err := <-errc:
		t.Fatalf("Run ended before completing: %v", err)
	}
	tt.checkFiles(t, dir)
	select {
	case msg := <-gotPex:
		if !slices.Contains(msg.Added, seed) {
			t.Errorf("our PEX listed %v, want the seeder %v", msg.Added, seed)
		}
	case err := <-errc:
		t.Fatalf("Run ended: %v", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}
}
