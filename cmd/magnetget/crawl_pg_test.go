package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/magnetget/magnetget/crawl"
	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/crawl/index/pgindex"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/pgtest"
)

// TestCrawlPostgresSharedKill9Restart: three `crawl` processes (separate
// IPs) share one PostgreSQL index; one is killed with SIGKILL and
// PostgreSQL is restarted mid-run. The others go on, every announced
// infohash ends up in the index once, the killed crawler's heartbeat row
// is left to expire while the clean ones leave, and export, stats and
// search work on the URL as on a file.
func TestCrawlPostgresSharedKill9Restart(t *testing.T) {
	url, stopPG, startPG := pgtest.Private(t)
	nodes := dhttest.Network(t, 48)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var ihs [][]byte
	for i := range 12 {
		ih := randomIH(t)
		if err := nodes[(i*7)%len(nodes)].Announce(ctx, ih, 7000+i); err != nil {
			t.Fatal(err)
		}
		ihs = append(ihs, ih[:])
	}
	var errs []*syncBuffer
	var procs []interface{ Kill() error }
	for i := range 3 {
		args := []string{"crawl", "--db", url, "--rate", "50", "--progress-interval", "1s",
			"--listen", fmt.Sprintf("/ip4/127.0.206.%d/udp/0", i+1), "--bootstrap", bootFlag(nodes[i*10]), "--data-dir", t.TempDir()}
		if i == 0 {
			args = append(args, "--status-addr", "/ip4/127.0.0.1/tcp/0")
		}
		cmd, _, errb := startBin(t, args...)
		errs = append(errs, errb)
		procs = append(procs, cmd.Process)
	}
	status := statusURL(t, errs[0])
	figures := func() map[string]float64 {
		resp, err := http.Get(status + "/")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var m map[string]float64
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	waitFor(t, 30*time.Second, "three crawlers sharing the keyspace", func() bool { return figures()["crawl_share_count"] == 3 })

	// kill -9 one crawler, then restart PostgreSQL under the others.
	if err := procs[1].Kill(); err != nil {
		t.Fatal(err)
	}
	stopPG()
	time.Sleep(1500 * time.Millisecond)
	startPG()

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	found := 0
	waitFor(t, 60*time.Second, "every announced infohash in the shared index", func() bool {
		found = 0
		conn.QueryRow(ctx, "SELECT count(*) FROM torrents WHERE infohash = ANY($1)", ihs).Scan(&found)
		return found == len(ihs)
	})
	if m := figures(); m["crawl_db_dropped_total"] != 0 || m["crawl_sightings_total"] == 0 {
		t.Errorf("status after the restart: %v", m)
	}

	// Metadata for search, written as a crawler would.
	x, err := pgindex.Open(ctx, url, pgindex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bunny := [20]byte(ihs[0])
	md := index.Metadata{Name: "Big Buck Bunny", Size: 276134947, Files: []index.File{{Path: []string{"Big Buck Bunny.mp4"}, Length: 276134947}}}
	if err := x.SetFetched(bunny, md, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, 30*time.Second, "crawl", "search", "--db", url, "--json", "buck", "bunny")
	var res searchResult
	if r.code != 0 || json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &res) != nil ||
		res.InfoHash != hex.EncodeToString(bunny[:]) || res.Files != 1 || res.Seen < 1 || !strings.HasPrefix(res.Magnet, "magnet:?xt=urn:btih:"+res.InfoHash) {
		t.Errorf("search: exit %d %+v\n%s%s", r.code, res, r.stdout, r.stderr)
	}
	// The test server trusts any password; the output must not show it.
	withPass := strings.Replace(url, "postgres://postgres@", "postgres://postgres:s3cret@", 1)
	r = runBin(t, 30*time.Second, "crawl", "stats", "--db", withPass)
	if r.code != 0 || !strings.Contains(r.stdout, "with metadata:    1") || strings.Contains(r.stdout+r.stderr, "s3cret") {
		t.Errorf("stats: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, 30*time.Second, "crawl", "export", "--db", url, "--format", "csv")
	for _, ih := range ihs {
		if !strings.Contains(r.stdout, hex.EncodeToString(ih)) {
			t.Errorf("csv export lacks %x", ih)
		}
	}
	if n := strings.Count(r.stdout, hex.EncodeToString(ihs[3])); n != 1 {
		t.Errorf("infohash listed %d times", n)
	}
	// The killed crawler's heartbeat stays until it expires.
	var crawlers int
	conn.QueryRow(ctx, "SELECT count(*) FROM crawlers").Scan(&crawlers)
	if crawlers != 3 {
		t.Errorf("%d crawler rows, want 3 (two live, one killed)", crawlers)
	}
}

// TestCrawlSearchBbolt: on a bbolt index search works by a full scan and
// says so.
func TestCrawlSearchBbolt(t *testing.T) {
	db := filepath.Join(t.TempDir(), "crawl.db")
	x, err := index.Open(db, index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ih := randomIH(t)
	x.Observe(ih, index.Sampled, netip.AddrPort{}, time.Now())
	x.SetFetched(ih, index.Metadata{Name: "Sintel \x1b[31mred", Size: 10, Files: []index.File{{Path: []string{"sintel.mkv"}, Length: 10}}}, time.Now())
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, 30*time.Second, "crawl", "search", "--db", db, "SINTEL")
	if r.code != 0 || !strings.Contains(r.stdout, hex.EncodeToString(ih[:])) || !strings.Contains(r.stderr, "full scan") {
		t.Fatalf("search: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "\x1b") {
		t.Errorf("a terminal escape from a torrent name reached the terminal: %q", r.stdout)
	}
	r = runBin(t, 30*time.Second, "crawl", "search", "--db", db, "nothing")
	if r.code != 0 || !strings.Contains(r.stderr, "no match") {
		t.Errorf("no-match search: exit %d\n%s", r.code, r.stderr)
	}
}

// TestProgressSaysDatabaseUnreachable: while index writes fail, the
// progress line says so, with the buffer depth; drops are counted.
func TestProgressSaysDatabaseUnreachable(t *testing.T) {
	var p crawl.Progress
	if s := formatProgress(p, 0); strings.Contains(s, "UNREACHABLE") || strings.Contains(s, "dropped") {
		t.Errorf("healthy progress line: %s", s)
	}
	p.DB = index.Health{Retrying: true, Pending: 1234, LastError: "connection refused", Dropped: 5}
	s := formatProgress(p, 0)
	if !strings.Contains(s, "DATABASE UNREACHABLE: 1234 infohashes buffered, retrying (connection refused)") || !strings.Contains(s, "5 sightings dropped") {
		t.Errorf("progress line during an outage: %s", s)
	}
}
