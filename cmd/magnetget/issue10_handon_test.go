package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/swarm"
	"github.com/magnetget/magnetget/torrentfile"
)

// servePieces is a seeder that does not speak ut_metadata (its extension handshake names no
// extension), as old clients and some seed boxes: it sends its bitfield, unchokes whoever is
// interested and answers block requests from data, until c closes.
func servePieces(c *peerwire.Conn, data []byte, pieceLen int) {
	n := (len(data) + pieceLen - 1) / pieceLen
	bf := make([]byte, (n+7)/8)
	for i := range n {
		bf[i/8] |= 0x80 >> (i % 8)
	}
	if c.WriteMsg(peerwire.Message{ID: peerwire.Bitfield, Bitfield: bf}) != nil {
		return
	}
	for {
		m, err := c.ReadMsg()
		if err != nil {
			return
		}
		switch {
		case m.Keepalive:
		case m.ID == peerwire.Interested:
			err = c.WriteMsg(peerwire.Message{ID: peerwire.Unchoke})
		case m.ID == peerwire.Request:
			off := int(m.Index)*pieceLen + int(m.Begin)
			if off < 0 || off+int(m.Length) > len(data) {
				return
			}
			err = c.WriteMsg(peerwire.Message{ID: peerwire.Piece, Index: m.Index, Begin: m.Begin, Block: data[off : off+int(m.Length)]})
		}
		if err != nil {
			return
		}
	}
}

// TestGetKeepsIncomingPeerWithoutMetadataExt: while get looks for the metadata, the only seeder
// dials us, and it does not speak ut_metadata; the metadata then comes from another peer that
// dials us, a leecher with no piece. The download completes from the seeder, on the connection it
// opened. Before, the metadata fetch closed the seeder's connection for lacking ut_metadata, and
// nothing else could give a piece: get gave up at --timeout.
func TestGetKeepsIncomingPeerWithoutMetadataExt(t *testing.T) {
	src := t.TempDir()
	const pieceLen = 16 << 10
	mi, data := payload(t, src, "k.bin", 160<<10, torrentfile.Options{PieceLength: pieceLen})
	ih := mi.HashInfoBytes()
	const client, seedIP = "127.0.222.1", "127.0.222.3"
	us := netip.AddrPortFrom(netip.MustParseAddr(client), freePort(t, client))
	out := t.TempDir()
	p := startIn(t, args("get", "magnet:?xt=urn:btih:"+hex.EncodeToString(ih[:]), "-o", out, "--json", "--debug",
		"--timeout", "10s", "--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(),
		"--listen", fmt.Sprintf("/ip4/%s/tcp/%d", client, us.Port()))...)
	waitFor(t, 30*time.Second, "get looking for metadata", func() bool {
		return strings.Contains(p.stdout.String(), `"event":"metadata"`)
	})

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	seeder, err := peerwire.Dial(ctx, us, ih, peerwire.Options{LocalAddr: netip.MustParseAddr(seedIP),
		ExtHandshake: peerwire.ExtHandshake{V: "no-ut-metadata/1.0"}, DisableFast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer seeder.Close()
	served := make(chan struct{})
	go func() { defer close(served); servePieces(seeder, data, pieceLen) }()
	defer func() { seeder.Close(); <-served }()
	// Once the fetch has dealt with the seeder (kept it, or, before, dropped it), a peer with
	// the metadata and no piece dials us.
	waitFor(t, 30*time.Second, "the metadata fetch to take the seeder", func() bool {
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(l, seedIP+":") && (strings.Contains(l, "peer dropped") || strings.Contains(l, "without ut_metadata")) {
				return true
			}
		}
		return false
	})
	leecher, _ := runSwarm(t, swarm.Config{InfoHash: ih, Info: mi.InfoBytes, Dir: t.TempDir()}, "")
	leecher.AddPeer(us)

	if code := p.wait(t, 40*time.Second); code != 0 {
		t.Fatalf("get: exit %d\nstderr:\n%s", code, tail(p.stderr.String(), 40))
	}
	if got, err := os.ReadFile(filepath.Join(out, "k.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	ls := strings.Split(s, "\n")
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
}
