package interop

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/torrentfile"
)

// Issue 2: `magnetget lookup` joined to a libtorrent DHT prints the address
// a libtorrent seeder announced there.
func TestLookupFindsLibtorrentSeeder(t *testing.T) {
	t.Parallel()
	d, s, p := sharedWorld(t)
	want := maddr.FromAddrPort(s.Addr(), "tcp").String()
	// No --max-peers: a parallel test's `magnetget get` may announce itself
	// for the same torrent, and the seeder must be among what is printed.
	r := lookupUntil(t, want, append([]string{"lookup", p.Hex(), "--timeout", "40s"}, dhtArgs(t, some(d.Addrs(), 5, 3))...))
	lines := strings.Fields(r.stdout)
	if !slices.Contains(lines, want) {
		t.Fatalf("lookup printed %q, want the libtorrent seeder %s", r.stdout, want)
	}
	for _, l := range lines {
		if _, err := maddr.ParseHostPort(l); err != nil || !strings.Contains(l, "/tcp/") {
			t.Errorf("lookup printed %q, not a TCP multiaddr: %v", l, err)
		}
	}
	t.Logf("magnetget lookup found the libtorrent seeder in %v", r.elapsed.Round(time.Millisecond))
}

// lookupUntil runs a lookup up to three times until its output holds want.
// A DHT traversal is not guaranteed to reach the nodes holding a peer (a
// reply lost on a loaded machine ends that branch); a user reruns, and so
// does the test, but a lookup that never finds the peer still fails it.
func lookupUntil(t *testing.T, want string, args []string) result {
	t.Helper()
	var r result
	for try := 1; try <= 3; try++ {
		r = runBin(t, procTimeout, args...)
		if r.code == 0 && strings.Contains(r.stdout, want) {
			return r
		}
		t.Logf("try %d: exit %d, %q not printed\nstdout:\n%s\nstderr:\n%s", try, r.code, want, r.stdout, r.stderr)
	}
	t.Fatalf("magnetget %s never printed %s", strings.Join(args, " "), want)
	return r
}

// Issue 2, --json: every line names the peer and the libtorrent node that
// gave it.
func TestLookupJSONNamesLibtorrentNode(t *testing.T) {
	t.Parallel()
	d, s, p := sharedWorld(t)
	want := `"peer":"` + maddr.FromAddrPort(s.Addr(), "tcp").String() + `"`
	r := lookupUntil(t, want, append([]string{"lookup", p.Magnet(), "--json", "--timeout", "40s"}, dhtArgs(t, some(d.Addrs(), 11, 3))...))
	if !strings.Contains(r.stdout, want) {
		t.Fatalf("lookup --json printed %q, want %s", r.stdout, want)
	}
	fromLT := false
	// The seeder is a libtorrent DHT node too (on its peer port): it answers for the
	// torrent it stores when our walk reaches it first, as one run in ~40 did.
	for _, a := range append(d.Addrs(), s.Addr()) {
		fromLT = fromLT || strings.Contains(r.stdout, `"from":"`+maddr.FromAddrPort(a, "udp").String()+`"`)
	}
	if !fromLT {
		t.Errorf("lookup --json does not name a libtorrent node as the source: %q", r.stdout)
	}
}

// Issue 2 and 3: `magnetget meta` finds a libtorrent seeder through the
// libtorrent DHT and writes a .torrent whose info dict is the original's,
// which transmission-show and libtorrent accept.
func TestMetaFromLibtorrentSeeder(t *testing.T) {
	t.Parallel()
	d, s, p := sharedWorld(t)
	out := filepath.Join(t.TempDir(), "fetched.torrent")
	r := mustRun(t, procTimeout, append([]string{"meta", p.Magnet(), "-o", out, "--timeout", "40s"},
		dhtArgs(t, some(d.Addrs(), 8, 3))...)...)
	t.Logf("magnetget meta from libtorrent via the DHT: %v", r.elapsed.Round(time.Millisecond))
	got, err := torrentfile.Load(out)
	if err != nil {
		t.Fatalf("the written .torrent does not load: %v", err)
	}
	if !bytes.Equal(got.InfoBytes, p.InfoBytes) {
		t.Fatalf("fetched info dict (%d bytes) differs from the original (%d bytes)", len(got.InfoBytes), len(p.InfoBytes))
	}
	checkTransmissionShow(t, out, p.InfoHash, p.Name, len(p.Info.UpvertedFiles()))

	// libtorrent accepts the file: it downloads the torrent it describes.
	dir := t.TempDir()
	res := rctest.Download(t, realclient.DownloadConfig{Torrent: out, Dir: dir, Peers: []netip.AddrPort{s.Addr()}, IP: nextIP()})
	rctest.Compare(t, p, dir)
	t.Logf("libtorrent downloaded from the written .torrent in %v", res.Total.Round(time.Millisecond))
}

// checkTransmissionShow fails t unless transmission-show reads torrent as
// the torrent with infohash ih, name and nfiles files.
func checkTransmissionShow(t *testing.T, torrent string, ih [20]byte, name string, nfiles int) {
	t.Helper()
	rctest.Require(t, realclient.TransmissionAvailable)
	ctx, cancel := context.WithTimeout(t.Context(), procTimeout)
	defer cancel()
	show, err := realclient.TransmissionShow(ctx, torrent)
	if err != nil {
		t.Fatalf("transmission-show rejects %s: %v", filepath.Base(torrent), err)
	}
	if show.InfoHash != ih || show.Name != name || len(show.Files) != nfiles {
		t.Fatalf("transmission-show reads %x %q with %d files, want %x %q with %d files\n%s",
			show.InfoHash, show.Name, len(show.Files), ih, name, nfiles, show.RawOutput)
	}
}

// Issue 4: the default command downloads a magnet from a libtorrent seeder
// found only through the libtorrent DHT, byte for byte (a zero-length file
// and a last piece shorter than the others included).
func TestGetFromLibtorrentSeeder(t *testing.T) {
	t.Parallel()
	d, _, p := sharedWorld(t)
	dir := t.TempDir()
	r := mustRun(t, procTimeout, append([]string{p.Magnet(), "-o", dir},
		dhtArgs(t, some(d.Addrs(), 14, 3))...)...)
	rctest.Compare(t, p, dir)
	t.Logf("magnetget downloaded %d bytes from libtorrent via the DHT in %v", p.Length, r.elapsed.Round(time.Millisecond))
}
