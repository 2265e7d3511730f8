package realclient_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// Thirty libtorrent nodes form a network, a libtorrent seeder announces a
// torrent into it, another node's lookup finds the seeder, and a libtorrent
// downloader fetches the magnet (metadata, then data) through the DHT alone.
func TestLibtorrentDHTSeederDownloader(t *testing.T) {
	start := time.Now()
	t.Parallel()
	d, s, p := sharedNet(t)
	t.Logf("shared network (30 nodes, seeder announced) ready in %v (0 if another test started it)", time.Since(start).Round(time.Millisecond))
	if counts := d.NodeCounts(); len(counts) != 30 || slices.Min(counts) < 8 {
		t.Fatalf("routing tables %v: want 30 nodes with >= 8 entries each", counts)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start = time.Now()
	peers, err := d.GetPeers(ctx, 17, p.InfoHash)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(peers, s.Addr()) {
		t.Fatalf("get_peers from node 17 returned %v, want the seeder %v among them", peers, s.Addr())
	}
	t.Logf("libtorrent get_peers found the seeder in %v", time.Since(start).Round(time.Millisecond))

	t.Run("download", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "dl")
		res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{
			Magnet: p.Magnet(), Dir: dir, Bootstrap: d.Addrs()[5:8], Logger: rctest.Logger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("libtorrent magnet via DHT: metadata %v, done %v (wall %v), %d bytes", res.Metadata, res.Total, res.Wall, res.Bytes)
		if res.Bytes != p.Length {
			t.Errorf("libtorrent reports %d bytes done, want %d", res.Bytes, p.Length)
		}
		rctest.Compare(t, p, dir)
	})
	t.Run("metadata-only", func(t *testing.T) {
		dir := t.TempDir()
		res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{
			Magnet: p.Magnet(), Dir: dir, Bootstrap: d.Addrs()[9:10], MetadataOnly: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("libtorrent metadata via DHT: %v (wall %v)", res.Metadata, res.Wall)
		mi, err := metainfo.LoadFromFile(res.Torrent)
		if err != nil {
			t.Fatal(err)
		}
		if got := mi.HashInfoBytes(); got != p.InfoHash {
			t.Fatalf("saved torrent hashes to %x, want %x", got, p.InfoHash)
		}
	})
	t.Run("direct-peer-no-dht", func(t *testing.T) {
		dir := t.TempDir()
		res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{
			Magnet: p.Magnet(), Dir: dir, Peers: []netip.AddrPort{s.Addr()},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("libtorrent magnet from a direct peer: metadata %v, done %v", res.Metadata, res.Total)
		rctest.Compare(t, p, dir)
	})
}

// One node announces an infohash and another node's lookup finds it.
func TestLibtorrentDHTAnnounceGetPeers(t *testing.T) {
	t.Parallel()
	d, _, _ := sharedNet(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ih := [20]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	want, err := d.Announce(ctx, 3, ih)
	if err != nil {
		t.Fatal(err)
	}
	if want != d.Addrs()[3] {
		t.Errorf("node 3 announced as %v, want its address %v", want, d.Addrs()[3])
	}
	// The announce traversal runs in the background: look until it landed.
	start := time.Now()
	if err := d.FindPeer(ctx, 25, ih, want); err != nil {
		t.Fatalf("%v (found %v)", err, d.Peers(25, ih))
	}
	t.Logf("node 25 found node 3's announce %v after %v", want, time.Since(start).Round(time.Millisecond))
}

// A second network given the first one's nodes as Bootstrap (the way a
// libtorrent network joins magnetget nodes) fills its tables from them.
func TestLibtorrentDHTExternalBootstrap(t *testing.T) {
	t.Parallel()
	d, _, _ := sharedNet(t)
	small := rctest.DHTConfig(t, realclient.DHTConfig{Nodes: 2, FirstSubnet: 200, Bootstrap: d.Addrs()[:3]}, 5)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// And a node of the big network now answers lookups made from it.
	if err := d.AddNode(ctx, small.Addrs()[1]); err != nil {
		t.Fatal(err)
	}
	_, s, p := sharedNet(t)
	if err := small.FindPeer(ctx, 1, p.InfoHash, s.Addr()); err != nil {
		t.Fatal(err)
	}
}
