package crawl

import (
	"context"
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
// holding 20,000 announced infohashes, what 1 crawler and 4 crawlers
// (separate IPs, one shared PostgreSQL index) discover in the same window.
// Each crawler runs at 25 queries/s: DHT nodes answer each source IP at a
// bounded rate, which is why discovery scales by adding addresses. It
// reports the infohashes each group found and the ratio (target >= 3.5).
func BenchmarkSharedDiscovery(b *testing.B) {
	if !pgtest.Available() {
		b.Skip("no PostgreSQL binaries")
	}
	nodes := dhttest.Network(b, 256)
	ihs := make([][20]byte, 20_000)
	for i := range ihs {
		ihs[i] = testIH(100_000 + i)
	}
	t0 := time.Now()
	ihs = announceAllB(b, nodes, ihs)
	b.Logf("announced %d infohashes in %v", len(ihs), time.Since(t0).Round(time.Millisecond))
	seeds := []netip.AddrPort{nodes[0].Addr(), nodes[100].Addr(), nodes[200].Addr()}
	const window = 3 * time.Second
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
			c := &Crawler{Index: x, Node: node, Seeds: seeds, Rate: 25}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Run(ctx)
			}()
		}
		time.Sleep(window)
		cancel()
		wg.Wait()
		for _, x := range xs {
			x.Close()
		}
		x, err := pgindex.Open(context.Background(), url, pgindex.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer x.Close()
		st, err := x.Stats()
		if err != nil {
			b.Fatal(err)
		}
		return st.Infohashes
	}
	for i := range b.N {
		one := run(1, byte(10+2*i))
		four := run(4, byte(11+2*i))
		b.ReportMetric(float64(one), "found-by-1")
		b.ReportMetric(float64(four), "found-by-4")
		b.ReportMetric(float64(four)/float64(max(one, 1)), "ratio")
	}
}
