package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/torrentfile"
)

// writeV2Tree makes a tree whose files span several 16 KiB pieces (so the
// v2 torrent has piece layers), with a small and an empty file.
func writeV2Tree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"a.bin":     randBytes(100_001),
		"sub/b.bin": randBytes(40_000),
		"sub/c.txt": []byte("hello, v2\n"),
		"empty.txt": {},
	}
	for name, b := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// libtorrentHashes is what libtorrent's create_torrent gives for src ("v2"
// or "hybrid"): "v1hex v2hex" (v1 zero for v2-only).
const ltCreateScript = `
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

// Issue 12: create --v2 and --hybrid write the torrent torrentfile.CreateTorrent makes (same
// infohashes, piece layers included) and print a magnet with btmh (and btih for a hybrid).
func TestCreateV2AndHybrid(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "tree")
	writeV2Tree(t, src)
	for _, mode := range []string{"v2", "hybrid"} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "x.torrent")
			r := runIn(t, 20*time.Second, "create", "--"+mode, "--piece-length", "16K", "-o", out, src)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			got, err := torrentfile.LoadTorrent(out)
			if err != nil {
				t.Fatal(err)
			}
			want, err := torrentfile.CreateTorrent(t.Context(), src, torrentfile.Options{PieceLength: 16 << 10, V2: mode == "v2", Hybrid: mode == "hybrid"})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Meta.InfoBytes, want.Meta.InfoBytes) || !reflect.DeepEqual(got.PieceLayers, want.PieceLayers) || len(got.PieceLayers) != 2 {
				t.Fatalf("create --%s wrote another info dict or other piece layers (%d layers) than CreateTorrent", mode, len(got.PieceLayers))
			}
			m, err := magnet.Parse(strings.TrimSpace(r.stdout))
			if err != nil {
				t.Fatalf("%v\n%s", err, r.stdout)
			}
			v2, _ := want.HashV2()
			v1, hasV1 := want.HashV1()
			if !m.HasV2 || m.InfoHashV2 != v2 || m.HasV1 != hasV1 || hasV1 && m.InfoHash != v1 || hasV1 != (mode == "hybrid") {
				t.Fatalf("magnet %s does not carry the torrent's infohashes", r.stdout)
			}
			if !strings.Contains(r.stderr, "infohash v2:  "+hex.EncodeToString(v2[:])) {
				t.Fatalf("create does not show the v2 infohash:\n%s", r.stderr)
			}

			rctest.Require(t, realclient.LibtorrentAvailable)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			lt, err := exec.CommandContext(ctx, realclient.Python, "-c", ltCreateScript, src, filepath.Join(t.TempDir(), "lt.torrent"), "16384", mode).Output()
			if err != nil {
				t.Fatalf("libtorrent create_torrent: %v\n%s", err, lt)
			}
			wantLT := strings.Repeat("0", 40) + " " + hex.EncodeToString(v2[:])
			if hasV1 {
				wantLT = hex.EncodeToString(v1[:]) + " " + hex.EncodeToString(v2[:])
			}
			if g := strings.TrimSpace(string(lt)); g != wantLT {
				t.Fatalf("libtorrent's infohashes %s, ours %s", g, wantLT)
			}
		})
	}
	if r := runIn(t, 10*time.Second, "create", "--v2", "--hybrid", "-o", filepath.Join(base, "y.torrent"), src); r.code != 2 {
		t.Fatalf("--v2 with --hybrid: exit %d, want 2\n%s", r.code, r.stderr)
	}
}

// Issue 12: a v2-only torrent seeded by magnetget downloads byte for byte by its btmh magnet
// (metadata checked against the SHA-256 infohash, piece layers from the seed by hash
// requests, pieces verified by merkle), and by its .torrent file (found through the DHT under
// the truncated v2 infohash, piece layers from the file).
func TestSeedV2GetByBtmhAndTorrent(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	base := t.TempDir()
	src := filepath.Join(base, "tree")
	want := writeV2Tree(t, src)
	tf := filepath.Join(base, "tree.torrent")
	seed := startIn(t, "seed", src, "--v2", "--piece-length", "16K", "--print-peer", "-o", tf,
		"--listen", "/ip4/127.0.240.61/tcp/0", "--listen", "/ip4/127.0.240.61/udp/0", "--bootstrap", bootFlag(nodes[0]),
		"--data-dir", t.TempDir(), "--announce-interval", "1s")
	mag := magnetLine(t, seed)
	m, err := magnet.Parse(mag)
	if err != nil || !m.HasV2 || m.HasV1 || len(m.Peers) != 1 {
		t.Fatalf("seed --v2 magnet %s: want btmh only and one x.pe (%v)", mag, err)
	}

	out := filepath.Join(base, "dl")
	if r := runIn(t, 20*time.Second, args("get", mag, "--timeout", "15s", "-o", out, offline(t))...); r.code != 0 {
		t.Fatalf("get by btmh magnet: exit %d\n%s\nseed:\n%s", r.code, r.stderr, seed.stderr.String())
	}
	checkTree(t, filepath.Join(out, "tree"), want)

	out2 := filepath.Join(base, "dl2")
	r := runIn(t, 20*time.Second, "get", tf, "--timeout", "15s", "-o", out2, "--listen", "/ip4/127.0.240.62/udp/0",
		"--listen", "/ip4/127.0.240.62/tcp/0", "--bootstrap", bootFlag(nodes[4]), "--data-dir", t.TempDir())
	if r.code != 0 {
		t.Fatalf("get of the v2 .torrent: exit %d\n%s\nseed:\n%s", r.code, r.stderr, seed.stderr.String())
	}
	checkTree(t, filepath.Join(out2, "tree"), want)
}

// Issue 12: meta of a hybrid torrent by its btmh magnet writes the seeded .torrent's info dict
// and piece layers (fetched from the seed by hash requests), byte for byte, and --print shows
// both infohashes; get by the hybrid magnet downloads it, and by its .torrent resumes the same
// download.
func TestMetaHybridByBtmhWritesPieceLayers(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "tree")
	files := writeV2Tree(t, src)
	tf := filepath.Join(base, "tree.torrent")
	seed := startIn(t, args("seed", src, "--hybrid", "--piece-length", "16K", "--print-peer", "-o", tf,
		"--listen", "/ip4/127.0.240.63/tcp/0", offline(t))...)
	mag := magnetLine(t, seed)
	m, err := magnet.Parse(mag)
	if err != nil || !m.HasV1 || !m.HasV2 {
		t.Fatalf("seed --hybrid magnet: want btih and btmh (%v)", err)
	}
	byBtmh := &magnet.Magnet{InfoHashV2: m.InfoHashV2, HasV2: true, Peers: m.Peers}
	got := filepath.Join(base, "got.torrent")
	r := runIn(t, 20*time.Second, args("meta", byBtmh.String(), "-o", got, "--print", "--timeout", "15s", offline(t))...)
	if r.code != 0 {
		t.Fatalf("meta: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	orig, err := torrentfile.LoadTorrent(tf)
	if err != nil {
		t.Fatal(err)
	}
	fetched, err := torrentfile.LoadTorrent(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig.Meta.InfoBytes, fetched.Meta.InfoBytes) || len(orig.PieceLayers) != 2 || !reflect.DeepEqual(orig.PieceLayers, fetched.PieceLayers) {
		t.Fatalf("meta wrote %d piece layers (seed: %d), info equal: %v", len(fetched.PieceLayers), len(orig.PieceLayers), bytes.Equal(orig.Meta.InfoBytes, fetched.Meta.InfoBytes))
	}
	// Byte for byte what Assemble makes of the seed's info and layers (no date, no trackers).
	want, err := torrentfile.Assemble(orig.Meta.InfoBytes, orig.PieceLayers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
		t.Fatal("the written .torrent is not byte-exact")
	}
	v1, _ := orig.HashV1()
	if !strings.Contains(r.stdout, hex.EncodeToString(v1[:])) || !strings.Contains(r.stdout, "infohash v2:  "+hex.EncodeToString(m.InfoHashV2[:])) {
		t.Fatalf("meta --print does not show both infohashes:\n%s", r.stdout)
	}

	// get by the hybrid magnet (btih and btmh): joins under the truncated v2 hash.
	out := filepath.Join(base, "dl")
	if r := runIn(t, 20*time.Second, args("get", mag, "--timeout", "15s", "-o", out, offline(t))...); r.code != 0 {
		t.Fatalf("get by hybrid magnet: exit %d\n%s", r.code, r.stderr)
	}
	checkTree(t, filepath.Join(out, "tree"), files)
	// The same download by the hybrid's .torrent is the same download (one resume state):
	// complete at once, with no peer.
	seed.cancel()
	seed.wait(t, 15*time.Second)
	r = runIn(t, 20*time.Second, args("get", tf, "--timeout", "5s", "-o", out, offline(t))...)
	if r.code != 0 || !strings.Contains(r.stderr, "every piece verified") {
		t.Fatalf("get of the hybrid .torrent over the magnet's download: exit %d\n%s", r.code, r.stderr)
	}
}

// Issue 12: a v2-only .torrent with a url-list downloads from its web seed alone: the web seed's
// pieces are verified by merkle against the piece layers, not by SHA-1 (which a v2-only torrent
// does not have).
func TestV2TorrentFromWebSeedAlone(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "tree")
	want := writeV2Tree(t, src)
	srv := httptest.NewServer(http.FileServer(http.Dir(base)))
	defer srv.Close()
	tf := filepath.Join(t.TempDir(), "tree.torrent")
	if r := runIn(t, 20*time.Second, "create", "--v2", "--piece-length", "16K", "--web-seed", srv.URL+"/", "-o", tf, src); r.code != 0 {
		t.Fatalf("create: exit %d\n%s", r.code, r.stderr)
	}
	out := filepath.Join(t.TempDir(), "dl")
	if r := runIn(t, 20*time.Second, args("get", tf, "--timeout", "15s", "-o", out, offline(t))...); r.code != 0 {
		t.Fatalf("get from the web seed: exit %d\n%s", r.code, r.stderr)
	}
	checkTree(t, filepath.Join(out, "tree"), want)
}

// Issue 12: for a v2-only torrent, names, sizes and --select indexes come from the v2 file
// tree (the swarm's Select counts V2.Files): file i of meta's listing is V2.Files[i].
func TestV2InfoViewAndSelect(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	writeV2Tree(t, src)
	tor, err := torrentfile.CreateTorrent(t.Context(), src, torrentfile.Options{PieceLength: 16 << 10, V2: true})
	if err != nil {
		t.Fatal(err)
	}
	info, got, err := infoView(tor.Meta.InfoBytes)
	if err != nil || got.V1 != nil {
		t.Fatalf("infoView: %v", err)
	}
	files := info.UpvertedFiles()
	if info.BestName() != "tree" || info.TotalLength() != tor.V2.TotalLength || len(files) != len(tor.V2.Files) {
		t.Fatalf("view: name %q, %d bytes, %d files; v2: %d bytes, %d files", info.BestName(), info.TotalLength(), len(files), tor.V2.TotalLength, len(tor.V2.Files))
	}
	sel, err := selector("sub/b.bin", nil, info)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range tor.V2.Files {
		if want := strings.Join(f.Path, "/") == "sub/b.bin"; sel(i) != want {
			t.Fatalf("--select sub/b.bin: file %d (%s) selected %v", i, strings.Join(f.Path, "/"), sel(i))
		}
	}
	if n := numPieces(info, got); n != int(tor.V2.NumPieces) {
		t.Fatalf("%d pieces, want %d", n, tor.V2.NumPieces)
	}

	// A single-file v2 torrent is named after its file, as libtorrent names the download.
	one := filepath.Join(t.TempDir(), "one.bin")
	os.WriteFile(one, randBytes(50_000), 0o644)
	tor, err = torrentfile.CreateTorrent(t.Context(), one, torrentfile.Options{PieceLength: 16 << 10, V2: true, Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if info, _, err = infoView(tor.Meta.InfoBytes); err != nil || info.BestName() != tor.V2.Files[0].Path[0] || info.TotalLength() != 50_000 || len(info.Files) != 0 {
		t.Fatalf("single-file v2: %v, name %q, %d bytes", err, info.BestName(), info.TotalLength())
	}
}

// Issue 12: a hybrid seed is announced, and found, under both infohashes: meta finds it through
// the DHT by a btih-only magnet and by a btmh-only one.
func TestHybridSeedFoundUnderBothHashes(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	base := t.TempDir()
	src := filepath.Join(base, "tree")
	writeV2Tree(t, src)
	seed := startIn(t, "seed", src, "--hybrid", "--piece-length", "16K", "-o", filepath.Join(base, "tree.torrent"),
		"--listen", "/ip4/127.0.240.65/tcp/0", "--listen", "/ip4/127.0.240.65/udp/0", "--bootstrap", bootFlag(nodes[0]),
		"--data-dir", t.TempDir(), "--announce-interval", "1s")
	m, err := magnet.Parse(magnetLine(t, seed))
	if err != nil || !m.HasV1 || !m.HasV2 {
		t.Fatalf("seed --hybrid magnet: want btih and btmh (%v)", err)
	}
	for i, by := range []*magnet.Magnet{{InfoHash: m.InfoHash, HasV1: true}, {InfoHashV2: m.InfoHashV2, HasV2: true}} {
		r := runIn(t, 20*time.Second, "meta", by.String(), "-o", filepath.Join(base, fmt.Sprintf("got%d.torrent", i)), "--timeout", "15s",
			"--listen", fmt.Sprintf("/ip4/127.0.240.%d/udp/0", 66+i), "--bootstrap", bootFlag(nodes[3+2*i]), "--data-dir", t.TempDir())
		if r.code != 0 {
			t.Fatalf("meta %s through the DHT: exit %d\n%s%s\nseed:\n%s", by, r.code, r.stdout, r.stderr, seed.stderr.String())
		}
	}
}

// Issue 12: seed --torrent takes a v2-only .torrent (its piece layers from the file) and a get
// by the magnet it prints downloads it; --v2 with --torrent is a usage error.
func TestSeedExistingV2Torrent(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "tree")
	want := writeV2Tree(t, src)
	tf := filepath.Join(base, "tree.torrent")
	if r := runIn(t, 20*time.Second, "create", "--v2", "--piece-length", "16K", "-o", tf, src); r.code != 0 {
		t.Fatalf("create: exit %d\n%s", r.code, r.stderr)
	}
	if r := runIn(t, 10*time.Second, args("seed", "--torrent", tf, "--v2", src, offline(t))...); r.code != 2 {
		t.Fatalf("seed --torrent --v2: exit %d, want 2\n%s", r.code, r.stderr)
	}
	seed := startIn(t, args("seed", "--torrent", tf, "--print-peer", src, "--listen", "/ip4/127.0.240.69/tcp/0", offline(t))...)
	mag := magnetLine(t, seed)
	if m, err := magnet.Parse(mag); err != nil || !m.HasV2 || m.HasV1 {
		t.Fatalf("seed --torrent of a v2 torrent printed %s (%v)", mag, err)
	}
	out := filepath.Join(base, "dl")
	if r := runIn(t, 20*time.Second, args("get", mag, "--timeout", "15s", "-o", out, offline(t))...); r.code != 0 {
		t.Fatalf("get: exit %d\n%s\nseed:\n%s", r.code, r.stderr, seed.stderr.String())
	}
	checkTree(t, filepath.Join(out, "tree"), want)
}
