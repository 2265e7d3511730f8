// Package rctest holds *testing.T helpers around realclient, so interop
// tests are a few lines each:
//
//	p := rctest.Payload(t, realclient.PayloadSpec{Size: 4 << 20})
//	net := rctest.DHT(t, 30)
//	seeder := rctest.Seeder(t, p, net.Addrs())
//	rctest.WaitAnnounced(t, seeder)
//	// ... magnetget's dht/metadata/swarm fetch p.InfoHash via net.Addrs() ...
//	rctest.Compare(t, p, dir)
//
// Every helper skips the test when its client is missing, unless CI=true,
// in which case it fails: CI must run the interop tests. Everything started
// is closed by t.Cleanup.
package rctest

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/realclient"
)

// StartTimeout bounds each helper's wait (start-up, table fill, announce).
const StartTimeout = 45 * time.Second

// Require skips t (or fails it when CI=true) if avail reports an error,
// e.g. Require(t, realclient.LibtorrentAvailable).
func Require(t testing.TB, avail func() error) {
	t.Helper()
	if err := avail(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and a real client is missing: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// Logger returns a logger writing to t.Log at Debug level when
// REALCLIENT_DEBUG is set, else nil (discard).
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("REALCLIENT_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func ctx(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), StartTimeout)
}

// Payload makes test data and its torrent in a fresh temp dir.
func Payload(t testing.TB, spec realclient.PayloadSpec) *realclient.Payload {
	t.Helper()
	p, err := realclient.MakePayload(t.TempDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// DHT starts n libtorrent DHT nodes and waits until every table holds at
// least min(n-1, 8) nodes.
func DHT(t testing.TB, n int) *realclient.LibtorrentDHT {
	return DHTConfig(t, realclient.DHTConfig{Nodes: n}, min(n-1, 8))
}

// DHTConfig starts a libtorrent DHT from cfg and waits until every table
// holds at least k nodes.
func DHTConfig(t testing.TB, cfg realclient.DHTConfig, k int) *realclient.LibtorrentDHT {
	t.Helper()
	Require(t, realclient.LibtorrentAvailable)
	if cfg.Logger == nil {
		cfg.Logger = Logger(t)
	}
	c, cancel := ctx(t)
	defer cancel()
	start := time.Now()
	d, err := realclient.StartLibtorrentDHT(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.WaitNodes(c, k); err != nil {
		t.Fatalf("%v (tables: %v)", err, d.NodeCounts())
	}
	t.Logf("libtorrent DHT: %d nodes, every table >= %d after %v (tables %v)", len(d.Addrs()), k, time.Since(start).Round(time.Millisecond), d.NodeCounts())
	return d
}

// Seeder starts a libtorrent seeder for p; with bootstrap nodes it joins
// that DHT (call WaitAnnounced before expecting lookups to find it).
func Seeder(t testing.TB, p *realclient.Payload, bootstrap []netip.AddrPort) *realclient.LibtorrentSeeder {
	t.Helper()
	Require(t, realclient.LibtorrentAvailable)
	c, cancel := ctx(t)
	defer cancel()
	s, err := realclient.StartLibtorrentSeeder(c, realclient.SeederConfig{
		Torrent: p.Torrent, DataDir: p.DataDir, Bootstrap: bootstrap, Logger: Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// WaitAnnounced waits until s's announce is visible in the DHT.
func WaitAnnounced(t testing.TB, s *realclient.LibtorrentSeeder) {
	t.Helper()
	c, cancel := ctx(t)
	defer cancel()
	start := time.Now()
	if err := s.WaitAnnounced(c); err != nil {
		t.Fatal(err)
	}
	t.Logf("libtorrent seeder %v announced after %v", s.Addr(), time.Since(start).Round(time.Millisecond))
}

// Compare fails t unless dir holds p's files byte for byte.
func Compare(t testing.TB, p *realclient.Payload, dir string) {
	t.Helper()
	if err := p.Compare(dir); err != nil {
		t.Fatal(err)
	}
}

// Download runs LibtorrentDownload (bounded by StartTimeout) and fails t on
// error; the result's Dir is cfg.Dir.
func Download(t testing.TB, cfg realclient.DownloadConfig) realclient.DownloadResult {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = Logger(t)
	}
	return runClient(t, realclient.LibtorrentAvailable, cfg, realclient.LibtorrentDownload)
}

// Aria2 runs Aria2Download (bounded by StartTimeout) and fails t on error.
func Aria2(t testing.TB, cfg realclient.Aria2Config) realclient.Aria2Result {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = Logger(t)
	}
	return runClient(t, realclient.Aria2Available, cfg, realclient.Aria2Download)
}

// runClient requires a client, runs one bounded job with it, and fails t on
// error.
func runClient[C, R any](t testing.TB, avail func() error, cfg C, job func(context.Context, C) (R, error)) R {
	t.Helper()
	Require(t, avail)
	c, cancel := ctx(t)
	defer cancel()
	res, err := job(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Aria2Seeder starts aria2c seeding p (DHT on when entry is valid), closed
// by t.Cleanup.
func Aria2Seeder(t testing.TB, p *realclient.Payload, entry netip.AddrPort) *realclient.Aria2Seeder {
	t.Helper()
	Require(t, realclient.Aria2Available)
	c, cancel := ctx(t)
	defer cancel()
	s, err := realclient.StartAria2Seeder(c, realclient.Aria2SeedConfig{Torrent: p.Torrent, DataDir: p.DataDir, DHTEntry: entry, Logger: Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Tracker starts a loopback HTTP tracker closed by t.Cleanup.
func Tracker(t testing.TB) *realclient.Tracker {
	t.Helper()
	tr, err := realclient.StartTracker(netip.Addr{}, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}
