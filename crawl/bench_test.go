package crawl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/crawl/index/pgindex"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/pgtest"
)

// BenchmarkDiscovery256 measures how fast the walk samples 500
// infohashes announced into a 256-node loopback network, at the default
// Rate (100 queries/s) and unlimited: infohashes/min and nodes visited/s,
// each iteration a fresh index and crawler on the same network.
func BenchmarkDiscovery256(b *testing.B) {
	nodes := dhttest.Network(b, 256)
	ihs := make([][20]byte, 500)
	for i := range ihs {
		ihs[i] = testIH(10_000 + i)
	}
	ihs = announceAllB(b, nodes, ihs)
	cfg := dhttest.Config()
	cfg.Addr = netip.MustParseAddrPort("127.0.0.5:0")
	node, err := dht.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	seeds := []netip.AddrPort{nodes[0].Addr(), nodes[100].Addr(), nodes[200].Addr()}
	for _, bc := range []struct {
		name string
		rate float64
	}{{"rate=default", 0}, {"rate=unlimited", -1}} {
		b.Run(bc.name, func(b *testing.B) { benchDiscovery(b, node, seeds, ihs, bc.rate) })
	}
}

func benchDiscovery(b *testing.B, node *dht.Node, seeds []netip.AddrPort, ihs [][20]byte, rate float64) {
	var total time.Duration
	var visited int64
	for range b.N {
		x, err := index.Open(filepath.Join(b.TempDir(), "crawl.db"), index.Options{FlushInterval: 50 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		c := &Crawler{Index: x, Node: node, Seeds: seeds, Rate: rate}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- c.Run(ctx) }()
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		got := waitFound(wctx, x, ihs, index.Sampled, len(ihs)*99/100)
		total += time.Since(start)
		wcancel()
		cancel()
		<-done
		visited += c.Progress().NodesVisited
		x.Close()
		if got < len(ihs)*99/100 {
			b.Fatalf("found %d of %d", got, len(ihs))
		}
	}
	b.ReportMetric(float64(len(ihs)*99/100*b.N)/total.Minutes(), "infohashes/min")
	b.ReportMetric(float64(visited)/total.Seconds(), "nodes/s")
}

// BenchmarkSharedDiscovery compares, side by side on one 256-node network
// holding 8,000 announced infohashes, what 1 crawler and 4 crawlers
// (separate IPs, one shared PostgreSQL index) add to the index in the same
// 3 s window (after a warm-up second). Each crawler runs at 10 queries/s: DHT nodes answer each source
// IP at a bounded rate and a node is sampled once per interval per source,
// which is why discovery scales by adding addresses; the low rate keeps
// the small test network from running out of infohashes to find (in the
// real DHT there are millions). It reports the infohashes each group found
// and the ratio (target >= 3.5).
func BenchmarkSharedDiscovery(b *testing.B) {
	if !pgtest.Available() {
		b.Skip("no PostgreSQL binaries")
	}
	nodes := dhttest.Network(b, 256)
	t0 := time.Now()
	announced := announceMany(b, nodes, 8000)
	b.Logf("announced %d infohashes in %v", announced, time.Since(t0).Round(time.Millisecond))
	seeds := []netip.AddrPort{nodes[0].Addr(), nodes[100].Addr(), nodes[200].Addr()}
	const warmup, window = time.Second, 3 * time.Second
	const rate = 10
	run := func(n int, subnet byte) int64 {
		url := pgtest.New(b)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		var xs []*pgindex.Index
		for i := range n {
			x, err := pgindex.Open(ctx, url, pgindex.Options{ID: fmt.Sprint(i)})
			if err != nil {
				b.Fatal(err)
			}
			xs = append(xs, x)
			// Register every crawler before any walks, as a standing
			// fleet would be.
			if _, _, err := x.Share(ctx); err != nil {
				b.Fatal(err)
			}
		}
		for i, x := range xs {
			cfg := dhttest.Config()
			cfg.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, subnet, byte(i + 1)}), 0)
			node, err := dht.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer node.Close()
			c := &Crawler{Index: x, Node: node, Seeds: seeds, Rate: rate}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Run(ctx)
			}()
		}
		// Count what the group adds to the index during the window,
		// after a warm-up second (opening, first replies).
		obs, err := pgindex.Open(context.Background(), url, pgindex.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer obs.Close()
		time.Sleep(warmup)
		st1, err1 := obs.Stats()
		time.Sleep(window)
		st2, err2 := obs.Stats()
		cancel()
		wg.Wait()
		for _, x := range xs {
			x.Close()
		}
		if err := errors.Join(err1, err2); err != nil {
			b.Fatal(err)
		}
		return st2.Infohashes - st1.Infohashes
	}
	for i := range b.N {
		one := run(1, byte(10+2*i))
		four := run(4, byte(11+2*i))
		b.ReportMetric(float64(one), "found-by-1")
		b.ReportMetric(float64(four), "found-by-4")
		b.ReportMetric(float64(four)/float64(max(one, 1)), "ratio")
	}
}

// announceMany announces n infohashes from the network's own nodes, 64 at
// a time, within 4 minutes, and returns how many were accepted.
func announceMany(b *testing.B, nodes []*dht.Node, n int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if nodes[(i*37)%len(nodes)].Announce(ctx, testIH(100_000+i), 6881) == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok < n*2/3 {
		b.Fatalf("only %d of %d announces succeeded", ok, n)
	}
	return ok
}
