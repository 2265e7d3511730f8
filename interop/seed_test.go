package interop

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/torrentfile"
)

// seeding is a `magnetget seed` process joined to the libtorrent DHT.
type seeding struct {
	magnet  *magnet.Magnet
	uri     string         // the magnet link it printed
	node    netip.AddrPort // its DHT node (UDP)
	peer    netip.AddrPort // its peer listener (TCP)
	torrent string         // the .torrent it wrote
	mi      *metainfo.MetaInfo
}

// startSeed runs `magnetget seed path` the way a user would: it makes the
// torrent itself, joins the DHT through three libtorrent nodes and
// announces. libtorrent is then told about its node (add_dht_node), as a
// long-running node would become known to the DHT.
func startSeed(t *testing.T, d *realclient.LibtorrentDHT, path string, extra ...string) *seeding {
	t.Helper()
	node, listen := listenOn(t)
	s := &seeding{node: node, peer: node, torrent: filepath.Join(t.TempDir(), "made.torrent")}
	args := []string{"seed", path, "-o", s.torrent, "--listen", listen, "--data-dir", t.TempDir()}
	for _, b := range some(d.Addrs(), 17, 3) {
		args = append(args, "--bootstrap", maddr.FromAddrPort(b, "udp").String())
	}
	r := startBin(t, append(args, extra...)...)
	s.uri = r.waitLine(t, "magnet:?", false)
	line := r.waitLine(t, "seeding ", true)
	if want := maddr.FromAddrPort(s.peer, "tcp").String(); !strings.Contains(line, want) {
		t.Fatalf("seed says %q, want it on %s", line, want)
	}
	var err error
	if s.magnet, err = magnet.Parse(s.uri); err != nil {
		t.Fatalf("seed printed a bad magnet %q: %v", s.uri, err)
	}
	if s.mi, err = torrentfile.Load(s.torrent); err != nil {
		t.Fatalf("seed wrote a .torrent that does not load: %v", err)
	}
	if s.mi.HashInfoBytes() != s.magnet.InfoHash {
		t.Fatalf("seed's magnet %s does not match its .torrent (%x)", s.uri, s.mi.HashInfoBytes())
	}
	ctx, cancel := context.WithTimeout(t.Context(), rctest.StartTimeout)
	defer cancel()
	if err := d.AddNode(ctx, s.node); err != nil {
		t.Fatal(err)
	}
	return s
}

// withTracker returns the seed's magnet with tr as its tracker, tr knowing
// the seeder (aria2 ignores x.pe hints).
func (s *seeding) withTracker(tr *realclient.Tracker) string {
	tr.Add(s.magnet.InfoHash, s.peer)
	m := *s.magnet
	m.Trackers = []string{tr.URL()}
	return m.String()
}

// Issues 2, 3, 4 and 5 from the other side: one `magnetget seed` of a
// multi-file tree (a zero-length file, a short last piece) serves real
// clients that find it through the DHT or a tracker.
func TestSeedServesRealClients(t *testing.T) {
	t.Parallel()
	d := sharedDHT(t)
	p := rctest.Payload(t, realclient.PayloadSpec{Name: "mgseed", Seed: 4201,
		Files: []realclient.FileSpec{
			{Path: "big.bin", Size: 1<<20 + 4321},
			{Path: "dir/empty", Size: 0},
			{Path: "dir/small.txt", Size: 9999},
		}})
	start := time.Now()
	s := startSeed(t, d, filepath.Join(p.DataDir, p.Name))
	t.Logf("magnetget seed up after %v: %s", time.Since(start).Round(time.Millisecond), s.uri)

	// Issue 2: libtorrent's own lookup finds the peer magnetget announced.
	t.Run("LibtorrentLookupFindsSeed", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), rctest.StartTimeout)
		defer cancel()
		start := time.Now()
		if err := d.FindPeer(ctx, 21, s.magnet.InfoHash, s.peer); err != nil {
			t.Fatalf("libtorrent never found magnetget's announce: %v (found %v)", err, d.Peers(21, s.magnet.InfoHash))
		}
		t.Logf("libtorrent node 21 found the magnetget seed after %v", time.Since(start).Round(time.Millisecond))
	})

	// Issues 4 and 5: libtorrent finds the seed via the DHT and downloads
	// from the magnet alone (metadata from magnetget, then every piece).
	t.Run("LibtorrentDownloadsMagnetViaDHT", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		res := rctest.Download(t, realclient.DownloadConfig{Magnet: s.uri, Dir: dir, Bootstrap: some(d.Addrs(), 2, 3), IP: nextIP()})
		rctest.Compare(t, p, dir)
		t.Logf("libtorrent: metadata after %v, done after %v", res.Metadata.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	})

	// Issue 5: the .torrent seed wrote is one libtorrent loads and downloads.
	t.Run("LibtorrentDownloadsWrittenTorrent", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		res := rctest.Download(t, realclient.DownloadConfig{Torrent: s.torrent, Dir: dir, Peers: []netip.AddrPort{s.peer}, IP: nextIP()})
		rctest.Compare(t, p, dir)
		t.Logf("libtorrent from the .torrent: done after %v", res.Total.Round(time.Millisecond))
	})

	t.Run("TransmissionShowReadsWrittenTorrent", func(t *testing.T) {
		t.Parallel()
		checkTransmissionShow(t, s.torrent, s.magnet.InfoHash, p.Name, len(p.Info.UpvertedFiles()))
	})

	// Issue 4: aria2 downloads from magnetget, introduced by a tracker.
	// FAILS until swarm accepts a late bitfield: aria2 sends a fresh
	// bitfield in place of 20 or more haves, and have_all once complete, at
	// any time; swarm/peer.go drops the peer ("second bitfield"), aria2
	// reconnects, and the download stalls after about 30 pieces.
	t.Run("Aria2DownloadsViaTracker", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		res := rctest.Aria2(t, realclient.Aria2Config{URI: s.withTracker(rctest.Tracker(t)), Dir: dir, IP: nextIP()})
		rctest.Compare(t, p, dir)
		t.Logf("aria2 via a tracker: %v", res.Elapsed.Round(time.Millisecond))
	})

	// Issue 3 reversed: aria2 fetches only the metadata, and saves the very
	// info dict magnetget made.
	t.Run("Aria2FetchesMetadata", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		res := rctest.Aria2(t, realclient.Aria2Config{URI: s.withTracker(rctest.Tracker(t)), Dir: dir, MetadataOnly: true, IP: nextIP()})
		got, err := torrentfile.Load(res.Torrent)
		if err != nil {
			t.Fatalf("aria2's saved .torrent: %v", err)
		}
		if !bytes.Equal(got.InfoBytes, s.mi.InfoBytes) {
			t.Fatalf("aria2 saved an info dict of %d bytes, magnetget served %d", len(got.InfoBytes), len(s.mi.InfoBytes))
		}
		t.Logf("aria2 metadata via a tracker: %v", res.Elapsed.Round(time.Millisecond))
	})

	// Issue 2 with aria2 as the DHT partner (FAILS on the bitfield bug above
	// too, once its download starts): its only entry point is the
	// magnetget node; it walks into the libtorrent DHT from there, finds the
	// seed's announce and downloads.
	t.Run("Aria2DownloadsViaMagnetgetDHTNode", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		// aria2 retries DHT lookups on 5-10 s timers, twice here (metadata,
		// then pieces): 13-25 s alone. Beside the whole interop suite an aria2
		// run now and then never finds the seed (1 run in 5: aria2 waited 120 s
		// with its lookups done), so a stuck run is retried once with a fresh
		// aria2 and the first one's output logged.
		rctest.Require(t, realclient.Aria2Available)
		var res realclient.Aria2Result
		var err error
		for try := 1; try <= 2; try++ {
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			res, err = realclient.Aria2Download(ctx, realclient.Aria2Config{URI: s.uri, Dir: dir, DHTEntry: s.node, IP: nextIP()})
			cancel()
			if err == nil {
				break
			}
			t.Logf("aria2 try %d: %v", try, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		rctest.Compare(t, p, dir)
		t.Logf("aria2 via the DHT from a magnetget entry point: %v", res.Elapsed.Round(time.Millisecond))
	})
}
