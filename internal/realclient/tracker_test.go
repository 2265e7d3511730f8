package realclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

func TestTrackerAnnounce(t *testing.T) {
	tr, err := realclient.StartTracker(netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ih := [20]byte{0xff, 1, 2}
	seed := netip.MustParseAddrPort("127.0.100.1:6881")
	tr.Add(ih, seed)
	get := func(q string) string {
		t.Helper()
		resp, err := http.Get(tr.URL() + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	q := "info_hash=" + url.QueryEscape(string(ih[:])) + "&port=7000&compact=1"
	body := get(q)
	want := "d8:intervali5e12:min intervali1e5:peers6:\x7f\x00\x64\x01\x1a\xe16:peers60:e"
	if body != want {
		t.Fatalf("announce reply %q, want %q", body, want)
	}
	if got := tr.Peers(ih); !slices.Contains(got, netip.MustParseAddrPort("127.0.0.1:7000")) {
		t.Fatalf("announcer not recorded: %v", got)
	}
	get(q + "&event=stopped")
	if got := tr.Peers(ih); len(got) != 1 || got[0] != seed {
		t.Fatalf("after stopped: %v, want only %v", got, seed)
	}
	if body := get("info_hash=short&port=1"); !strings.HasPrefix(body, "d14:failure reason") {
		t.Fatalf("bad info_hash answered %q", body)
	}
}

func TestParseAnnounce(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	ih := url.QueryEscape(strings.Repeat("a", 20))
	a, err := realclient.ParseAnnounce("info_hash="+ih+"&port=51413&ip=127.0.102.1&event=started", lo)
	if err != nil || a.Peer != netip.MustParseAddrPort("127.0.102.1:51413") || a.Event != "started" {
		t.Fatalf("ParseAnnounce = %+v, %v", a, err)
	}
	a, err = realclient.ParseAnnounce("info_hash="+ih+"&port=1&ip=8.8.8.8", lo)
	if err != nil || a.Peer.Addr() != lo {
		t.Fatalf("a public ip= must be ignored: %+v, %v", a, err)
	}
	for _, q := range []string{"", "info_hash=" + ih, "info_hash=" + ih + "&port=0", "info_hash=" + ih + "&port=70000", "info_hash=x&port=1", "%zz", strings.Repeat("a", 5000)} {
		if _, err := realclient.ParseAnnounce(q, lo); !errors.Is(err, realclient.ErrBadAnnounce) {
			t.Errorf("ParseAnnounce(%.40q) = %v, want ErrBadAnnounce", q, err)
		}
	}
}

func FuzzParseAnnounce(f *testing.F) {
	f.Add("info_hash=" + url.QueryEscape(strings.Repeat("a", 20)) + "&port=51413&ip=127.0.102.1&event=started")
	f.Add("info_hash=%00%01&port=1")
	f.Fuzz(func(t *testing.T, q string) {
		a, err := realclient.ParseAnnounce(q, netip.MustParseAddr("127.0.0.1"))
		if err == nil && (a.Peer.Port() == 0 || !a.Peer.Addr().IsLoopback()) {
			t.Fatalf("accepted %+v", a)
		}
	})
}

// aria2 and libtorrent find the libtorrent seeder through a loopback
// tracker alone (DHT off, no peer hints): aria2's fastest route to a peer.
func TestTrackerLeadsClientsToSeeder(t *testing.T) {
	rctest.Require(t, realclient.LibtorrentAvailable)
	p := rctest.Payload(t, realclient.PayloadSpec{Size: 2<<20 + 1})
	s := rctest.Seeder(t, p, nil)
	tr, err := realclient.StartTracker(netip.Addr{}, rctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Add(p.InfoHash, s.Addr())
	magnet := p.MagnetURI([]string{tr.URL()}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	t.Run("libtorrent", func(t *testing.T) {
		dir := t.TempDir()
		res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Magnet: magnet, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("libtorrent via tracker: metadata %v, done %v", res.Metadata, res.Total)
		rctest.Compare(t, p, dir)
	})
	t.Run("aria2", func(t *testing.T) {
		rctest.Require(t, realclient.Aria2Available)
		dir := t.TempDir()
		res, err := realclient.Aria2Download(ctx, realclient.Aria2Config{URI: magnet, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("aria2 via tracker: %v", res.Elapsed.Round(time.Millisecond))
		rctest.Compare(t, p, dir)
	})
}
