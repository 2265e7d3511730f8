package interop

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/torrentfile"
)

// Issue 5: the .torrent `magnetget create` writes is read alike by
// transmission-show, and libtorrent, checking the data on disk against it,
// agrees with every piece hash (it reports the torrent complete without
// downloading a byte).
func TestCreateAcceptedByRealClients(t *testing.T) {
	t.Parallel()
	rctest.Require(t, realclient.LibtorrentAvailable)
	p := rctest.Payload(t, realclient.PayloadSpec{Name: "created", Seed: 4301,
		Files: []realclient.FileSpec{
			{Path: "one.bin", Size: 300_001},
			{Path: "deep/er/two.bin", Size: 77_777},
			{Path: "deep/zero", Size: 0},
		}})
	out := filepath.Join(t.TempDir(), "created.torrent")
	r := mustRun(t, procTimeout, "create", filepath.Join(p.DataDir, p.Name), "-o", out, "--piece-length", "16K")
	m, err := magnet.Parse(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("create printed %q: %v", r.stdout, err)
	}
	mi, err := torrentfile.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if mi.HashInfoBytes() != m.InfoHash {
		t.Fatalf("create's magnet %x does not match its .torrent %x", m.InfoHash, mi.HashInfoBytes())
	}
	checkTransmissionShow(t, out, m.InfoHash, p.Name, len(p.Info.UpvertedFiles()))

	ctx, cancel := context.WithTimeout(t.Context(), procTimeout)
	defer cancel()
	res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Torrent: out, Dir: p.DataDir, IP: nextIP()})
	if err != nil {
		t.Fatalf("libtorrent does not find the data complete against magnetget's .torrent: %v", err)
	}
	if res.Bytes != p.Length {
		t.Fatalf("libtorrent verified %d bytes, want %d", res.Bytes, p.Length)
	}
	t.Logf("libtorrent verified magnetget's .torrent against the data in %v", res.Total.Round(time.Millisecond))
}
