package main

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht/dhttest"
)

func TestCrawlFindsAnnouncedInfohashesAndExports(t *testing.T) {
	nodes := dhttest.Network(t, 48)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var want []string
	for i := range 10 {
		ih := randomIH(t)
		if err := nodes[(i*7)%len(nodes)].Announce(ctx, ih, 7000+i); err != nil {
			t.Fatal(err)
		}
		want = append(want, hex.EncodeToString(ih[:]))
	}
	db := filepath.Join(t.TempDir(), "crawl.db")
	r := runBin(t, 90*time.Second, "crawl", "--db", db, "--duration", "15s", "--rate", "-1", "--progress-interval", "2s",
		"--listen", "/ip4/127.0.204.1/udp/0", "--bootstrap", bootFlag(nodes[0]), "--data-dir", t.TempDir())
	if r.code != 0 {
		t.Fatalf("crawl: exit %d\n%s", r.code, r.stderr)
	}
	r = runBin(t, 30*time.Second, "crawl", "export", "--db", db, "--format", "jsonl")
	if r.code != 0 {
		t.Fatalf("export: exit %d\n%s", r.code, r.stderr)
	}
	missing := 0
	for _, ih := range want {
		if !strings.Contains(r.stdout, ih) {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("export lacks %d of %d announced infohashes", missing, len(want))
	}
	r = runBin(t, 30*time.Second, "crawl", "export", "--db", db, "--format", "csv")
	if r.code != 0 || !strings.Contains(r.stdout, want[0]) || strings.Count(r.stdout, "\n") < len(want)+1 {
		t.Errorf("csv export: exit %d\n%s", r.code, r.stdout)
	}
	r = runBin(t, 30*time.Second, "crawl", "stats", "--db", db)
	if r.code != 0 || !strings.Contains(r.stdout, "infohashes:") {
		t.Errorf("stats: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A corrupt index is moved aside, named, and the crawl starts fresh.
	bad := filepath.Join(t.TempDir(), "crawl.db")
	if err := os.WriteFile(bad, []byte("this is not a bbolt file, but somebody's notes"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, 30*time.Second, "crawl", "stats", "--db", bad)
	if r.code != 0 || !strings.Contains(r.stderr, "moved aside") {
		t.Fatalf("stats on a corrupt index: exit %d\n%s", r.code, r.stderr)
	}
	matches, _ := filepath.Glob(bad + "*")
	if len(matches) < 2 {
		t.Errorf("the corrupt file was not kept aside: %v", matches)
	}
}
