package interop

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/torrentfile"
)

// ltServeScript seeds one torrent from argv[1] (save path argv[2]) on IP argv[3] for at most
// argv[4] seconds. It checks the data first rather than trusting it (seed mode), so libtorrent
// holds every block hash and can answer hash requests for the leaf layer too. It prints its port
// once seeding.
const ltServeScript = `
import sys, time
import libtorrent as lt
torrent, save, ip, life = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ses = lt.session({"listen_interfaces": ip + ":0", "outgoing_interfaces": ip, "enable_dht": False,
    "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False, "enable_outgoing_utp": False,
    "enable_incoming_utp": False, "allow_multiple_connections_per_ip": True})
p = lt.add_torrent_params()
p.ti = lt.torrent_info(torrent)
p.save_path = save
p.flags &= ~lt.torrent_flags.auto_managed
p.flags &= ~lt.torrent_flags.paused
h = ses.add_torrent(p)
deadline = time.monotonic() + life
while not h.status().is_seeding:
    if time.monotonic() > deadline:
        sys.exit("not seeding: %s" % h.status().state)
    time.sleep(0.02)
print(ses.listen_port(), flush=True)
while time.monotonic() < deadline:
    time.sleep(0.1)
`

// Issue 12: internal/merkle's codec and proof checks read libtorrent's answers to BEP 52 hash
// requests (sent with merkle.AppendRequest, parsed with merkle.ParseHashesMsg): the piece layer
// (whole, and half of it with one uncle), one piece's leaves with the full proof to the root and
// with none (checked against the piece layer), each verified by merkle.VerifyHashes against the
// pieces root of a torrent we made; a request past the tree is rejected.
func TestV2HashRequestsToLibtorrent(t *testing.T) {
	t.Parallel()
	rctest.Require(t, realclient.LibtorrentAvailable)
	const pl = 64 << 10
	p := rctest.Payload(t, realclient.PayloadSpec{Name: "v2hashes", Seed: 5202,
		Files: []realclient.FileSpec{{Path: "big.bin", Size: 5<<20 + 12345}, {Path: "small.bin", Size: 1000}}})
	tor, err := torrentfile.CreateTorrent(t.Context(), filepath.Join(p.DataDir, p.Name), torrentfile.Options{PieceLength: pl, V2: true})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "v2.torrent")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := torrentfile.WriteTorrent(f, tor); err != nil {
		t.Fatal(err)
	}
	f.Close()
	big := tor.V2.Files[0]
	if big.Path[0] != "big.bin" {
		t.Fatalf("first file is %v", big.Path)
	}
	data, err := os.ReadFile(filepath.Join(p.DataDir, p.Name, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := merkle.ParseHashes(tor.PieceLayers[big.PiecesRoot])
	if err != nil {
		t.Fatal(err)
	}

	addr := serveWithLibtorrent(t, file, p.DataDir)
	v2, _ := tor.HashV2()
	c := dialV2(t, addr, [20]byte(v2[:20]))

	pieceLayer := merkle.NumLayers(pl/merkle.BlockSize) - 1 // 2
	known := func(l int, i int64) (merkle.Hash, bool) {
		if l == pieceLayer && i < int64(len(layer)) {
			return layer[i], true
		}
		return merkle.Hash{}, false
	}
	// 5 MiB + 12345 bytes: 321 blocks, 512 leaves, layers 0..9; the piece layer (2) has 128 nodes.
	for _, tc := range []struct {
		name  string
		r     merkle.HashRequest
		known func(int, int64) (merkle.Hash, bool)
	}{
		{"whole piece layer", merkle.HashRequest{BaseLayer: pieceLayer, Index: 0, Length: 128, ProofLayers: 0}, nil},
		{"half the piece layer and an uncle", merkle.HashRequest{BaseLayer: pieceLayer, Index: 64, Length: 64, ProofLayers: 6}, nil},
		{"one piece's leaves, proof to the root", merkle.HashRequest{BaseLayer: 0, Index: 40, Length: 4, ProofLayers: 8}, nil},
		{"one piece's leaves, no proof", merkle.HashRequest{BaseLayer: 0, Index: 40, Length: 4, ProofLayers: 0}, known},
		{"leaves past the end of the file", merkle.HashRequest{BaseLayer: 0, Index: 320, Length: 8, ProofLayers: 8}, nil},
	} {
		hashes, err := c.request(big.PiecesRoot, tc.r)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if err := merkle.VerifyHashes(big.PiecesRoot, big.Length, tc.r, hashes, tc.known); err != nil {
			t.Errorf("%s: libtorrent's answer (%d hashes) does not verify: %v", tc.name, len(hashes), err)
			continue
		}
		if tc.r.BaseLayer == 0 {
			// The leaves are the SHA-256 of the blocks, and the ones past the file are zero.
			for i := range tc.r.Length {
				off := (tc.r.Index + i) * merkle.BlockSize
				var want merkle.Hash
				if off < int64(len(data)) {
					want = sha256.Sum256(data[off:min(off+merkle.BlockSize, int64(len(data)))])
				}
				if hashes[i] != want {
					t.Errorf("%s: leaf %d differs from the block's hash", tc.name, tc.r.Index+i)
				}
			}
		}
	}
	// A request for the root layer (it has no siblings to send) is rejected.
	if _, err := c.request(big.PiecesRoot, merkle.HashRequest{BaseLayer: 9, Index: 0, Length: 2}); !errors.Is(err, errHashReject) {
		t.Errorf("a request for layer 9 of a 10-layer tree: %v, want a hash reject", err)
	}
}

// serveWithLibtorrent starts ltServeScript and returns its peer address.
func serveWithLibtorrent(t *testing.T, torrent, dir string) netip.AddrPort {
	t.Helper()
	ip := nextIP()
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	cmd := exec.CommandContext(ctx, realclient.Python, "-c", ltServeScript, torrent, dir, ip.String(), strconv.Itoa(int(procTimeout/time.Second)))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("libtorrent did not start seeding: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("libtorrent printed %q", line)
	}
	return netip.AddrPortFrom(ip, uint16(port))
}

var errHashReject = errors.New("hash reject")

type v2Conn struct {
	t *testing.T
	c net.Conn
}

// dialV2 connects with the BEP 52 reserved bit (0x10 in byte 7) and the truncated v2 infohash.
func dialV2(t *testing.T, addr netip.AddrPort, ih [20]byte) *v2Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(procTimeout / 2))
	b := append([]byte("\x13BitTorrent protocol"), 0, 0, 0, 0, 0, 0x10, 0, 0x14)
	b = append(b, ih[:]...)
	b = append(b, "-MG0100-interopv2tst"...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	var r [68]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		t.Fatalf("reading the handshake answer: %v", err)
	}
	if [20]byte(r[28:48]) != ih {
		t.Fatalf("libtorrent answered for %x, not %x", r[28:48], ih)
	}
	return &v2Conn{t: t, c: c}
}

// request sends a hash request and returns the hashes of the matching answer, skipping other
// messages, or errHashReject.
func (v *v2Conn) request(root [32]byte, r merkle.HashRequest) ([]merkle.Hash, error) {
	msg := binary.BigEndian.AppendUint32(nil, 1+merkle.RequestSize)
	msg = append(msg, merkle.MsgHashRequest)
	msg = merkle.AppendRequest(msg, root, r)
	if _, err := v.c.Write(msg); err != nil {
		return nil, err
	}
	for range 1000 {
		var lenb [4]byte
		if _, err := io.ReadFull(v.c, lenb[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(lenb[:])
		if n > 1+merkle.MaxHashesPayload {
			return nil, fmt.Errorf("message of %d bytes", n)
		}
		if n == 0 {
			continue // keepalive
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(v.c, body); err != nil {
			return nil, err
		}
		var (
			gotRoot merkle.Hash
			gotReq  merkle.HashRequest
			hashes  []merkle.Hash
			err     error
		)
		switch body[0] {
		case merkle.MsgHashes:
			gotRoot, gotReq, hashes, err = merkle.ParseHashesMsg(body[1:])
		case merkle.MsgHashReject:
			gotRoot, gotReq, err = merkle.ParseRequest(body[1:])
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		if gotRoot != root || gotReq != r {
			return nil, fmt.Errorf("answer (id %d) for another request: %+v", body[0], gotReq)
		}
		if body[0] == merkle.MsgHashReject {
			return nil, errHashReject
		}
		return hashes, nil
	}
	return nil, errors.New("no answer in 1000 messages")
}
