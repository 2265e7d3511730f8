package crawl

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// requireLibtorrent skips without python3-libtorrent, except under CI=true
// where a missing client is a failure.
func requireLibtorrent(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	err := exec.Command(py, "-c", "import libtorrent").Run()
	if err == nil {
		return py
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("python3-libtorrent is required under CI=true: %v", err)
	}
	t.Skipf("python3-libtorrent not available: %v", err)
	return ""
}

// TestCrawlLibtorrentDHT crawls a DHT of real libtorrent nodes that seed
// small torrents: every announced infohash is sampled over BEP 51 as
// libtorrent implements it, and the metadata is fetched from libtorrent
// over BEP 9 with the right names and sizes.
func TestCrawlLibtorrentDHT(t *testing.T) {
	py := requireLibtorrent(t)
	const nNodes, nTorrents = 6, 10
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/libtorrent_dht.py", fmt.Sprint(nNodes), fmt.Sprint(nTorrents), t.TempDir())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("libtorrent script: %v", err)
	}
	var out struct {
		Nodes      []string `json:"nodes"`
		Infohashes []string `json:"infohashes"`
	}
	if err := json.Unmarshal(line, &out); err != nil {
		t.Fatalf("libtorrent script printed %q: %v", line, err)
	}
	var seeds []netip.AddrPort
	for _, s := range out.Nodes {
		seeds = append(seeds, netip.MustParseAddrPort(s))
	}
	var ihs [][20]byte
	for _, s := range out.Infohashes {
		b, _ := hex.DecodeString(s)
		ihs = append(ihs, [20]byte(b))
	}

	x, err := index.Open(filepath.Join(t.TempDir(), "crawl.db"), index.Options{FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	cfg := dhttest.Config()
	cfg.Addr = netip.MustParseAddrPort("127.0.59.1:0")
	cfg.Bootstrap = seeds
	node, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	c := &Crawler{Index: x, Node: node, Seeds: seeds, MetadataWorkers: 4, MetadataTimeout: 20 * time.Second, RetryBase: time.Hour,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	got := waitFound(ctx, x, ihs, index.Sampled, len(ihs))
	fetched := 0
	for ctx.Err() == nil {
		fetched = 0
		for _, ih := range ihs {
			if e, _, _ := x.Get(ih); e.Meta == index.MetaFetched {
				fetched++
			}
		}
		if fetched == len(ihs) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rcancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("progress %+v", c.Progress())
	if got != len(ihs) {
		t.Fatalf("sampled %d of %d infohashes from libtorrent nodes", got, len(ihs))
	}
	for i, ih := range ihs {
		e, _, _ := x.Get(ih)
		name, size := fmt.Sprintf("lt-file-%d.bin", i), int64(1000+i)
		if e.Meta != index.MetaFetched || e.Name != name || e.Size != size {
			t.Errorf("torrent %d: %v %q %d; want fetched %q %d", i, e.Meta, e.Name, e.Size, name, size)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }
