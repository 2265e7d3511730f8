package swarm

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// interopPayload: several files with sizes that put no file on a page boundary, a zero-length
// file and a last piece of odd size.
var interopPayload = realclient.PayloadSpec{
	Name:        "interop",
	PieceLength: 64 << 10,
	Seed:        42,
	Files: []realclient.FileSpec{
		{Path: "a/one.bin", Size: 1<<20 + 333},
		{Path: "empty", Size: 0},
		{Path: "b/c/two.bin", Size: 2<<20 + 4097},
		{Path: "tiny.txt", Size: 17},
	},
}

// TestInteropDownloadFromLibtorrent: a libtorrent seeder serves the Swarm.
func TestInteropDownloadFromLibtorrent(t *testing.T) {
	rctest.Require(t, realclient.LibtorrentAvailable)
	p := rctest.Payload(t, interopPayload)
	seeder := rctest.Seeder(t, p, nil)
	dir := t.TempDir()
	s, err := New(Config{InfoHash: p.InfoHash, Info: p.InfoBytes, Dir: dir, Logger: rctest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(seeder.Addr())
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rctest.Compare(t, p, dir)
}

// TestInteropLibtorrentDownloadsFromUs: libtorrent downloads from a seeding Swarm.
func TestInteropLibtorrentDownloadsFromUs(t *testing.T) {
	rctest.Require(t, realclient.LibtorrentAvailable)
	p := rctest.Payload(t, interopPayload)
	ln := listen(t, "127.0.102.1")
	s, err := New(Config{InfoHash: p.InfoHash, Info: p.InfoBytes, Dir: p.DataDir, Listener: ln, Seed: true,
		Logger: rctest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-errc
	}()
	dir := filepath.Join(t.TempDir(), "lt")
	dctx, dcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer dcancel()
	res, err := realclient.LibtorrentDownload(dctx, realclient.DownloadConfig{
		Torrent: p.Torrent, Dir: dir, Peers: []netip.AddrPort{addrOf(ln)}, Logger: rctest.Logger(t),
	})
	if err != nil {
		t.Fatalf("libtorrent download: %v", err)
	}
	rctest.Compare(t, p, dir)
	t.Logf("libtorrent fetched %d bytes from us in %v", res.Bytes, res.Total)
}
