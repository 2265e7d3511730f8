package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/torrentfile"
)

// A plain web server is enough, with no peer and no DHT: `get` takes the URL of a .torrent,
// and a magnet whose xs= names that URL gets its metadata (and the .torrent's web seeds) from
// it; `meta` writes the same info dict. Served by nginx, a real HTTP server.
func TestExactSourceAndTorrentURL(t *testing.T) {
	src := t.TempDir()
	base := rctest.Nginx(t, src)
	mi, data := payload(t, src, "w.bin", 200<<10, torrentfile.Options{WebSeeds: []string{base}})
	tf := writeTorrentFile(t, mi, "w.torrent")
	raw, err := os.ReadFile(tf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "w.torrent"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	ih := mi.HashInfoBytes()
	mag := "magnet:?xt=urn:btih:" + hex.EncodeToString(ih[:]) + "&xs=" + base + "w.torrent"
	check := func(what, dir string, r result) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: exit %d\nstderr:\n%s", what, r.code, r.stderr)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "w.bin")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: downloaded file differs (err %v)", what, err)
		}
	}
	out := t.TempDir()
	check("get <url of a .torrent>", out, runIn(t, 60*time.Second, args("get", base+"w.torrent", "-o", out, offline(t))...))
	out = t.TempDir()
	check("get <magnet with xs=>", out, runIn(t, 60*time.Second, args("get", mag, "--timeout", "30s", "-o", out, offline(t))...))

	// meta keeps the web seeds, the magnet's ws= and the fetched .torrent's url-list.
	written := filepath.Join(t.TempDir(), "meta.torrent")
	r := runIn(t, 60*time.Second, args("meta", mag+"&ws=http://127.0.0.1:1/mirror/", "--timeout", "30s", "-o", written, offline(t))...)
	if r.code != 0 {
		t.Fatalf("meta <magnet with xs=>: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	got, err := torrentfile.Load(written)
	if err != nil || !bytes.Equal(got.InfoBytes, mi.InfoBytes) {
		t.Fatalf("meta wrote a .torrent that does not hold the info dict (err %v)", err)
	}
	if want := []string{"http://127.0.0.1:1/mirror/", base}; !slices.Equal(got.UrlList, want) {
		t.Errorf("meta wrote url-list %q, want %q", got.UrlList, want)
	}

	r = runIn(t, 60*time.Second, args("get", base+"missing.torrent", "-o", t.TempDir(), offline(t))...)
	if r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Fatalf("get <url that is not there>: exit %d, want 1 and the server's 404\nstderr:\n%s", r.code, r.stderr)
	}
}
