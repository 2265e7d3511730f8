package metadata_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/torrentfile"
)

// hashPeer is a peer on loopback that counts the hash requests it is sent and, by its mode,
// answers them from the torrent's piece layers, rejects them or ignores them (as a v1-only client
// that does not know the message does).
type hashPeer struct {
	addr     net.Addr
	requests atomic.Int32
}

type hashMode int

const (
	ignoreHashes hashMode = iota
	rejectHashes
	answerHashes
)

// startHashPeer serves one connection under ih, with the BEP 52 bit when v2bit.
func startHashPeer(t *testing.T, ip string, ih [20]byte, v2bit bool, mode hashMode, tor *torrentfile.Torrent) *hashPeer {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	hp := &hashPeer{addr: ln.Addr()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Go(func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c, err := peerwire.Accept(ctx, nc, func(h [20]byte) bool { return h == ih }, peerwire.Options{V2: v2bit})
		if err != nil {
			return
		}
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		for {
			m, err := c.ReadMsg()
			if err != nil {
				return
			}
			if m.ID != peerwire.HashRequest {
				continue
			}
			hp.requests.Add(1)
			root, r, err := merkle.ParseRequest(m.Payload)
			if err != nil {
				return
			}
			switch mode {
			case rejectHashes:
				err = c.WriteMsg(peerwire.Message{ID: peerwire.HashReject, Payload: m.Payload})
			case answerHashes:
				err = answer(c, tor, root, r, m.Payload)
			}
			if err != nil {
				return
			}
		}
	})
	return hp
}

func answer(c *peerwire.Conn, tor *torrentfile.Torrent, root merkle.Hash, r merkle.HashRequest, req []byte) error {
	for _, f := range tor.V2.Files {
		if f.PiecesRoot != root {
			continue
		}
		layer, _ := merkle.ParseHashes(tor.PieceLayers[root])
		tree, err := merkle.NewTree(layer, tor.V2.PieceLength, f.Length)
		if err != nil {
			return err
		}
		hs, err := tree.Answer(r, func(int64) ([]merkle.Hash, error) { return nil, errors.New("no blocks here") })
		if err != nil {
			break
		}
		return c.WriteMsg(peerwire.Message{ID: peerwire.Hashes, Payload: merkle.AppendHashes(nil, root, r, hs)})
	}
	return c.WriteMsg(peerwire.Message{ID: peerwire.HashReject, Payload: req})
}

// hybridTorrent creates a hybrid torrent of two files, each with a piece layer.
func hybridTorrent(t *testing.T) *torrentfile.Torrent {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"a.bin": 100_000, "b.bin": 40_000} {
		b := bytes.Repeat([]byte(name), n/len(name)+1)[:n]
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tor, err := torrentfile.CreateTorrent(t.Context(), dir, torrentfile.Options{PieceLength: 32 << 10, Hybrid: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(tor.PieceLayers) != 2 {
		t.Fatalf("test torrent has %d piece layers, want 2", len(tor.PieceLayers))
	}
	return tor
}

func dialHashPeer(t *testing.T, hp *hashPeer, ih [20]byte, v2bit bool) *peerwire.Conn {
	t.Helper()
	c, err := peerwire.Dial(t.Context(), hp.addr.(*net.TCPAddr).AddrPort(), ih, peerwire.Options{V2: v2bit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Issue 12: FetchPieceLayers asks only connections that speak v2 (the BEP 52 bit on both sides,
// or a connection under the truncated v2 infohash). A v1-only peer put first, which ignores the
// request as a v1 client does, used to cost RequestTimeout per attempt; now it is never sent a
// hash request. A peer that rejects is left at its first reject, and the layers come from the
// next v2 peer, checked against the roots: the .torrent's layers exactly.
func TestFetchPieceLayersSkipsV1Peers(t *testing.T) {
	tor := hybridTorrent(t)
	info := tor.Meta.InfoBytes
	v1 := sha1.Sum(info)
	v2 := sha256.Sum256(info)
	trunc := [20]byte(v2[:20])
	o := metadata.Options{RequestTimeout: 3 * time.Second}

	for _, tc := range []struct {
		name   string
		ih     [20]byte
		v2bit  bool // set by both sides of the answering peer's connection
		reject bool // a rejecting v2 peer stands between the v1 peer and the answering one
	}{
		{"v2 bit under the v1 hash", v1, true, false},
		{"truncated v2 hash without the bit", trunc, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v1peer := startHashPeer(t, "127.0.0.1", v1, false, ignoreHashes, tor)
			good := startHashPeer(t, "127.0.0.1", tc.ih, tc.v2bit, answerHashes, tor)
			conns := []*peerwire.Conn{dialHashPeer(t, v1peer, v1, true)}
			var rejecter *hashPeer
			if tc.reject {
				rejecter = startHashPeer(t, "127.0.0.1", trunc, true, rejectHashes, tor)
				conns = append(conns, dialHashPeer(t, rejecter, trunc, true))
			}
			conns = append(conns, dialHashPeer(t, good, tc.ih, tc.v2bit))
			layers, err := metadata.FetchPieceLayers(t.Context(), info, conns, o)
			if err != nil {
				t.Fatalf("FetchPieceLayers: %v", err)
			}
			if !maps.EqualFunc(layers, tor.PieceLayers, bytes.Equal) {
				t.Errorf("got %d layers, want the .torrent's %d", len(layers), len(tor.PieceLayers))
			}
			if n := v1peer.requests.Load(); n != 0 {
				t.Errorf("the v1-only peer was sent %d hash requests, want none", n)
			}
			if rejecter != nil {
				if n := rejecter.requests.Load(); n != 1 {
					t.Errorf("the rejecting peer was asked %d times, want once", n)
				}
			}
			if n := good.requests.Load(); n != 2 {
				t.Errorf("the v2 peer was asked %d times, want 2 (one per file)", n)
			}
		})
	}
}

// With only v1-only peers there is nobody to ask: the error says so at once, and none of them is
// sent a hash request.
func TestFetchPieceLayersNoV2Peer(t *testing.T) {
	tor := hybridTorrent(t)
	v1 := sha1.Sum(tor.Meta.InfoBytes)
	p := startHashPeer(t, "127.0.0.1", v1, false, ignoreHashes, tor)
	layers, err := metadata.FetchPieceLayers(t.Context(), tor.Meta.InfoBytes, []*peerwire.Conn{dialHashPeer(t, p, v1, true)}, metadata.Options{})
	if !errors.Is(err, metadata.ErrNoPieceLayers) || len(layers) != 0 {
		t.Fatalf("FetchPieceLayers with one v1-only peer: %d layers, %v; want ErrNoPieceLayers", len(layers), err)
	}
	if n := p.requests.Load(); n != 0 {
		t.Errorf("the v1-only peer was sent %d hash requests, want none", n)
	}
}
