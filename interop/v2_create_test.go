package interop

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/torrentfile"
)

// v2CreateScript makes a v2-only ("v2") or hybrid torrent of argv[1] with libtorrent's
// create_torrent, as qBittorrent does, writes it to argv[2] and prints its v1 and v2 infohashes.
const v2CreateScript = `
import os, sys
import libtorrent as lt
src, out, pl, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fs = lt.file_storage()
lt.add_files(fs, src)
ct = lt.create_torrent(fs, pl, flags=lt.create_torrent.v2_only if mode == "v2" else 0)
lt.set_piece_hashes(ct, os.path.dirname(src))
with open(out, "wb") as f:
    f.write(lt.bencode(ct.generate()))
ih = lt.torrent_info(out).info_hashes()
print(ih.v1, ih.v2)
`

// Issue 12: v2-only and hybrid torrents made by torrentfile.CreateTorrent, piece layers included,
// carry a real transfer between two libtorrent sessions: one seeds our .torrent, the other
// downloads with it and checks every piece against the merkle roots and piece layers we wrote
// (a wrong layer or root fails the download with hash failures, never finishing). The same
// tree through libtorrent's own create_torrent gives the same infohashes.
func TestV2CreatedTorrentsCarryLibtorrentTransfers(t *testing.T) {
	t.Parallel()
	rctest.Require(t, realclient.LibtorrentAvailable)
	p := rctest.Payload(t, realclient.PayloadSpec{Name: "v2tree", Seed: 5201,
		Files: []realclient.FileSpec{{Path: "a.bin", Size: 700_001}, {Path: "sub/b.bin", Size: 50_000},
			{Path: "sub/zero", Size: 0}, {Path: "c.bin", Size: 1 << 20}, {Path: "d.txt", Size: 333}}})
	src := filepath.Join(p.DataDir, p.Name)
	for _, mode := range []string{"v2", "hybrid"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			tor, err := torrentfile.CreateTorrent(t.Context(), src, torrentfile.Options{PieceLength: 64 << 10, V2: mode == "v2", Hybrid: mode == "hybrid"})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := torrentfile.WriteTorrent(&buf, tor); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "ours.torrent")
			if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if len(tor.PieceLayers) != 2 { // a.bin and c.bin span several pieces
				t.Fatalf("%d piece layers, want 2", len(tor.PieceLayers))
			}

			// libtorrent's create_torrent agrees on the infohashes.
			ltFile := filepath.Join(t.TempDir(), "lt.torrent")
			ctx, cancel := context.WithTimeout(t.Context(), procTimeout)
			defer cancel()
			out, err := exec.CommandContext(ctx, realclient.Python, "-c", v2CreateScript, src, ltFile, "65536", mode).Output()
			if err != nil {
				t.Fatalf("libtorrent create_torrent: %v\n%s", err, out)
			}
			v2, _ := tor.HashV2()
			want := hex.EncodeToString(v2[:])
			if v1, ok := tor.HashV1(); ok {
				want = hex.EncodeToString(v1[:]) + " " + want
			} else {
				want = "0000000000000000000000000000000000000000 " + want
			}
			if got := string(bytes.TrimSpace(out)); got != want {
				t.Errorf("libtorrent create_torrent infohashes %s, ours %s", got, want)
			}

			s, err := realclient.StartLibtorrentSeeder(t.Context(), realclient.SeederConfig{Torrent: file, DataDir: p.DataDir, IP: nextIP()})
			if err != nil {
				t.Fatalf("libtorrent does not seed our %s torrent: %v", mode, err)
			}
			t.Cleanup(func() { s.Close() })
			dir := t.TempDir()
			res := rctest.Download(t, realclient.DownloadConfig{Torrent: file, Dir: dir, Peers: []netip.AddrPort{s.Addr()}, IP: nextIP()})
			rctest.Compare(t, p, dir)
			t.Logf("libtorrent downloaded our %s torrent (%d bytes) in %v", mode, res.Bytes, res.Total)
		})
	}
}
