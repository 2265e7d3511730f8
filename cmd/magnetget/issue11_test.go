package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/magnetget/magnetget/internal/clitest"
	"github.com/magnetget/magnetget/swarm"

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
	line := magnetLine(t, p)
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
// own addresses are, or nothing with a note. hintsFrom only formats: the
// addresses here (TEST-NET and 2001:db8::, reserved for documentation) are
// its inputs, and nothing is sent to any of them.
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
		{"198.51.100.3:7000", []string{"198.51.100.3:7000"}},
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
	mag := magnetLine(t, seed)
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

// TestProgressFitsAnyWidth: the bar never reaches the last column at 40,
// 80 or 120 columns (a line that long wraps and every update leaves a
// line behind), keeps the percentage, and fields come back as it widens.
func TestProgressFitsAnyWidth(t *testing.T) {
	ps := []swarm.Progress{
		{Done: 0, Total: 1 << 40, Peers: 0},
		{Done: 123456789012, Total: 987654321098, Down: 5e9, Up: 3e9, RateDown: 123456789, RateUp: 98765432, Peers: 1234},
		{Done: 1 << 30, Total: 1 << 30, Complete: true, Peers: 3},
	}
	for _, w := range []int{20, 40, 80, 120} {
		for _, p := range ps {
			l := renderBar(p, w)
			if n := utf8.RuneCountInString(l); n >= w {
				t.Errorf("width %d: %d columns: %q", w, n, l)
			}
			if !strings.Contains(l, "%") {
				t.Errorf("width %d: no percentage in %q", w, l)
			}
		}
	}
	if l := renderBar(ps[1], 120); !strings.Contains(l, "eta") || !strings.Contains(l, "peers 1234") || !strings.Contains(l, "[") {
		t.Errorf("at 120 columns the bar, eta and peers should fit: %q", l)
	}
}

// TestProgressRedrawsOnResize: a SIGWINCH redraws the bar at the new width.
func TestProgressRedrawsOnResize(t *testing.T) {
	var buf clitest.SyncBuffer
	ev := newEvents(io.Discard, &buf, false)
	ev.tty = true
	var width atomic.Int64
	width.Store(120)
	ev.width = func() int { return int(width.Load()) }
	stop := onResize(ev.redraw)
	defer stop()
	ev.progress(swarm.Progress{Done: 10 << 20, Total: 100 << 20, RateDown: 1 << 20, RateUp: 1 << 10, Peers: 7, Down: 10 << 20})
	width.Store(40)
	before := strings.Count(buf.String(), "\r")
	syscall.Kill(os.Getpid(), syscall.SIGWINCH)
	waitFor(t, 5*time.Second, "a redraw", func() bool { return strings.Count(buf.String(), "\r") > before })
	draws := strings.Split(buf.String(), "\r")
	last := strings.TrimSuffix(draws[len(draws)-1], "\x1b[K")
	if n := utf8.RuneCountInString(last); n >= 40 || n == 0 {
		t.Fatalf("after resizing to 40 columns the bar is %d columns: %q", n, last)
	}
}

// TestDownloadEndsWithSummary: the last line says size, time, average
// rate, uploaded and peers used.
func TestDownloadEndsWithSummary(t *testing.T) {
	var buf clitest.SyncBuffer
	ev := newEvents(io.Discard, &buf, false)
	ev.event("start", map[string]any{"name": "x", "size": int64(8 << 20), "dir": "."})
	ev.peerStats([]swarm.PeerStat{{Addr: netip.MustParseAddrPort("127.0.0.2:1"), Down: 5}, {Addr: netip.MustParseAddrPort("127.0.0.3:1"), Down: 7}, {Addr: netip.MustParseAddrPort("127.0.0.4:1")}})
	ev.progress(swarm.Progress{Done: 8 << 20, Total: 8 << 20, Down: 8 << 20, Up: 1 << 20, Complete: true, Peers: 3})
	ev.done(nil)
	ls := lines(buf.String())
	last := ls[len(ls)-1]
	for _, want := range []string{"8.0 MiB in ", "/s average", "from 2 peers", "uploaded 1.0 MiB", "verified"} {
		if !strings.Contains(last, want) {
			t.Errorf("summary %q lacks %q", last, want)
		}
	}
}

// TestMetaTimeoutReallyWaits: with no peer anywhere, meta --timeout 2s
// keeps looking for the whole 2 s and then says what it tried.
func TestMetaTimeoutReallyWaits(t *testing.T) {
	start := time.Now()
	r := runIn(t, 30*time.Second, args("meta", "--timeout", "2s", "0123456789abcdef0123456789abcdef01234567", offline(t))...)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("meta --timeout 2s gave up after %v", took)
	}
	if r.code != 1 || !strings.Contains(r.stdout, "no metadata within 2s") || !strings.Contains(r.stdout, "0 peers found") ||
		strings.Contains(r.stdout, "metadata: metadata") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestGetWithoutPeersSaysWhatItTried: get --timeout gives up with one line
// naming what it tried; --json ends with done ok:false.
func TestGetWithoutPeersSaysWhatItTried(t *testing.T) {
	ih := "0123456789abcdef0123456789abcdef01234567"
	r := runIn(t, 30*time.Second, args("get", ih, "--timeout", "1s", "-o", t.TempDir(), offline(t))...)
	errLines := lines(r.stderr)
	last := errLines[len(errLines)-1]
	if r.code != 1 || !strings.HasPrefix(last, "magnetget: no metadata for "+ih+" within 1s: ") || !strings.Contains(last, "0 peers found") {
		t.Fatalf("exit %d, last line %q\nstderr:\n%s", r.code, last, r.stderr)
	}
	if strings.Contains(r.stderr, "metadata: metadata") || strings.Contains(r.stderr, "level=") {
		t.Errorf("doubled prefixes or raw slog lines:\n%s", r.stderr)
	}
	r = runIn(t, 30*time.Second, args("get", ih, "--timeout", "1500ms", "--json", "-o", t.TempDir(), offline(t))...)
	ls := lines(r.stdout)
	if !strings.Contains(r.stdout, `"event":"waiting"`) || !strings.Contains(r.stdout, `"peers_found":0`) {
		t.Errorf("no waiting event saying what it waits for:\n%s", r.stdout)
	}
	var done struct {
		Event string `json:"event"`
		OK    *bool  `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(ls[len(ls)-1]), &done); err != nil || done.Event != "done" || done.OK == nil || *done.OK || !strings.Contains(done.Error, "no metadata") {
		t.Fatalf("--json: want a last done event with ok:false, got %q", ls[len(ls)-1])
	}
}

// TestUsageMistakes: each mistake gets a short message on stderr, the
// right status, and nothing on stdout.
func TestUsageMistakes(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
		hint bool // the shape of the command line is wrong: point at --help
	}{
		{[]string{"--bogus"}, "unknown flag --bogus", true},
		{[]string{"get", "--bogus", "x"}, "unknown flag --bogus", true},
		{[]string{"seed", "--nope", dir}, "unknown flag --nope", true},
		{[]string{"get"}, "give a magnet URI", true},
		{[]string{}, "give a magnet URI", true},
		{[]string{"meta"}, "meta needs a magnet", true},
		{[]string{"012345678901234567890123456789012345678"}, "want 40 hex or 32 base32 characters, got 39", false},
		{[]string{"meta", "012345678901234567890123456789012345678"}, "want 40 hex or 32 base32 characters, got 39", false},
		{[]string{"get", "--seed-ratio", "2", "0123456789abcdef0123456789abcdef01234567"}, "--seed-ratio applies only with --seed", false},
		{[]string{"get", "--seed-time", "1h", "0123456789abcdef0123456789abcdef01234567"}, "--seed-time applies only with --seed", false},
		{[]string{"meta", "-o", "-", "--print", "0123456789abcdef0123456789abcdef01234567"}, "--print and -o -", false},
	}
	for _, c := range cases {
		r := runIn(t, 20*time.Second, args(c.args, offline(t))...)
		errLines := lines(r.stderr)
		want := 1
		if c.hint {
			want = 2
		}
		if r.code != 2 || r.stdout != "" || len(errLines) != want || !strings.Contains(errLines[0], c.want) || (c.hint && !strings.Contains(errLines[1], "--help")) {
			t.Errorf("magnetget %q: exit %d, want 2 with %q (and a --help pointer: %v) on stderr only\nstdout:\n%s\nstderr:\n%s", c.args, r.code, c.want, c.hint, r.stdout, r.stderr)
		}
	}
	r := runIn(t, 10*time.Second, "help")
	if r.code != 0 || !strings.Contains(r.stdout, "USAGE") || strings.Contains(r.stderr, "magnet") {
		t.Errorf("magnetget help: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = runIn(t, 10*time.Second, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "magnetget version ") {
		t.Errorf("--version: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestTakenPortNamesThePortUsed: when --listen's port is taken, the
// warning says which port magnetget used instead.
func TestTakenPortNamesThePortUsed(t *testing.T) {
	// Take one port number on both UDP and TCP.
	var port int
	for try := 0; port == 0 && try < 20; try++ {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			pc.Close()
			continue
		}
		defer pc.Close()
		defer ln.Close()
		port = p
	}
	if port == 0 {
		t.Fatal("no port free on both UDP and TCP in 20 tries")
	}
	r := runIn(t, 30*time.Second, "get", "0123456789abcdef0123456789abcdef01234567", "--timeout", "500ms", "-o", t.TempDir(),
		"--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(), "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	// One warning: the peer listener and the DHT/uTP socket moved together.
	re := regexp.MustCompile(`port ` + strconv.Itoa(port) + ` is taken; using \d+ instead`)
	if n := len(re.FindAllString(r.stderr, -1)); n != 1 {
		t.Errorf("%d warnings %q naming the new port, want 1:\n%s", n, re, r.stderr)
	}
}

// TestBrokenPipeStillShutsDownCleanly: `magnetget node 2>&1 | tee` whose
// tee goes away. The next write used to kill the process with SIGPIPE
// before routing.db was saved; now the node stops as on Ctrl-C, saves, and
// exits 141 (the status scripts expect for a closed pipe).
func TestBrokenPipeStillShutsDownCleanly(t *testing.T) {
	nodes := dhttest.Network(t, 6)
	data := t.TempDir()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "node", "--listen", "/ip4/127.0.201.9/udp/0", "--bootstrap", bootFlag(nodes[0]),
		"--data-dir", data, "--status-interval", "100ms")
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	// Read the first line, then go away like a killed tee.
	buf := make([]byte, 4096)
	n, _ := pr.Read(buf)
	if !strings.Contains(string(buf[:n]), "DHT node running") {
		t.Fatalf("first output %q", buf[:n])
	}
	pr.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("the node neither stopped nor died 20 s after its output pipe closed")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 141 {
		t.Fatalf("want exit status 141 after a clean stop, got %v (%v)", err, cmd.ProcessState)
	}
	if _, err := os.Stat(filepath.Join(data, "routing.db")); err != nil {
		t.Fatalf("routing.db not saved: %v", err)
	}
}

// TestInterruptThroughPipeSaysInterrupted: Ctrl-C reaches both magnetget and
// the reader of its output; magnetget still ends with status 130.
func TestInterruptThroughPipeSaysInterrupted(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd := exec.Command(bin, "get", "0123456789abcdef0123456789abcdef01234567", "-o", t.TempDir(), "--json",
		"--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = pw, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	buf := make([]byte, 4096)
	pr.Read(buf) // the "metadata" event
	cmd.Process.Signal(os.Interrupt)
	pr.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(errb.String(), "interrupted") {
		t.Fatalf("want exit 130 and an interrupted line, got %v\nstderr:\n%s", err, errb.String())
	}
}

func TestPartialFiles(t *testing.T) {
	const pl = 64 << 10
	info := &metainfo.Info{Name: "t", PieceLength: pl, Files: []metainfo.FileInfo{
		{Path: []string{"a.bin"}, Length: 300_001},
		{Path: []string{"empty.txt"}, Length: 0},
		{Path: []string{"sub", "b.bin"}, Length: 70_000},
		{Path: []string{"sub", "deep", "c.txt"}, Length: 13},
		{Path: []string{"sub", "deep", "d.data"}, Length: 123_457},
	}}
	got := partialFiles(info, func(i int) bool { return i == 2 })
	// b.bin spans pieces 4 and 5: piece 4 begins in a.bin, piece 5 holds all
	// of c.txt (whole, so not partial) and the head of d.data.
	want := []partialFile{
		{Index: 0, Path: "a.bin", Have: 300_001 - 4*pl, Size: 300_001},
		{Index: 4, Path: "sub/deep/d.data", Have: 6*pl - 370_014, Size: 123_457},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got := partialFiles(info, nil); got != nil {
		t.Errorf("no selection: %+v", got)
	}
	if got := partialFiles(info, func(i int) bool { return i != 1 }); got != nil {
		t.Errorf("everything selected: %+v", got)
	}
}

// TestSelectShowsIndexesAndPartialFiles: meta --print numbers the files,
// and a download of some of them names the others it left partly written.
func TestSelectShowsIndexesAndPartialFiles(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "tree")
	writeTree(t, root)
	seed := startIn(t, args("seed", root, "--print-peer", "--piece-length", "64K", "-o", filepath.Join(base, "t.torrent"),
		"--listen", "/ip4/127.0.240.32/tcp/0", offline(t))...)
	mag := magnetLine(t, seed)
	meta := runIn(t, 60*time.Second, args("meta", mag, "--print", "--timeout", "20s", "-o", filepath.Join(base, "m.torrent"), offline(t))...)
	if meta.code != 0 || !regexp.MustCompile(`(?m)^\s+2\s+70000\s+sub/b\.bin$`).MatchString(meta.stdout) {
		t.Fatalf("meta --print does not number the files:\n%s\n%s", meta.stdout, meta.stderr)
	}
	out := filepath.Join(base, "dl")
	get := runIn(t, 60*time.Second, args("get", mag, "--select", "2", "-o", out, offline(t))...)
	if get.code != 0 {
		t.Fatalf("get --select 2: exit %d\n%s", get.code, get.stderr)
	}
	if !strings.Contains(get.stderr, "partly written") || !strings.Contains(get.stderr, "0 a.bin (") || !strings.Contains(get.stderr, "4 sub/deep/d.data (") {
		t.Fatalf("the partly written files are not named:\n%s", get.stderr)
	}
}

// TestSeedingIsQuietAndStopsCleanly: get --seed --json reports the
// finished download once, not every half second while seeding; Ctrl-C
// ends the seeding with ok:true and "stopped", never "context canceled".
func TestSeedingIsQuietAndStopsCleanly(t *testing.T) {
	base := t.TempDir()
	content := filepath.Join(base, "one.bin")
	os.WriteFile(content, randBytes(200_000), 0o644)
	seed := startIn(t, args("seed", content, "--print-peer", "-o", filepath.Join(base, "t.torrent"),
		"--listen", "/ip4/127.0.240.33/tcp/0", offline(t))...)
	mag := magnetLine(t, seed)
	get := startIn(t, args("get", mag, "--seed", "--json", "-o", filepath.Join(base, "dl"), offline(t))...)
	waitFor(t, 30*time.Second, "completion", func() bool { return strings.Contains(get.stdout.String(), `"complete":true`) })
	time.Sleep(2 * time.Second) // four swarm progress reports while seeding
	get.cancel()
	if code := get.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("get --seed ended by the user: exit %d\n%s", code, get.stderr.String())
	}
	ls := lines(get.stdout.String())
	n := 0
	for _, l := range ls {
		if strings.Contains(l, `"complete":true`) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d progress events after completion, want 1 (seeding is quiet):\n%s", n, get.stdout.String())
	}
	last := ls[len(ls)-1]
	if !strings.Contains(last, `"event":"done"`) || !strings.Contains(last, `"ok":true`) || !strings.Contains(last, `"seeding":"stopped"`) ||
		strings.Contains(get.stdout.String()+get.stderr.String(), "context canceled") {
		t.Errorf("last event %s\nstderr:\n%s", last, get.stderr.String())
	}
	// The seeder, stopped, says what it uploaded without a nonsense rate.
	seed.cancel()
	if code := seed.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("seed stopped by the user: exit %d\n%s", code, seed.stderr.String())
	}
	if !regexp.MustCompile(`stopped after .*: uploaded 195\.3 KiB in under a second`).MatchString(seed.stderr.String()) {
		t.Errorf("seed's last line:\n%s", seed.stderr.String())
	}
}

func TestActiveMeter(t *testing.T) {
	var m activeMeter
	t0 := time.Unix(1000, 0)
	m.add(0, t0)
	m.add(3<<20, t0.Add(500*time.Millisecond)) // a burst between two reports
	for i := 2; i < 7200; i++ {
		m.add(3<<20, t0.Add(time.Duration(i)*500*time.Millisecond)) // then an hour idle
	}
	if got := m.describe(3 << 20); got != "3.0 MiB in under a second" {
		t.Errorf("burst then idle: %q", got)
	}
	for i := 0; i < 20; i++ { // 10 s at 1 MiB/s
		m.add(int64(3<<20+(i+1)<<19), t0.Add(time.Hour+time.Duration(i+1)*500*time.Millisecond))
	}
	if got := m.describe(13 << 20); !strings.Contains(got, "at 1.2 MiB/s while active") {
		t.Errorf("after 10 s at 1 MiB/s: %q", got)
	}
}

// TestMetricNames: rates are named for their unit, as Prometheus asks.
func TestMetricNames(t *testing.T) {
	base := t.TempDir()
	content := filepath.Join(base, "one.bin")
	os.WriteFile(content, randBytes(1000), 0o644)
	seed := startIn(t, args("seed", content, "-o", filepath.Join(base, "t.torrent"), "--status-addr", "127.0.0.1:0",
		"--listen", "/ip4/127.0.240.34/tcp/0", offline(t))...)
	url := statusURL(t, seed.stderr)
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "\nmagnetget_upload_rate_bytes_per_second ") || strings.Contains(string(body), "magnetget_upload_rate_bytes ") {
		t.Errorf("/metrics:\n%s", body)
	}
}

// TestProgressOnA40ColumnTerminal downloads through a real pseudo-terminal
// 40 columns wide: no line the bar draws reaches the last column, and the
// summary ends the output.
func TestProgressOnA40ColumnTerminal(t *testing.T) {
	base := t.TempDir()
	content := filepath.Join(base, "one.bin")
	os.WriteFile(content, randBytes(3<<20), 0o644)
	seed := startIn(t, args("seed", content, "--print-peer", "-o", filepath.Join(base, "t.torrent"),
		"--listen", "/ip4/127.0.240.35/tcp/0", offline(t))...)
	mag := magnetLine(t, seed)
	term, screen := openPTY(t, 40)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout clitest.SyncBuffer
	code := run(ctx, args("magnetget", "get", mag, "--download-limit", "1M", "-o", filepath.Join(base, "dl"), offline(t)), &stdout, term)
	if code != 0 {
		t.Fatalf("exit %d\n%q", code, screen.String())
	}
	waitFor(t, 5*time.Second, "the summary on the terminal", func() bool { return strings.Contains(screen.String(), "done: ") })
	bars := 0
	for _, seg := range regexp.MustCompile(`\r\n|\r|\n`).Split(screen.String(), -1) {
		seg = strings.ReplaceAll(seg, "\x1b[K", "")
		if strings.HasPrefix(seg, "[") {
			bars++
		}
		if strings.HasPrefix(seg, "done: ") || strings.HasPrefix(seg, "downloading ") || strings.HasPrefix(seg, "fetching ") || strings.HasPrefix(seg, "magnetget: ") {
			continue // whole sentences: the terminal may wrap them once
		}
		if n := utf8.RuneCountInString(seg); n >= 40 {
			t.Errorf("a %d-column line on a 40-column terminal: %q", n, seg)
		}
	}
	if bars < 2 {
		t.Errorf("%d bars drawn; want the bar redrawn in place:\n%q", bars, screen.String())
	}
}

// TestMetaStdoutRefusesTerminal: -o - does not pour a binary .torrent
// onto a terminal.
func TestMetaStdoutRefusesTerminal(t *testing.T) {
	term, _ := openPTY(t, 80)
	var stderr clitest.SyncBuffer
	code := run(context.Background(), args("magnetget", "meta", "-o", "-", "0123456789abcdef0123456789abcdef01234567", offline(t)), term, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "binary .torrent to the terminal") {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
}

// TestMetaNamesTheFileItCannotWrite: an unwritable directory is reported
// with the .torrent the user asked for, not our temporary file.
func TestMetaNamesTheFileItCannotWrite(t *testing.T) {
	// The target's parent is a file, so even root cannot write there.
	base := t.TempDir()
	content := filepath.Join(base, "one.bin")
	os.WriteFile(content, randBytes(1000), 0o644)
	seed := startIn(t, args("seed", content, "--print-peer", "-o", filepath.Join(base, "t.torrent"),
		"--listen", "/ip4/127.0.240.36/tcp/0", offline(t))...)
	mag := magnetLine(t, seed)
	blocker := filepath.Join(base, "notadir")
	os.WriteFile(blocker, nil, 0o644)
	target := filepath.Join(blocker, "x.torrent")
	r := runIn(t, 30*time.Second, args("meta", mag, "-o", target, "--timeout", "20s", offline(t))...)
	if r.code != 1 || !strings.Contains(r.stdout, "cannot write "+target+": ") || strings.Contains(r.stdout, ".magnetget-") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestFromErrorsNameTheLine: a bad line in --from is reported with its
// file and line number; the good lines still run.
func TestFromErrorsNameTheLine(t *testing.T) {
	list := filepath.Join(t.TempDir(), "list.txt")
	os.WriteFile(list, []byte("# batch\n0123456789abcdef0123456789abcdef01234567\nnot-a-magnet\n"), 0o644)
	r := runIn(t, 30*time.Second, args("meta", "--from", list, "--timeout", "300ms", "-o", filepath.Join(t.TempDir(), "{infohash}.torrent"), offline(t))...)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL not-a-magnet "+list+" line 3: ") || !strings.Contains(r.stdout, "FAIL 0123456789abcdef0123456789abcdef01234567 no metadata within 300ms") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestTorrentWithTrailingNewlineIsAccepted: `get x.torrent` where the file
// ends in a newline starts the download instead of refusing the file.
func TestTorrentWithTrailingNewlineIsAccepted(t *testing.T) {
	base := t.TempDir()
	content := filepath.Join(base, "one.bin")
	os.WriteFile(content, randBytes(1000), 0o644)
	tf := filepath.Join(base, "one.torrent")
	if r := runIn(t, 30*time.Second, "create", content, "-o", tf); r.code != 0 {
		t.Fatal(r.stderr)
	}
	f, _ := os.OpenFile(tf, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("\r\n")
	f.Close()
	r := runIn(t, 30*time.Second, args("get", tf, "--timeout", "300ms", "-o", filepath.Join(base, "dl"), offline(t))...)
	if !strings.Contains(r.stderr, "downloading one.bin") || strings.Contains(r.stderr, "trailing") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
}

// TestRerunAndSeedNeedNoPeers: once a magnet is downloaded, a rerun and
// get --seed start from the metadata kept with the download, with no
// peer anywhere, and seed DIR with an existing DIR.torrent names the
// command that seeds it.
func TestRerunAndSeedNeedNoPeers(t *testing.T) {
	base := t.TempDir()
	content := filepath.Join(base, "one.bin")
	os.WriteFile(content, randBytes(300_000), 0o644)
	seed := startIn(t, args("seed", content, "--print-peer", "-o", filepath.Join(base, "one.bin.torrent"),
		"--listen", "/ip4/127.0.240.37/tcp/0", offline(t))...)
	mag := magnetLine(t, seed)
	out := filepath.Join(base, "dl")
	if r := runIn(t, 60*time.Second, args("get", mag, "-o", out, offline(t))...); r.code != 0 {
		t.Fatalf("first get: exit %d\n%s", r.code, r.stderr)
	}
	seed.cancel()
	seed.wait(t, 15*time.Second)

	r := runIn(t, 30*time.Second, args("get", mag, "--timeout", "5s", "-o", out, offline(t))...)
	if r.code != 0 || strings.Contains(r.stderr, "fetching metadata") || !strings.Contains(r.stderr, "every piece verified") {
		t.Fatalf("rerun with no peer: exit %d\n%s", r.code, r.stderr)
	}
	r = runIn(t, 30*time.Second, args("get", mag, "--seed", "--seed-time", "1s", "-o", out, offline(t))...)
	if r.code != 0 || strings.Contains(r.stderr, "fetching metadata") {
		t.Fatalf("get --seed with no peer: exit %d\n%s", r.code, r.stderr)
	}

	r = runIn(t, 30*time.Second, args("seed", content, "-o", filepath.Join(base, "one.bin.torrent"), offline(t))...)
	if r.code != 2 || !strings.Contains(r.stderr, "seed --torrent "+filepath.Join(base, "one.bin.torrent")) {
		t.Fatalf("seed over an existing .torrent: exit %d\n%s", r.code, r.stderr)
	}
}

// TestCLIDocIsCurrent: doc/cli.md is what `magnetget man --markdown` prints
// from today's flags. After changing a flag, regenerate it:
//
//	go run ./cmd/magnetget man --markdown > doc/cli.md
func TestCLIDocIsCurrent(t *testing.T) {
	want, err := manPage(true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../doc/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("doc/cli.md is out of date: go run ./cmd/magnetget man --markdown > doc/cli.md")
	}
	man := runIn(t, 10*time.Second, "man")
	if man.code != 0 || !strings.Contains(man.stdout, ".SH NAME") || !strings.Contains(man.stdout, "seed") {
		t.Fatalf("magnetget man: exit %d\n%.300s", man.code, man.stdout)
	}
}

// TestEnvironmentSetsDefaults: MAGNETGET_* variables set the common flags
// and --help lists them; the command line still wins.
func TestEnvironmentSetsDefaults(t *testing.T) {
	help := runIn(t, 10*time.Second, "get", "--help")
	for _, v := range []string{"$MAGNETGET_DATA_DIR", "$MAGNETGET_BOOTSTRAP", "$MAGNETGET_LISTEN", "$MAGNETGET_OUTPUT_DIR", "$MAGNETGET_DOWNLOAD_LIMIT"} {
		if !strings.Contains(help.stdout, v) {
			t.Errorf("get --help does not list %s", v)
		}
	}
	nodes := dhttest.Network(t, 8)
	ih := randomIH(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[2].Announce(ctx, ih, 51413); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	t.Setenv("MAGNETGET_BOOTSTRAP", nodes[0].Addr().String())
	t.Setenv("MAGNETGET_DATA_DIR", data)
	t.Setenv("MAGNETGET_LISTEN", "127.0.201.20:0")
	r := runIn(t, 60*time.Second, "lookup", "--timeout", "20s", hex.EncodeToString(ih[:]))
	if r.code != 0 || !strings.Contains(r.stdout, "/tcp/51413") {
		t.Fatalf("lookup configured by the environment: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "routing.db")); err != nil {
		t.Errorf("MAGNETGET_DATA_DIR not used: %v", err)
	}
	// A flag wins over the variable.
	r = runIn(t, 30*time.Second, "lookup", "--bootstrap-file", "/dev/null", "--bootstrap", "", "--data-dir", t.TempDir(), "--timeout", "2s", hex.EncodeToString(ih[:]))
	if r.code == 0 {
		t.Errorf("--bootstrap on the command line did not override MAGNETGET_BOOTSTRAP")
	}
}

// TestCompletionScripts: each shell's script is printed and names the
// binary's own completion flag.
func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := runIn(t, 10*time.Second, "completion", sh)
		if r.code != 0 || !strings.Contains(r.stdout, "magnetget") {
			t.Errorf("completion %s: exit %d\n%s", sh, r.code, r.stderr)
		}
	}
	// urfave/cli reads the word being completed from os.Args: the binary.
	r := runBin(t, 10*time.Second, "seed", "--li", "--generate-bash-completion")
	if r.code != 0 || !strings.Contains(r.stdout, "--listen") {
		t.Errorf("completing seed --li: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, 10*time.Second, "--generate-bash-completion")
	if r.code != 0 || !strings.Contains(r.stdout, "meta") || !strings.Contains(r.stdout, "seed") {
		t.Errorf("completing a command: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestCreateVerbose: create -v shows what was made, not only the path.
func TestCreateVerbose(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "tree")
	writeTree(t, root)
	quiet := runIn(t, 30*time.Second, "create", root, "-o", filepath.Join(base, "q.torrent"))
	loud := runIn(t, 30*time.Second, "create", "-v", root, "-o", filepath.Join(base, "v.torrent"), "--tracker", "http://127.0.0.1:1/announce")
	if quiet.code != 0 || loud.code != 0 || len(lines(loud.stderr)) <= len(lines(quiet.stderr)) {
		t.Fatalf("create -v prints no more than create:\n%s\n---\n%s", quiet.stderr, loud.stderr)
	}
	for _, want := range []string{"infohash:", "piece length:", "files:        5", "sub/deep/d.data", "tracker:      http://127.0.0.1:1/announce", "hashed "} {
		if !strings.Contains(loud.stderr, want) {
			t.Errorf("create -v lacks %q:\n%s", want, loud.stderr)
		}
	}
}

// TestUserMessage: errors wrapped layer by layer read as one sentence.
func TestUserMessage(t *testing.T) {
	inner := errors.New("storage: write a.bin: no space left on device")
	cases := map[error]string{
		fmt.Errorf("swarm: storage error: %w", inner):                       "write a.bin: no space left on device",
		fmt.Errorf("metadata: %w", errors.New("metadata: no peer gave it")): "no peer gave it",
		errors.New("first line\nsecond line"):                               "first line",
		errors.New("load torrent x.torrent: invalid torrent: empty file"):   "load torrent x.torrent: invalid torrent: empty file",
		errors.New("dht: bootstrap: dht: no node responded"):                "bootstrap: no node responded",
		errors.New("name \x1b[2J"):                                          `name \x1b[2J`,
		errors.New("storage"):                                               "storage",
		errors.New(`maddr: listen "/ip4/1.2.3/udp/5": bad multiaddr: failed to parse multiaddr "/ip4/1.2.3/udp/5": invalid value "1.2.3" for protocol ip4: failed to parse ip4 addr: 1.2.3`): `listen "/ip4/1.2.3/udp/5": bad multiaddr: invalid value "1.2.3" for protocol ip4`,
		errors.New(`bad multiaddr: failed to parse multiaddr "foo:bar": must begin with /`):                                                                                                  "want HOST:PORT or a multiaddr such as /ip4/1.2.3.4/udp/6881",
	}
	for err, want := range cases {
		if got := userMessage(err); got != want {
			t.Errorf("userMessage(%q) = %q, want %q", err, got, want)
		}
	}
}
