package metadata_test

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// libtorrentPython returns Debian's python3 when it can import libtorrent; otherwise the test is
// skipped, except under CI=true where a missing client is a failure.
func libtorrentPython(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	err := exec.Command(py, "-c", "import libtorrent").Run()
	if err == nil {
		return py
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s cannot import libtorrent: %v", py, err)
	}
	t.Skipf("needs %s with python3-libtorrent: %v", py, err)
	return ""
}

// Fetch from a real libtorrent seeder: its BEP 10 handshake, metadata pieces and message order.
func TestInteropFetchFromLibtorrent(t *testing.T) {
	py := libtorrentPython(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/ltpeer.py", "seed", t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("libtorrent seeder: %v", err)
	}
	var ihHex string
	var port uint16
	if _, err := fmt.Sscanf(line, "%s %d", &ihHex, &port); err != nil {
		t.Fatalf("libtorrent seeder said %q: %v", line, err)
	}
	var ih [20]byte
	if b, err := hex.DecodeString(ihHex); err != nil || len(b) != 20 {
		t.Fatalf("bad infohash %q", ihHex)
	} else {
		copy(ih[:], b)
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	res, err := metadata.Fetch(ctx, ih, metadatatest.Peers(addr), metadata.Options{})
	checkNoLeak(t)
	if err != nil {
		t.Fatalf("Fetch from libtorrent: %v", err)
	}
	defer func() {
		for _, c := range res.Conns {
			c.Close()
		}
	}()
	if sha1.Sum(res.Info) != ih || len(res.Info) <= metadata.PieceSize {
		t.Fatalf("info dict of %d bytes (want > one piece, hashing to %x)", len(res.Info), ih)
	}
	if len(res.Conns) != 1 || !strings.HasPrefix(res.Conns[0].PeerExt().V, "libtorrent") {
		t.Fatalf("want the libtorrent connection handed on, got %d conns", len(res.Conns))
	}
	// libtorrent announced its pieces during the metadata exchange; the swarm must still see that.
	c := res.Conns[0]
	c.SetDeadline(time.Now().Add(30 * time.Second))
	for {
		m, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("reading the handed-on conn: %v", err)
		}
		if m.Keepalive || m.ID == peerwire.Extended || m.ID == peerwire.Unchoke || m.ID == peerwire.AllowedFast {
			continue
		}
		if m.ID != peerwire.HaveAll && m.ID != peerwire.Bitfield {
			t.Fatalf("first piece-availability message from libtorrent is %v, want HaveAll or Bitfield", m)
		}
		break
	}
}

// libtorrent fetches metadata from our Accept + Serve.
func TestInteropLibtorrentFetchesFromServe(t *testing.T) {
	py := libtorrentPython(t)
	info := metadatatest.MultiFileInfo(9, "served", 300, 1<<20, 16<<10) // several ut_metadata pieces
	s := metadatatest.NewSeeder(t, info, metadatatest.Behavior{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "testdata/ltpeer.py", "fetch", t.TempDir(), hex.EncodeToString(s.InfoHash[:]), s.Addr.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("libtorrent fetch: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("ok %d", len(info)); !strings.Contains(string(out), want) {
		t.Fatalf("libtorrent said %q, want %q", out, want)
	}
	if s.Served() < (len(info)+metadata.PieceSize-1)/metadata.PieceSize {
		t.Errorf("served %d pieces", s.Served())
	}
}
