package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/swarm"
	"github.com/magnetget/magnetget/torrentfile"
)

// freePort returns a TCP port free on ip (an address no other test uses, so it stays free).
func freePort(t *testing.T, ip string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// TestGetTakesMetadataFromPeerThatDialsUs: the magnet names nothing but the infohash (no
// x.pe, no tracker, no DHT), and the only seeder dials us, as a seed told where its leechers
// are does. get asks that incoming peer for the metadata and downloads from it on the same
// connection. Before, the listener was only served once the swarm ran, which needs the
// metadata: get waited until --timeout.
func TestGetTakesMetadataFromPeerThatDialsUs(t *testing.T) {
	src := t.TempDir()
	mi, data := payload(t, src, "p.bin", 256<<10, torrentfile.Options{})
	ih := mi.HashInfoBytes()
	seeder, _ := runSwarm(t, swarm.Config{InfoHash: ih, Info: mi.InfoBytes, Dir: src, Seed: true, ReadOnly: true}, "")

	const client = "127.0.216.1"
	us := netip.AddrPortFrom(netip.MustParseAddr(client), freePort(t, client))
	out := t.TempDir()
	p := startIn(t, args("get", "magnet:?xt=urn:btih:"+hex.EncodeToString(ih[:]), "-o", out, "--json", "--timeout", "15s",
		"--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(), "--listen", fmt.Sprintf("/ip4/%s/tcp/%d", client, us.Port()))...)
	waitFor(t, 30*time.Second, "get looking for metadata", func() bool {
		return strings.Contains(p.stdout.String(), `"event":"metadata"`)
	})
	seeder.AddPeer(us)
	if code := p.wait(t, 40*time.Second); code != 0 {
		t.Fatalf("get: exit %d\nstderr:\n%s", code, p.stderr.String())
	}
	if got, err := os.ReadFile(filepath.Join(out, "p.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
}

// TestHybridTrackerEventsAndOneDial: a hybrid (v1+v2) magnet names a tracker, which names the
// one seeder under both swarm hashes, and x.pe names it too. Under each hash the tracker hears
// exactly one "started", one "completed" and one "stopped", and the seeder is dialled once.
// Before, the second hash's source never sent "completed", and a get that ended at completion
// could cut the first hash's "completed" short with its "stopped".
func TestHybridTrackerEventsAndOneDial(t *testing.T) {
	src := t.TempDir()
	_, data := payload(t, src, "h.bin", 300<<10, torrentfile.Options{})
	tor, err := torrentfile.CreateTorrent(context.Background(), filepath.Join(src, "h.bin"), torrentfile.Options{Hybrid: true, PieceLength: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	v1, _ := tor.HashV1()
	v2, _ := tor.HashV2()
	v2t := [20]byte(v2[:20])
	_, cl := runSwarm(t, swarm.Config{InfoHash: v2t, Info: tor.Meta.InfoBytes, PieceLayers: tor.PieceLayers, Dir: src,
		Seed: true, ReadOnly: true}, "127.0.217.1:0")
	seederAddr := cl.Addr().(*net.TCPAddr).AddrPort()
	rt := newRecordingTracker(t, seederAddr)
	m := &magnet.Magnet{InfoHash: v1, HasV1: true, InfoHashV2: v2, HasV2: true,
		Trackers: []string{rt.srv.URL + "/announce"}, Peers: []string{seederAddr.String()}}

	const client = "127.0.217.9"
	out := t.TempDir()
	r := runIn(t, 60*time.Second, args("get", m.String(), "-o", out, "--timeout", "30s", "--bootstrap-file", "/dev/null",
		"--data-dir", t.TempDir(), "--listen", "/ip4/"+client+"/udp/0")...)
	if r.code != 0 {
		t.Fatalf("get: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(out, "h.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
	rt.mu.Lock()
	count := map[[20]byte]map[string]int{}
	for i, ev := range rt.events {
		if count[rt.hashes[i]] == nil {
			count[rt.hashes[i]] = map[string]int{}
		}
		count[rt.hashes[i]][ev]++
	}
	rt.mu.Unlock()
	for _, h := range []struct {
		name string
		ih   [20]byte
	}{{"v1", v1}, {"truncated v2", v2t}} {
		for _, ev := range []string{"started", "completed", "stopped"} {
			if n := count[h.ih][ev]; n != 1 {
				t.Errorf("%s hash %x: tracker got %d %q announces, want 1 (all: %v)", h.name, h.ih, n, ev, count)
			}
		}
	}
	if n := cl.counts()[netip.MustParseAddr(client)]; n != 1 {
		t.Errorf("the seeder, named under both hashes and by x.pe, was dialled %d times, want once", n)
	}
}

// TestLookupHybridBothHashes: a hybrid magnet's peers are announced under its v1 infohash, its
// truncated v2 one, or both; lookup prints each of them once, saying (--json) which hash found
// it. Before, it looked up the v1 hash alone and missed the peer announced only under v2.
func TestLookupHybridBothHashes(t *testing.T) {
	nodes := dhttest.Network(t, 16)
	v1 := randomIH(t)
	var v2 [32]byte
	copy(v2[:], randBytes(32))
	v2t := [20]byte(v2[:20])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peer := func(i int, port uint16) string {
		return maddr.FromAddrPort(netip.AddrPortFrom(nodes[i].Addr().Addr(), port), "tcp").String()
	}
	for _, a := range []struct {
		node int
		ih   [20]byte
		port uint16
	}{{5, v1, 51413}, {9, v2t, 51414}, {12, v1, 51415}, {12, v2t, 51415}} {
		if err := nodes[a.node].Announce(ctx, a.ih, int(a.port)); err != nil {
			t.Fatalf("announce: %v", err)
		}
	}
	m := &magnet.Magnet{InfoHash: v1, HasV1: true, InfoHashV2: v2, HasV2: true}
	r := runIn(t, 40*time.Second, "lookup", "--json", "--timeout", "20s", "--listen", "/ip4/127.0.218.1/udp/0",
		"--bootstrap", bootFlag(nodes[0]), "--data-dir", t.TempDir(), m.String())
	if r.code != 0 {
		t.Fatalf("lookup: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	seen := map[string]string{}
	for _, l := range lines(r.stdout) {
		var line lookupLine
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("bad line %q: %v", l, err)
		}
		if _, dup := seen[line.Peer]; dup {
			t.Errorf("peer %s printed twice", line.Peer)
		}
		seen[line.Peer] = line.InfoHash
	}
	want := map[string]string{peer(5, 51413): hex.EncodeToString(v1[:]), peer(9, 51414): hex.EncodeToString(v2t[:])}
	for p, ih := range want {
		if got, ok := seen[p]; !ok || got != ih {
			t.Errorf("peer %s: found under %q (present %v), want under %s\nstdout:\n%s", p, got, ok, ih, r.stdout)
		}
	}
	if got := seen[peer(12, 51415)]; got != hex.EncodeToString(v1[:]) && got != hex.EncodeToString(v2t[:]) {
		t.Errorf("peer announced under both hashes: found under %q\nstdout:\n%s", got, r.stdout)
	}
}

// TestGetTakesMetadataFromLibtorrentThatDialsUs: as TestGetTakesMetadataFromPeerThatDialsUs,
// with libtorrent as the seeder told to connect to us (it opens with an encrypted handshake
// and sends its ut_metadata offer at once).
func TestGetTakesMetadataFromLibtorrentThatDialsUs(t *testing.T) {
	rctest.Require(t, realclient.LibtorrentAvailable)
	src := t.TempDir()
	mi, data := payload(t, src, "lt.bin", 300<<10, torrentfile.Options{})
	tf := writeTorrentFile(t, mi, "lt.torrent")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	seeder, err := realclient.StartLibtorrentSeeder(ctx, realclient.SeederConfig{Torrent: tf, DataDir: src,
		IP: netip.MustParseAddr("127.0.216.5"), MaxLifetime: time.Minute, Logger: rctest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer seeder.Close()

	ih := mi.HashInfoBytes()
	const client = "127.0.216.6"
	us := netip.AddrPortFrom(netip.MustParseAddr(client), freePort(t, client))
	out := t.TempDir()
	p := startIn(t, args("get", "magnet:?xt=urn:btih:"+hex.EncodeToString(ih[:]), "-o", out, "--json", "--timeout", "30s",
		"--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(), "--listen", fmt.Sprintf("/ip4/%s/tcp/%d", client, us.Port()))...)
	waitFor(t, 30*time.Second, "get looking for metadata", func() bool {
		return strings.Contains(p.stdout.String(), `"event":"metadata"`)
	})
	if err := seeder.Connect(ctx, us); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 50*time.Second); code != 0 {
		t.Fatalf("get: exit %d\nstderr:\n%s", code, p.stderr.String())
	}
	if got, err := os.ReadFile(filepath.Join(out, "lt.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
}
