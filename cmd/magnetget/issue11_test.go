package main

import (
	"context"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/magnet"
)

// TestSeedPrintPeerIsHostPort: the x.pe we print is host:port, which
// libtorrent and qBittorrent read, not a multiaddr they drop.
func TestSeedPrintPeerIsHostPort(t *testing.T) {
	dir := t.TempDir()
	content := filepath.Join(dir, "payload.bin")
	if err := os.WriteFile(content, randBytes(40_000), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startIn(t, args("seed", content, "--print-peer", "-o", filepath.Join(dir, "p.torrent"),
		"--listen", "/ip4/127.0.240.30/tcp/0", offline(t))...)
	var line string
	waitFor(t, 30*time.Second, "the magnet", func() bool {
		for _, l := range lines(p.stdout.String()) {
			if strings.HasPrefix(l, "magnet:?") {
				line = l
				return true
			}
		}
		return false
	})
	m, err := magnet.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, "/ip4") || len(m.Peers) != 1 || !strings.HasPrefix(m.Peers[0], "127.0.240.30:") {
		t.Fatalf("want x.pe=127.0.240.30:PORT, got %s", line)
	}
	if _, err := netip.ParseAddrPort(m.Peers[0]); err != nil {
		t.Fatalf("x.pe %q is not host:port: %v", m.Peers[0], err)
	}
}

// TestWildcardListenHints: 0.0.0.0 and :: are never advertised; the host's
// own addresses are, or nothing with a note.
func TestWildcardListenHints(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.7"),
		netip.MustParseAddr("fe80::1"), netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("::1")}
	cases := []struct {
		bound string
		want  []string
	}{
		{"0.0.0.0:6881", []string{"192.0.2.7:6881"}},
		{"[::]:6881", []string{"192.0.2.7:6881", "[2001:db8::5]:6881"}},
		{"[2001:db8::9]:7000", []string{"[2001:db8::9]:7000"}},
		{"10.1.2.3:7000", []string{"10.1.2.3:7000"}},
	}
	for _, c := range cases {
		got, note := hintsFrom(netip.MustParseAddrPort(c.bound), addrs, nil)
		if !reflect.DeepEqual(got, c.want) || note != "" {
			t.Errorf("%s: got %q (note %q), want %q", c.bound, got, note, c.want)
		}
	}
	got, note := hintsFrom(netip.MustParseAddrPort("0.0.0.0:6881"), addrs[:1], nil)
	if got != nil || !strings.Contains(note, "--listen") {
		t.Errorf("loopback only: got %q, note %q; want no hint and a note naming --listen", got, note)
	}
	if _, note := hintsFrom(netip.MustParseAddrPort("[::]:1"), nil, errors.New("boom")); note == "" {
		t.Error("no note when the host's addresses are unknown")
	}
}

// TestBootstrapAcceptsHostPort: --bootstrap 127.0.1.1:6881 works like
// /ip4/127.0.1.1/udp/6881, in a flag and in a file.
func TestBootstrapAcceptsHostPort(t *testing.T) {
	nodes := dhttest.Network(t, 12)
	ih := randomIH(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[3].Announce(ctx, ih, 51413); err != nil {
		t.Fatal(err)
	}
	boot := nodes[0].Addr().String()
	r := runIn(t, 60*time.Second, "lookup", "--listen", "127.0.201.1:0", "--bootstrap", boot,
		"--data-dir", t.TempDir(), "--timeout", "20s", hex.EncodeToString(ih[:]))
	if r.code != 0 || !strings.Contains(r.stdout, "/tcp/51413") || strings.Contains(r.stderr, "bootstrap line") {
		t.Fatalf("--bootstrap %s: exit %d\nstdout:\n%s\nstderr:\n%s", boot, r.code, r.stdout, r.stderr)
	}
	f := filepath.Join(t.TempDir(), "boot.txt")
	os.WriteFile(f, []byte("# mixed\n"+nodes[1].Addr().String()+" # host:port\n"), 0o644)
	r = runIn(t, 60*time.Second, "lookup", "--listen", "127.0.201.2:0", "--bootstrap-file", f,
		"--data-dir", t.TempDir(), "--timeout", "20s", hex.EncodeToString(ih[:]))
	if r.code != 0 || !strings.Contains(r.stdout, "/tcp/51413") {
		t.Fatalf("--bootstrap-file with host:port: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// hostile is a name a stranger could give a torrent or a file: an OSC title
// change ended by BEL, a carriage return that hides what came before, a
// screen clear and a right-to-left override.
const hostile = "evil\x1b]0;owned\x07\rname\x1b[2J\u202e"

func TestEscRendersControlCharacters(t *testing.T) {
	cases := map[string]string{
		"plain name.mkv":           "plain name.mkv",
		"Ünïcödé 日本 a\\b":          "Ünïcödé 日本 a\\b",
		"a\x1b[31mred":             `a\x1b[31mred`,
		"line\rover\nnext\x07\x7f": `line\rover\nnext\x07\x7f`,
		"c1\u009b2J":               `c1\u009b2J`,
		"bidi\u202etxt.exe":        `bidi\u202etxt.exe`,
		"bad\xffutf8\\x":           `bad\xffutf8\\x`,
	}
	for in, want := range cases {
		if got := esc(in); got != want {
			t.Errorf("esc(%q) = %q, want %q", in, got, want)
		}
	}
}

// rawControl reports the first terminal control character in s other than
// the newlines that end lines.
func rawControl(s string) (rune, bool) {
	for _, r := range s {
		if r != '\n' && needsEscape(r) {
			return r, true
		}
	}
	return 0, false
}

// TestHostileNamesAreEscaped: a torrent whose name and file names carry
// terminal control sequences is created, seeded, fetched with meta --print
// and downloaded; no raw control character reaches the output.
func TestHostileNamesAreEscaped(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, hostile)
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "f\x1b[1Ax\r.bin"), randBytes(50_000), 0o644)
	os.WriteFile(filepath.Join(root, "bell\x07.txt"), []byte("ding"), 0o644)
	tf := filepath.Join(base, "t.torrent")

	seed := startIn(t, args("seed", root, "--print-peer", "-o", tf, "--listen", "/ip4/127.0.240.31/tcp/0", offline(t))...)
	var mag string
	waitFor(t, 30*time.Second, "the magnet", func() bool {
		for _, l := range lines(seed.stdout.String()) {
			if strings.HasPrefix(l, "magnet:?") {
				mag = l
				return true
			}
		}
		return false
	})
	if r, bad := rawControl(seed.stdout.String() + seed.stderr.String()); bad {
		t.Errorf("seed printed a raw %U:\n%q", r, seed.stderr.String())
	}
	meta := runIn(t, 60*time.Second, args("meta", mag, "--print", "--timeout", "20s", "-o", filepath.Join(base, "m.torrent"), offline(t))...)
	if meta.code != 0 || !strings.Contains(meta.stdout, `evil\x1b]0;owned\x07\rname`) {
		t.Fatalf("meta --print: exit %d\nstdout:\n%q\nstderr:\n%q", meta.code, meta.stdout, meta.stderr)
	}
	if r, bad := rawControl(meta.stdout + meta.stderr); bad {
		t.Errorf("meta printed a raw %U:\n%q", r, meta.stdout)
	}
	get := runIn(t, 60*time.Second, args("get", mag, "-o", filepath.Join(base, "dl"), offline(t))...)
	if get.code != 0 {
		t.Fatalf("get: exit %d\n%q", get.code, get.stderr)
	}
	if r, bad := rawControl(get.stdout + get.stderr); bad {
		t.Errorf("get printed a raw %U:\n%q", r, get.stderr)
	}
}
