package interop

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/torrentfile"
)

// Issue 12, the seeding side of BEP 52: libtorrent downloads a v2-only torrent whose .torrent has
// no piece layers, from a minimal seeder in this test that answers its hash requests with
// merkle.Tree.Answer and its block requests from the files (located with Torrent.PieceV2).
// libtorrent must take every piece layer from those answers (it checks them against the roots
// in the info dict) and then every piece against them: bytes on disk equal and hash requests
// answered prove the answers are what a real client accepts.
func TestV2LibtorrentTakesOurHashes(t *testing.T) {
	t.Parallel()
	rctest.Require(t, realclient.LibtorrentAvailable)
	const pl = 32 << 10
	p := rctest.Payload(t, realclient.PayloadSpec{Name: "v2served", Seed: 5203,
		Files: []realclient.FileSpec{{Path: "a.bin", Size: 700_001}, {Path: "sub/b.bin", Size: 50_000},
			{Path: "sub/zero", Size: 0}, {Path: "c.bin", Size: 3 * pl}, {Path: "d.txt", Size: 333}}})
	tor, err := torrentfile.CreateTorrent(t.Context(), filepath.Join(p.DataDir, p.Name), torrentfile.Options{PieceLength: pl, V2: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := newV2Seeder(t, tor, filepath.Join(p.DataDir, p.Name))
	// The .torrent libtorrent gets has no piece layers: they must come from us.
	bare := &torrentfile.Torrent{Meta: tor.Meta, V2: tor.V2}
	var buf bytes.Buffer
	if err := torrentfile.WriteTorrent(&buf, bare); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "bare.torrent")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	res := rctest.Download(t, realclient.DownloadConfig{Torrent: file, Dir: dir, Peers: []netip.AddrPort{srv.addr}, IP: nextIP()})
	srv.close()
	rctest.Compare(t, p, dir)
	if err := srv.failure(); err != nil {
		t.Errorf("seeder: %v", err)
	}
	answered, rejected := srv.answered.Load(), srv.rejected.Load()
	if answered == 0 {
		t.Errorf("libtorrent finished without asking us for hashes (%d rejected)", rejected)
	}
	t.Logf("libtorrent downloaded %d bytes in %v; we answered %d hash requests, rejected %d, served %d blocks",
		res.Bytes, res.Total, answered, rejected, srv.blocks.Load())
}

// v2Seeder serves one v2 torrent to whoever connects: BEP 52 handshake, a full bitfield, unchoke,
// blocks and hashes. One goroutine per connection, all owned and waited for by close.
type v2Seeder struct {
	t     *testing.T
	tor   *torrentfile.Torrent
	root  string // directory holding the torrent's files
	ln    net.Listener
	addr  netip.AddrPort
	trees map[merkle.Hash]*merkle.Tree

	wg                         sync.WaitGroup
	mu                         sync.Mutex // guards conns and err
	conns                      []net.Conn
	err                        error
	answered, rejected, blocks atomic.Int64
}

func newV2Seeder(t *testing.T, tor *torrentfile.Torrent, root string) *v2Seeder {
	s := &v2Seeder{t: t, tor: tor, root: root, trees: make(map[merkle.Hash]*merkle.Tree)}
	v := tor.V2
	for _, f := range v.Files {
		if f.Length == 0 {
			continue
		}
		layer := []merkle.Hash{f.PiecesRoot}
		if f.HasPieceLayer(v.PieceLength) {
			var err error
			if layer, err = merkle.ParseHashes(tor.PieceLayers[f.PiecesRoot]); err != nil {
				t.Fatal(err)
			}
		}
		tr, err := merkle.NewTree(layer, v.PieceLength, f.Length)
		if err != nil {
			t.Fatal(err)
		}
		s.trees[f.PiecesRoot] = tr
	}
	ip := nextIP()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	s.ln, s.addr = ln, netip.MustParseAddrPort(ln.Addr().String())
	s.wg.Go(s.accept)
	t.Cleanup(s.close)
	return s
}

func (s *v2Seeder) accept() {
	for range 64 { // libtorrent re-dials a lost connection; bounded all the same
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Go(func() {
			if err := s.serve(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.fail(err)
			}
		})
	}
}

func (s *v2Seeder) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *v2Seeder) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// close stops accepting, closes every connection and waits for their goroutines.
func (s *v2Seeder) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *v2Seeder) serve(c net.Conn) error {
	c.SetDeadline(time.Now().Add(procTimeout))
	var hs [68]byte
	if _, err := io.ReadFull(c, hs[:]); err != nil {
		return err
	}
	if string(hs[:20]) != "\x13BitTorrent protocol" {
		// An encrypted (MSE) attempt, which libtorrent makes too: this seeder speaks plaintext only.
		s.t.Logf("%v: not a plaintext handshake; closing", time.Now().Format("15:04:05.000"))
		return nil
	}
	s.t.Logf("%v: handshake", time.Now().Format("15:04:05.000"))
	v2, _ := s.tor.HashV2()
	if [20]byte(hs[28:48]) != [20]byte(v2[:20]) {
		return fmt.Errorf("handshake for %x (reserved %x), not our truncated v2 hash %x (SHA-1 of the info: %x)", hs[28:48], hs[20:28], v2[:20], sha1.Sum(s.tor.Meta.InfoBytes))
	}
	out := append([]byte("\x13BitTorrent protocol"), 0, 0, 0, 0, 0, 0, 0, 0x10) // BEP 52 bit only
	out = append(out, v2[:20]...)
	out = append(out, "-MG0100-v2seedertest"...)
	bitfield := make([]byte, (s.tor.V2.NumPieces+7)/8)
	for i := range s.tor.V2.NumPieces {
		bitfield[i/8] |= 0x80 >> (i % 8)
	}
	out = appendMsg(out, 5, bitfield)
	out = appendMsg(out, 1, nil) // unchoke
	if _, err := c.Write(out); err != nil {
		return err
	}
	for {
		var lb [4]byte
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(lb[:])
		if n == 0 {
			continue
		}
		if n > 1<<16 {
			return fmt.Errorf("message of %d bytes from libtorrent", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c, body); err != nil {
			return err
		}
		var reply []byte
		switch body[0] {
		case 6: // request
			if len(body) != 13 {
				return fmt.Errorf("request of %d bytes", len(body))
			}
			block, err := s.block(binary.BigEndian.Uint32(body[1:]), binary.BigEndian.Uint32(body[5:]), binary.BigEndian.Uint32(body[9:]))
			if err != nil {
				return err
			}
			reply = appendMsg(nil, 7, append(body[1:9:9], block...))
			s.blocks.Add(1)
		case merkle.MsgHashRequest:
			root, r, err := merkle.ParseRequest(body[1:])
			if err != nil {
				return err
			}
			hashes, err := s.answer(root, r)
			if err != nil {
				s.t.Logf("hash reject for %+v: %v", r, err)
				reply = appendMsg(nil, merkle.MsgHashReject, merkle.AppendRequest(nil, root, r))
				s.rejected.Add(1)
				break
			}
			s.t.Logf("%v: hashes for %+v", time.Now().Format("15:04:05.000"), r)
			reply = appendMsg(nil, merkle.MsgHashes, merkle.AppendHashes(nil, root, r, hashes))
			s.answered.Add(1)
		default:
			continue // interested, have, cancel, ...: nothing to answer
		}
		if _, err := c.Write(reply); err != nil {
			return err
		}
	}
}

func appendMsg(dst []byte, id byte, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(payload)))
	dst = append(dst, id)
	return append(dst, payload...)
}

// answer builds a hashes answer from the file's tree, reading a piece's leaves from disk when
// the request goes below the piece layer.
func (s *v2Seeder) answer(root merkle.Hash, r merkle.HashRequest) ([]merkle.Hash, error) {
	tr, ok := s.trees[root]
	if !ok {
		return nil, errors.New("unknown pieces root")
	}
	var file torrentfile.FileV2
	for _, f := range s.tor.V2.Files {
		if f.PiecesRoot == root {
			file = f
		}
	}
	pl := s.tor.V2.PieceLength
	return tr.Answer(r, func(piece int64) ([]merkle.Hash, error) {
		data, err := s.read(file, piece*pl, min(pl, file.Length-piece*pl))
		if err != nil {
			return nil, err
		}
		return merkle.LeafHashes(nil, data), nil
	})
}

// block returns the bytes of a block request; bytes past the end of the piece's file are the
// zeros of the padding libtorrent lays out between v2 files.
func (s *v2Seeder) block(index, begin, length uint32) ([]byte, error) {
	pc, ok := s.tor.PieceV2(int64(index))
	if !ok || length == 0 || length > merkle.BlockSize || int64(begin)+int64(length) > s.tor.V2.PieceLength {
		return nil, fmt.Errorf("bad request: piece %d, begin %d, length %d", index, begin, length)
	}
	f := s.tor.V2.Files[pc.File]
	out := make([]byte, length)
	if n := min(int64(length), pc.Length-int64(begin)); n > 0 {
		data, err := s.read(f, pc.Offset+int64(begin), n)
		if err != nil {
			return nil, err
		}
		copy(out, data)
	}
	return out, nil
}

func (s *v2Seeder) read(f torrentfile.FileV2, off, n int64) ([]byte, error) {
	fh, err := os.Open(filepath.Join(append([]string{s.root}, f.Path...)...))
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b := make([]byte, n)
	_, err = fh.ReadAt(b, off)
	return b, err
}
