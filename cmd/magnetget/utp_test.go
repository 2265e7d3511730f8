package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/torrentfile"
)

// TestGetFromUTPOnlyLibtorrent: a libtorrent seeder that takes peers over uTP only (BEP 29;
// its TCP port hangs up on every connection) is named in the magnet's x.pe; get fetches the
// metadata and the file from it over uTP on its DHT socket. Before, magnetget spoke only TCP
// and such a peer was out of reach.
func TestGetFromUTPOnlyLibtorrent(t *testing.T) {
	rctest.Require(t, realclient.LibtorrentAvailable)
	src := t.TempDir()
	mi, data := payload(t, src, "utp.bin", 3<<20, torrentfile.Options{})
	tf := writeTorrentFile(t, mi, "utp.torrent")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	seeder, err := realclient.StartLibtorrentSeeder(ctx, realclient.SeederConfig{Torrent: tf, DataDir: src, UTPOnly: true,
		IP: netip.MustParseAddr("127.0.239.1"), MaxLifetime: 2 * time.Minute, Logger: rctest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer seeder.Close()
	ih := mi.HashInfoBytes()
	// The seeder is out of reach over TCP: what get achieves below, it achieves over uTP.
	if c, err := peerwire.Dial(ctx, seeder.Addr(), ih, peerwire.Options{Timeout: 5 * time.Second, EncryptedRetry: true}); err == nil {
		c.Close()
		t.Fatal("the uTP-only seeder took a BitTorrent handshake over TCP")
	}

	const client = "127.0.239.2"
	port := freePort(t, client)
	out := t.TempDir()
	uri := fmt.Sprintf("magnet:?xt=urn:btih:%s&x.pe=%s", hex.EncodeToString(ih[:]), seeder.Addr())
	r := runIn(t, 80*time.Second, args("get", uri, "-o", out, "--timeout", "60s",
		"--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(), "--listen", fmt.Sprintf("/ip4/%s/udp/%d", client, port))...)
	if r.code != 0 {
		t.Fatalf("get: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(out, "utp.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
}

// TestLibtorrentUTPOnlyDownloadsFromSeed: a libtorrent leecher that makes peer connections
// over uTP only dials our seed; the seed accepts it on the uTP socket it shares with its DHT
// node (the TCP listener's port number) and uploads the whole file.
func TestLibtorrentUTPOnlyDownloadsFromSeed(t *testing.T) {
	rctest.Require(t, realclient.LibtorrentAvailable)
	src := t.TempDir()
	mi, data := payload(t, src, "up.bin", 3<<20, torrentfile.Options{})
	tf := writeTorrentFile(t, mi, "up.torrent")
	const seedIP = "127.0.239.3"
	port := freePort(t, seedIP)
	p := startIn(t, args("seed", "--torrent", tf, src, "--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(),
		"--listen", fmt.Sprintf("/ip4/%s/udp/%d", seedIP, port))...)
	us := netip.AddrPortFrom(netip.MustParseAddr(seedIP), port)
	waitFor(t, 20*time.Second, "seed listening", func() bool { return strings.Contains(p.stdout.String(), "magnet:") })

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Torrent: tf, Dir: dir, Peers: []netip.AddrPort{us},
		UTPOnly: true, IP: netip.MustParseAddr("127.0.239.4"), MaxLifetime: 2 * time.Minute, Logger: rctest.Logger(t)})
	if err != nil {
		t.Fatalf("libtorrent download: %v\nseed stderr:\n%s", err, p.stderr.String())
	}
	t.Logf("libtorrent over uTP: %d bytes in %v", res.Bytes, res.Total)
	if got, err := os.ReadFile(filepath.Join(dir, "up.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("libtorrent's file differs (err %v)", err)
	}
	p.cancel()
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("seed: exit %d after Ctrl-C\nstderr:\n%s", code, p.stderr.String())
	}
}

// BenchmarkUTPFromLibtorrent: 64 MiB from a uTP-only libtorrent seeder on loopback, fetched by
// `magnetget get` (over our uTP) and by a uTP-only libtorrent leecher, in the same run.
//
//	go test ./cmd/magnetget -run XXX -bench UTPFromLibtorrent -benchtime 1x
func BenchmarkUTPFromLibtorrent(b *testing.B) {
	rctest.Require(b, realclient.LibtorrentAvailable)
	src := b.TempDir()
	const size = 64 << 20
	data := make([]byte, size)
	crand.Read(data)
	if err := os.WriteFile(filepath.Join(src, "big.bin"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	mi, err := torrentfile.Create(context.Background(), filepath.Join(src, "big.bin"), torrentfile.Options{PieceLength: 256 << 10})
	if err != nil {
		b.Fatal(err)
	}
	tf := filepath.Join(b.TempDir(), "big.torrent")
	f, err := os.Create(tf)
	if err != nil {
		b.Fatal(err)
	}
	if err := torrentfile.Write(f, mi); err != nil {
		b.Fatal(err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	seeder, err := realclient.StartLibtorrentSeeder(ctx, realclient.SeederConfig{Torrent: tf, DataDir: src, UTPOnly: true,
		IP: netip.MustParseAddr("127.0.239.10"), MaxLifetime: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer seeder.Close()
	ih := mi.HashInfoBytes()
	b.Run("magnetget", func(b *testing.B) {
		for i := range b.N {
			out := b.TempDir()
			client := fmt.Sprintf("127.0.239.%d", 20+i)
			uri := fmt.Sprintf("magnet:?xt=urn:btih:%s&x.pe=%s", hex.EncodeToString(ih[:]), seeder.Addr())
			start := time.Now()
			code := run(ctx, []string{"magnetget", "get", uri, "-o", out, "--timeout", "5m", "--bootstrap-file", "/dev/null",
				"--data-dir", b.TempDir(), "--listen", "/ip4/" + client + "/udp/0"}, io.Discard, io.Discard)
			if code != 0 {
				b.Fatalf("get: exit %d", code)
			}
			b.ReportMetric(float64(size)/(1<<20)/time.Since(start).Seconds(), "MiB/s")
		}
	})
	b.Run("libtorrent-from-magnetget-seed", func(b *testing.B) {
		const seedIP = "127.0.239.11"
		ln, err := net.Listen("tcp", seedIP+":0")
		if err != nil {
			b.Fatal(err)
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		sctx, scancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		go func() {
			done <- run(sctx, []string{"magnetget", "seed", "--torrent", tf, src, "--bootstrap-file", "/dev/null",
				"--data-dir", b.TempDir(), "--listen", fmt.Sprintf("/ip4/%s/udp/%d", seedIP, port)}, io.Discard, io.Discard)
		}()
		defer func() { scancel(); <-done }()
		time.Sleep(500 * time.Millisecond) // the seed's start-up (it checks nothing: --torrent over the files)
		for i := range b.N {
			uri := fmt.Sprintf("magnet:?xt=urn:btih:%s", hex.EncodeToString(ih[:]))
			res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Magnet: uri, Dir: b.TempDir(),
				Peers: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(seedIP), port)}, UTPOnly: true,
				IP: netip.MustParseAddr(fmt.Sprintf("127.0.239.%d", 100+i))})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(size)/(1<<20)/res.Wall.Seconds(), "MiB/s")
		}
	})
	b.Run("libtorrent", func(b *testing.B) {
		for i := range b.N {
			uri := fmt.Sprintf("magnet:?xt=urn:btih:%s", hex.EncodeToString(ih[:]))
			res, err := realclient.LibtorrentDownload(ctx, realclient.DownloadConfig{Magnet: uri, Dir: b.TempDir(),
				Peers: []netip.AddrPort{seeder.Addr()}, UTPOnly: true, IP: netip.MustParseAddr(fmt.Sprintf("127.0.239.%d", 60+i))})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(size)/(1<<20)/res.Wall.Seconds(), "MiB/s")
		}
	})
}
