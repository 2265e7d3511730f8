package interop

import (
	"bytes"
	"context"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/swarm"
	"github.com/magnetget/magnetget/torrentfile"
)

// v2SwarmFiles: two files of several pieces (piece layers to fetch), one of one piece, an empty
// one and a short one: padding between them in a hybrid's v1 half.
var v2SwarmFiles = []realclient.FileSpec{{Path: "a.bin", Size: 900_001}, {Path: "sub/b.bin", Size: 50_000},
	{Path: "sub/zero", Size: 0}, {Path: "c.bin", Size: 1<<20 + 5}, {Path: "d.txt", Size: 333}}

// ltCreate makes a v2-only ("v2") or hybrid torrent of src with libtorrent's create_torrent
// (piece length 64 KiB) and returns its path and what torrentfile reads in it.
func ltCreate(t *testing.T, src, mode string) (string, *torrentfile.Torrent) {
	t.Helper()
	file := filepath.Join(t.TempDir(), mode+".torrent")
	ctx, cancel := context.WithTimeout(t.Context(), procTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, realclient.Python, "-c", v2CreateScript, src, file, "65536", mode).CombinedOutput(); err != nil {
		t.Fatalf("libtorrent create_torrent: %v\n%s", err, out)
	}
	tor, err := torrentfile.LoadTorrent(file)
	if err != nil {
		t.Fatal(err)
	}
	return file, tor
}

func peerChan(addrs ...netip.AddrPort) <-chan netip.AddrPort {
	ch := make(chan netip.AddrPort, len(addrs))
	for _, a := range addrs {
		ch <- a
	}
	close(ch)
	return ch
}

// Issue 12, downloading: libtorrent seeds a v2-only and a hybrid torrent made by its own
// create_torrent. We know only the v2 infohash (a btmh magnet): metadata.Fetch gets the info
// dict under its truncated form, checked against all 32 bytes, and says it matched by v2; the
// swarm joins under that hash with the connections Fetch made and no piece layer, asks
// libtorrent for every layer with hash requests (checked against the roots in the info dict),
// checks each piece by merkle (v2-only) or SHA-1 (hybrid) and writes no padding. Files are
// byte-identical. Before the swarm, metadata.FetchPieceLayers gets every layer over the same
// connections (what `meta` does), assembling into a .torrent with the info dict and layers of
// libtorrent's, and the swarm's own layers end the same.
func TestV2SwarmDownloadsFromLibtorrent(t *testing.T) {
	t.Parallel()
	rctest.Require(t, realclient.LibtorrentAvailable)
	p := rctest.Payload(t, realclient.PayloadSpec{Name: "v2swarm", Seed: 5204, Files: v2SwarmFiles})
	src := filepath.Join(p.DataDir, p.Name)
	for _, mode := range []string{"v2", "hybrid"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			file, tor := ltCreate(t, src, mode)
			if len(tor.PieceLayers) != 2 {
				t.Fatalf("libtorrent's torrent has %d piece layers, want 2", len(tor.PieceLayers))
			}
			seeder := serveWithLibtorrent(t, file, p.DataDir)
			v2, _ := tor.HashV2()
			ih := [20]byte(v2[:20])

			ctx, cancel := context.WithTimeout(t.Context(), procTimeout)
			defer cancel()
			res, err := metadata.Fetch(ctx, ih, peerChan(seeder), metadata.Options{InfoHashV2: v2, Logger: logger()})
			if err != nil {
				t.Fatalf("metadata by btmh: %v", err)
			}
			if !bytes.Equal(res.Info, tor.Meta.InfoBytes) || res.Hashes.Matched != metadata.V2 || res.Hashes.Hybrid() != (mode == "hybrid") {
				t.Fatalf("metadata: %d bytes, hashes %+v", len(res.Info), res.Hashes)
			}
			// What `meta` does: the piece layers from the same connections, then the .torrent.
			layers, err := metadata.FetchPieceLayers(ctx, res.Info, res.Conns, metadata.Options{})
			if err != nil {
				t.Fatalf("piece layers: %v", err)
			}
			want, _ := torrentfile.Assemble(tor.Meta.InfoBytes, tor.PieceLayers, nil)
			if got, err := torrentfile.Assemble(res.Info, layers, nil); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("assembled .torrent differs from libtorrent's info and layers (%v)", err)
			}
			dir := t.TempDir()
			sw, err := swarm.New(swarm.Config{InfoHash: res.Hashes.SwarmHash(), Info: res.Info, Dir: dir, Logger: logger()})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range res.Conns {
				sw.AddConn(c)
			}
			sw.AddPeer(seeder)
			if err := sw.Run(ctx); err != nil {
				t.Fatalf("swarm: %v", err)
			}
			rctest.Compare(t, p, dir)
			if _, err := os.Stat(filepath.Join(dir, p.Name, ".pad")); err == nil {
				t.Error("padding written to disk")
			}
			layers = sw.PieceLayers()
			if !maps.EqualFunc(layers, tor.PieceLayers, bytes.Equal) {
				t.Fatalf("gathered %d piece layers, the .torrent has %d (or they differ)", len(layers), len(tor.PieceLayers))
			}
			b, err := torrentfile.Assemble(res.Info, layers, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := torrentfile.ParseTorrent(b); err != nil || len(got.MissingPieceLayers()) != 0 {
				t.Fatalf("assembled .torrent: %v, missing layers %v", err, got.MissingPieceLayers())
			}
		})
	}
}

// Issue 12, seeding: our swarm seeds a v2-only and a hybrid torrent from the files (read-only)
// under the truncated v2 infohash; libtorrent downloads with a .torrent that has no piece
// layers, so it must take them from our answers to its hash requests, then checks every piece
// against them. Its files are byte-identical.
func TestV2LibtorrentDownloadsFromOurSwarm(t *testing.T) {
	t.Parallel()
	rctest.Require(t, realclient.LibtorrentAvailable)
	p := rctest.Payload(t, realclient.PayloadSpec{Name: "v2seed", Seed: 5205, Files: v2SwarmFiles})
	src := filepath.Join(p.DataDir, p.Name)
	for _, mode := range []string{"v2", "hybrid"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			_, tor := ltCreate(t, src, mode)
			v2, _ := tor.HashV2()
			ln, err := net.Listen("tcp", netip.AddrPortFrom(nextIP(), 0).String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			sw, err := swarm.New(swarm.Config{InfoHash: [20]byte(v2[:20]), Info: tor.Meta.InfoBytes, PieceLayers: tor.PieceLayers,
				Dir: p.DataDir, ReadOnly: true, Seed: true, Listener: ln, Logger: logger()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- sw.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil && ctx.Err() == nil {
					t.Errorf("seeding swarm: %v", err)
				}
			}()
			bare := &torrentfile.Torrent{Meta: tor.Meta, V1: tor.V1, V2: tor.V2}
			var buf bytes.Buffer
			if err := torrentfile.WriteTorrent(&buf, bare); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "bare.torrent")
			if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			res := rctest.Download(t, realclient.DownloadConfig{Torrent: file, Dir: dir,
				Peers: []netip.AddrPort{ln.Addr().(*net.TCPAddr).AddrPort()}, IP: nextIP()})
			rctest.Compare(t, p, dir)
			t.Logf("libtorrent downloaded our %s swarm's %d bytes in %v", mode, res.Bytes, res.Total)
		})
	}
}
