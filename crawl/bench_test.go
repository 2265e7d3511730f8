package crawl

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
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
