package interop

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
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

	// Issue 2 with aria2 as the DHT partner: its only entry point is the
	// magnetget node; it walks into the libtorrent DHT from there, finds the
	// seed's announce and downloads. Issue 10: a leecher that announced to
	// the seed's node and left (libtorrent's client in the subtest beside
	// this one does, when the seed's node is among the nearest to the
	// infohash and it finishes before aria2's first lookup) left our node
	// answering aria2 with that dead peer and no nodes, so aria2, knowing no
	// other node, never got past us. Such a leecher is announced here on
	// every run.
	t.Run("Aria2DownloadsViaMagnetgetDHTNode", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		rctest.Require(t, realclient.Aria2Available)
		announceGone(t, s.node, s.magnet.InfoHash)
		// aria2 retries DHT lookups on 5-10 s timers, twice here (metadata,
		// then pieces): 13-25 s alone.
		ctx, cancel := context.WithTimeout(t.Context(), 2*procTimeout)
		defer cancel()
		res, err := realclient.Aria2Download(ctx, realclient.Aria2Config{URI: s.uri, Dir: dir, DHTEntry: s.node, IP: nextIP()})
		if err != nil {
			t.Fatalf("%v\naria2's output:\n%s", err, res.Output)
		}
		rctest.Compare(t, p, dir)
		t.Logf("aria2 via the DHT from a magnetget entry point: %v", res.Elapsed.Round(time.Millisecond))
	})
}

// announceGone announces a peer that has gone away (nothing listens at its
// address) to the DHT node at node, as a leecher that announced and left.
func announceGone(t *testing.T, node netip.AddrPort, ih [20]byte) {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nextIP(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := [20]byte{'g', 'o', 'n', 'e'}
	ask := func(tid string, q []byte) krpc.Msg {
		t.Helper()
		if _, err := c.WriteToUDPAddrPort(q, node); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		for range 10 { // skip the node's own queries (it pings new sources)
			c.SetReadDeadline(time.Now().Add(procTimeout))
			k, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("no answer from the seed's DHT node: %v", err)
			}
			var m krpc.Msg
			if bencode.Unmarshal(buf[:k], &m) == nil && m.T == tid {
				return m
			}
		}
		t.Fatalf("no answer to %q from the seed's DHT node", tid)
		return krpc.Msg{}
	}
	m := ask("gp", fmt.Appendf(nil, "d1:ad2:id20:%s9:info_hash20:%se1:q9:get_peers1:t2:gp1:y1:qe", id[:], ih[:]))
	if m.R == nil || m.R.Token == nil {
		t.Fatalf("get_peers answer without a token: %+v", m)
	}
	tok := *m.R.Token
	// Port 1: nothing listens there, a dial is refused at once.
	m = ask("ap", fmt.Appendf(nil, "d1:ad2:id20:%s9:info_hash20:%s4:porti1e5:token%d:%se1:q13:announce_peer1:t2:ap1:y1:qe", id[:], ih[:], len(tok), tok))
	if m.R == nil {
		t.Fatalf("announce_peer refused: %+v", m)
	}
}
