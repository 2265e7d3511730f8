package crawl

import (
	"context"
	"crypto/sha1"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// announceAll has network nodes announce each infohash (port 6881:
// nobody listens there), a few at a time, and returns the ones that at
// least one node accepted. On a loaded machine a few traversals time out;
// the crawl is judged on what was really announced.
func announceAll(t *testing.T, nodes []*dht.Node, ihs [][20]byte) [][20]byte {
	return announceAllB(t, nodes, ihs)
}

func announceAllB(t testing.TB, nodes []*dht.Node, ihs [][20]byte) [][20]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	ok := make([]bool, len(ihs))
	for i, ih := range ihs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ok[i] = nodes[(i*37)%len(nodes)].Announce(ctx, ih, 6881) == nil
		}()
	}
	wg.Wait()
	var out [][20]byte
	for i, ih := range ihs {
		if ok[i] {
			out = append(out, ih)
		}
	}
	if len(out) < len(ihs)*2/3 {
		t.Fatalf("only %d of %d announces succeeded", len(out), len(ihs))
	}
	return out
}

func testIH(i int) [20]byte { return sha1.Sum(fmt.Appendf(nil, "crawl test infohash %d", i)) }

func newCrawlerNode(t *testing.T, ip netip.Addr, boot []*dht.Node, harvest func([20]byte, netip.AddrPort, How)) *dht.Node {
	t.Helper()
	cfg := dhttest.Config()
	cfg.Addr = netip.AddrPortFrom(ip, 0)
	for _, n := range boot {
		cfg.Bootstrap = append(cfg.Bootstrap, n.Addr())
	}
	cfg.OnAnnounce = func(ih [20]byte, p netip.AddrPort) { harvest(ih, p, Announce) }
	cfg.OnGetPeers = func(ih [20]byte, _ netip.AddrPort) { harvest(ih, netip.AddrPort{}, GetPeers) }
	n, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitFound polls the index until want of ihs carry bit how, or the
// deadline passes; it returns how many do.
func waitFound(ctx context.Context, x *index.Index, ihs [][20]byte, how index.How, want int) int {
	for {
		n := 0
		for _, ih := range ihs {
			if e, ok, _ := x.Get(ih); ok && e.How&how != 0 {
				n++
			}
		}
		if n >= want || ctx.Err() != nil {
			return n
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// torrent is a served test torrent.
type torrent struct {
	ih   [20]byte
	name string
	size int64
	s    *metadatatest.Seeder
}

// serveTorrents starts n seeders and announces each into the network from
// a DHT node on the seeders' IP (127.0.0.1), so the peer the network
// stores is the seeder.
func serveTorrents(t *testing.T, nodes []*dht.Node, n int) []torrent {
	t.Helper()
	cfg := dhttest.Config()
	cfg.Addr = netip.MustParseAddrPort("127.0.0.1:0")
	for _, nd := range nodes[:8] {
		cfg.Bootstrap = append(cfg.Bootstrap, nd.Addr())
	}
	announcer, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { announcer.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := announcer.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	var out []torrent
	for i := range n {
		name := fmt.Sprintf("torrent-%d.bin", i)
		size := int64(1000 + 7*i)
		info := mustInfo(t, metainfo.Info{Name: name, Length: size})
		s := metadatatest.NewSeeder(t, info, metadatatest.Behavior{})
		if err := announcer.Announce(ctx, s.InfoHash, int(s.Addr.Port())); err != nil {
			t.Fatalf("announce torrent %d: %v", i, err)
		}
		out = append(out, torrent{ih: s.InfoHash, name: name, size: size, s: s})
	}
	return out
}

// TestCrawl256 crawls a 256-node network where random nodes announced 150
// infohashes (nobody serves them) and a seeder serves 5 more: the walk
// samples >= 95% of them, metadata of the served ones is stored with name
// and size, failed fetches are not retried before their back-off, and
// after a restart the stored metadata is not fetched again.
func TestCrawl256(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 256 DHT nodes")
	}
	t0 := time.Now()
	nodes := dhttest.Network(t, 256)
	t.Logf("network up in %v", time.Since(t0).Round(time.Millisecond))
	ihs := make([][20]byte, 150)
	for i := range ihs {
		ihs[i] = testIH(i)
	}
	t0 = time.Now()
	ihs = announceAll(t, nodes, ihs)
	torrents := serveTorrents(t, nodes, 5)
	t.Logf("announced in %v", time.Since(t0).Round(time.Millisecond))
	all := slices.Clone(ihs)
	for _, tr := range torrents {
		all = append(all, tr.ih)
	}

	path := filepath.Join(t.TempDir(), "crawl.db")
	x, err := index.Open(path, index.Options{FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	seeds := []netip.AddrPort{nodes[0].Addr(), nodes[100].Addr(), nodes[200].Addr()}
	c := &Crawler{Index: x, Rate: 1000, Seeds: seeds, MetadataWorkers: 4, MetadataTimeout: 10 * time.Second, RetryBase: time.Hour}
	var hmu sync.Mutex // guards harvest: the hooks follow whichever crawler is current
	harvest := c
	crawlerNode := newCrawlerNode(t, netip.MustParseAddr("127.0.0.2"), nodes[:3], func(ih [20]byte, p netip.AddrPort, how How) {
		hmu.Lock()
		cur := harvest
		hmu.Unlock()
		cur.Harvest(ih, p, how)
	})
	c.Node = crawlerNode

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
	start := time.Now()
	want := (len(all)*95 + 99) / 100
	got := waitFound(wctx, x, all, index.Sampled, want)
	elapsed := time.Since(start)
	var fetched int
	for fetched < len(torrents) && wctx.Err() == nil {
		fetched = 0
		for _, tr := range torrents {
			if e, ok, _ := x.Get(tr.ih); ok && e.Meta == index.MetaFetched {
				fetched++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	wcancel()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	p := c.Progress()
	t.Logf("sampled %d/%d announced infohashes in %v; progress %+v", got, len(all), elapsed.Round(time.Millisecond), p)
	if got < want {
		t.Fatalf("the walk sampled %d of %d announced infohashes, want >= %d", got, len(all), want)
	}
	if p.NodesVisited < 100 {
		t.Errorf("visited %d nodes of 256", p.NodesVisited)
	}
	for _, tr := range torrents {
		e, _, _ := x.Get(tr.ih)
		if e.Meta != index.MetaFetched || e.Name != tr.name || e.Size != tr.size || len(e.Files) != 1 {
			t.Errorf("torrent %s: stored %v name %q size %d files %d; want fetched %q %d", tr.name, e.Meta, e.Name, e.Size, len(e.Files), tr.name, tr.size)
		}
	}
	tried := 0
	for _, ih := range ihs {
		e, _, _ := x.Get(ih)
		switch e.Meta {
		case index.MetaFetched:
			t.Errorf("%x: metadata fetched though nobody serves it", ih)
		case index.MetaFailed:
			tried++
			if e.Attempts != 1 || time.Until(e.NextRetry) < 50*time.Minute {
				t.Errorf("%x: %d attempts, next retry %v: retried before its back-off", ih, e.Attempts, e.NextRetry)
			}
		}
	}
	if tried == 0 {
		t.Error("no fetch of an unserved infohash was attempted (or recorded)")
	}
	st, err := x.Stats()
	if err != nil || st.Infohashes < int64(got) || st.WithMetadata != int64(len(torrents)) {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: a new index handle and crawler. A freshly announced
	// infohash is due at once; once its fetch was tried, the metadata loop
	// has run, and the seeders must not have been contacted again.
	accepted := 0
	for _, tr := range torrents {
		accepted += tr.s.Accepted()
	}
	x, err = index.Open(path, index.Options{FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	c2 := &Crawler{Index: x, Node: crawlerNode, Rate: 1000, Seeds: seeds, MetadataWorkers: 4, MetadataTimeout: 10 * time.Second, RetryBase: time.Hour}
	hmu.Lock()
	harvest = c2
	hmu.Unlock()
	fresh := testIH(1000)
	if err := x.Observe(fresh, GetPeers, netip.AddrPort{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- c2.Run(ctx) }()
	wctx, wcancel = context.WithTimeout(ctx, 60*time.Second)
	for wctx.Err() == nil {
		if e, _, _ := x.Get(fresh); e.Meta == index.MetaFailed {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	timedOut := wctx.Err() != nil
	wcancel()
	cancel()
	<-done
	if timedOut {
		t.Fatal("after restart the metadata loop never tried the new infohash")
	}
	after := 0
	for _, tr := range torrents {
		after += tr.s.Accepted()
		if e, _, _ := x.Get(tr.ih); e.Meta != index.MetaFetched || e.Name != tr.name {
			t.Errorf("after restart %s: %v %q", tr.name, e.Meta, e.Name)
		}
	}
	if after != accepted {
		t.Errorf("seeders accepted %d connections after the restart: stored metadata was fetched again", after-accepted)
	}
	if p := c2.Progress(); p.MetadataFetched != 0 {
		t.Errorf("second run fetched %d info dicts, want 0", p.MetadataFetched)
	}
}
