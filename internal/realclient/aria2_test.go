package realclient_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// aria2 finds the libtorrent seeder through the libtorrent DHT (one entry
// point) and fetches the metadata alone, or the metadata and the data.
// aria2's own timers make this take 10-25 s; the two runs go in parallel.
func TestAria2ViaLibtorrentDHT(t *testing.T) {
	rctest.Require(t, realclient.Aria2Available)
	// In parallel with the other shared-network tests: the aria2 runs take
	// 10-25 s of aria2's timers, and while they run their DHT nodes are
	// alive (a departed aria2 node costs later lookups a 15 s timeout).
	t.Parallel()
	d, _, p := sharedNet(t)
	t.Run("download", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
		defer cancel()
		dir := t.TempDir()
		res, err := realclient.Aria2Download(ctx, realclient.Aria2Config{
			URI: p.Magnet(), Dir: dir, DHTEntry: d.Addrs()[4], Logger: rctest.Logger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("aria2 magnet via libtorrent DHT: %v", res.Elapsed.Round(time.Millisecond))
		rctest.Compare(t, p, dir)
	})
	t.Run("metadata-only", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
		defer cancel()
		dir := t.TempDir()
		res, err := realclient.Aria2Download(ctx, realclient.Aria2Config{
			URI: p.Magnet(), Dir: dir, DHTEntry: d.Addrs()[11], MetadataOnly: true,
			IP: netip.MustParseAddr("127.0.103.1"),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("aria2 metadata via libtorrent DHT: %v", res.Elapsed.Round(time.Millisecond))
		mi, err := metainfo.LoadFromFile(res.Torrent)
		if err != nil {
			t.Fatal(err)
		}
		if got := mi.HashInfoBytes(); got != p.InfoHash {
			t.Fatalf("saved torrent hashes to %x, want %x", got, p.InfoHash)
		}
		if _, err := os.Stat(filepath.Join(dir, p.Name)); err == nil {
			t.Errorf("metadata-only run wrote the payload %s", p.Name)
		}
	})
}

// A libtorrent downloader fetches from an aria2 seeder it is told about
// directly (DHT off on both sides).
func TestLibtorrentFromAria2Seeder(t *testing.T) {
	rctest.Require(t, realclient.Aria2Available)
	rctest.Require(t, realclient.LibtorrentAvailable)
	p := rctest.Payload(t, realclient.PayloadSpec{Size: 3<<20 + 5})
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	s, err := realclient.StartAria2Seeder(ctx, realclient.Aria2SeedConfig{Torrent: p.Torrent, DataDir: p.DataDir, Logger: rctest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Magnet: p.Magnet(), Dir: dir, Peers: []netip.AddrPort{s.Addr()}})
	if err != nil {
		t.Fatalf("%v; aria2 output: %s", err, s.Output())
	}
	t.Logf("libtorrent from aria2 seeder (direct): metadata %v, done %v", res.Metadata, res.Total)
	rctest.Compare(t, p, dir)
}
