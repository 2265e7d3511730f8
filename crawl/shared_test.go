package crawl

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/crawl/index/pgindex"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/pgtest"
	"github.com/magnetget/magnetget/metadata"
)

// TestSharedIndexFourCrawlers: four crawlers on separate IPs share one
// PostgreSQL index on the 256-node network. One of them ("doomed") leases
// the metadata of the 8 served torrents and stops abruptly mid-fetch (its
// Run is cancelled and its index handle is never closed, as if the process
// died: no result stored, no lease handed back). Its leases expire; the
// other three then fetch each torrent's metadata exactly once, and between
// them sample >= 95% of the announced infohashes, as one crawler does
// alone (TestCrawl256). The doomed crawler's share of the keyspace goes to
// the others when its heartbeat stops.
func TestSharedIndexFourCrawlers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 256 DHT nodes")
	}
	url := pgtest.New(t)
	nodes := dhttest.Network(t, 256)
	ihs := make([][20]byte, 150)
	for i := range ihs {
		ihs[i] = testIH(20_000 + i)
	}
	ihs = announceAll(t, nodes, ihs)
	torrents := serveTorrents(t, nodes, 8)
	all := slices.Clone(ihs)
	for _, tr := range torrents {
		all = append(all, tr.ih)
	}
	seeds := []netip.AddrPort{nodes[0].Addr(), nodes[100].Addr(), nodes[200].Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	open := func(id string) *pgindex.Index {
		x, err := pgindex.Open(ctx, url, pgindex.Options{ID: id, FlushInterval: 50 * time.Millisecond, CrawlerTTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	// The served torrents were seen long ago: their metadata is due first.
	pre := open("setup")
	for _, tr := range torrents {
		pre.Observe(tr.ih, index.Sampled, netip.AddrPort{}, time.Now().Add(-time.Hour))
	}
	if err := pre.Close(); err != nil {
		t.Fatal(err)
	}

	var fmu sync.Mutex
	fetched := map[[20]byte]int{} // successful fetches per infohash, all crawlers
	realFetch := MetadataFetcher(metadata.Options{})
	countingFetch := func(ctx context.Context, ih [20]byte, peers <-chan netip.AddrPort) ([]byte, error) {
		b, err := realFetch(ctx, ih, peers)
		if err == nil {
			fmu.Lock()
			fetched[ih]++
			fmu.Unlock()
		}
		return b, err
	}
	newCrawler := func(i int, x *pgindex.Index, fetch FetchFunc) *Crawler {
		c := &Crawler{Index: x, Rate: 250, Seeds: seeds, MetadataWorkers: 8, MetadataTimeout: 2 * time.Second,
			Lease: 3 * time.Second, RetryBase: time.Hour, ShareInterval: 200 * time.Millisecond, Fetch: fetch}
		c.Node = newCrawlerNode(t, netip.AddrFrom4([4]byte{127, 0, 3, byte(i + 1)}), nodes[:3], c.Harvest)
		return c
	}

	// The doomed crawler: its fetches hang until it dies.
	dx := open("doomed")
	t.Cleanup(func() { dx.Close() })
	hang := func(ctx context.Context, ih [20]byte, peers <-chan netip.AddrPort) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	doomed := newCrawler(3, dx, hang)
	dctx, dcancel := context.WithCancel(ctx)
	ddone := make(chan error, 1)
	go func() { ddone <- doomed.Run(dctx) }()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var servedIHs [][]byte
	for _, tr := range torrents {
		servedIHs = append(servedIHs, tr.ih[:])
	}
	leased := 0
	for ctx.Err() == nil && leased < len(torrents) {
		conn.QueryRow(ctx, "SELECT count(*) FROM torrents WHERE lease_owner = 'doomed' AND lease_until > now() AND infohash = ANY($1)", servedIHs).Scan(&leased)
		time.Sleep(20 * time.Millisecond)
	}
	if leased < len(torrents) {
		t.Fatalf("the doomed crawler leased %d of %d served torrents", leased, len(torrents))
	}
	dcancel() // dies mid-fetch: nothing stored, leases kept, handle not closed
	<-ddone

	live := make([]*Crawler, 3)
	done := make(chan error, len(live))
	rctx, rcancel := context.WithCancel(ctx)
	for i := range live {
		x := open(fmt.Sprintf("live-%d", i))
		t.Cleanup(func() { x.Close() })
		live[i] = newCrawler(i, x, countingFetch)
		go func() { done <- live[i].Run(rctx) }()
	}
	sampled, fetchedAll := 0, false
	for ctx.Err() == nil {
		var ok bool
		ihb := make([][]byte, len(all))
		for i := range all {
			ihb[i] = all[i][:]
		}
		conn.QueryRow(ctx, "SELECT count(*) FROM torrents WHERE how & 1 <> 0 AND infohash = ANY($1)", ihb).Scan(&sampled)
		conn.QueryRow(ctx, "SELECT count(*) = $2 FROM torrents WHERE meta = 1 AND infohash = ANY($1)", servedIHs, len(torrents)).Scan(&ok)
		fetchedAll = ok
		if fetchedAll && sampled >= len(all)*95/100 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Let the shares settle after the doomed crawler's heartbeat ended.
	time.Sleep(500 * time.Millisecond)
	rcancel()
	for range live {
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	if sampled < len(all)*95/100 {
		t.Errorf("the crawlers sampled %d of %d announced infohashes, want >= 95%%", sampled, len(all))
	}
	if !fetchedAll {
		t.Error("not every served torrent's metadata was fetched after the doomed crawler's leases expired")
	}
	fmu.Lock()
	for ih, n := range fetched {
		if n != 1 {
			t.Errorf("%x: metadata fetched %d times", ih[:4], n)
		}
	}
	fmu.Unlock()
	for i, c := range live {
		p := c.Progress()
		t.Logf("crawler %d: %+v", i, p)
		if p.Share[1] != 3 {
			t.Errorf("crawler %d: share %v, want one of 3 once the doomed one stopped", i, p.Share)
		}
	}
	var n int
	conn.QueryRow(ctx, "SELECT count(*) FROM torrents WHERE infohash = ANY($1)", servedIHs).Scan(&n)
	if n != len(torrents) {
		t.Errorf("%d rows for %d served infohashes", n, len(torrents))
	}
}
