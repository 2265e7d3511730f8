package dht_test

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// BenchmarkLookup256 measures how long a node that has just started takes to find the peers of
// an infohash in a 256-node loopback network. Each iteration starts a new node and looks up one
// of the announced infohashes; the clock starts before New, so it covers opening the socket and
// loading routing.db. Reported: p50/p95 of the time to the first peer and to the end of the
// traversal.
//
//   - cold: no saved table, one bootstrap node; Bootstrap, then Lookup (what a first run does);
//   - cold-lookup: no saved table, one bootstrap node; Lookup at once (the traversal starts from
//     the bootstrap node itself);
//   - warm: routing.db saved by an earlier run of the same node, no bootstrap nodes; Lookup at
//     once, seeded from the saved table.
func BenchmarkLookup256(b *testing.B) {
	nodes := dhttest.Network(b, 256)
	ctx := context.Background()
	var ihs [][20]byte
	for i := range 32 {
		var ih [20]byte
		for j := range ih {
			ih[j] = byte(rand.IntN(256))
		}
		if err := nodes[(i*7)%len(nodes)].Announce(ctx, ih, 1000+i); err != nil {
			b.Fatalf("Announce: %v", err)
		}
		ihs = append(ihs, ih)
	}

	// The warm state: one node bootstraps, does lookups (as a node that has run a while has), and
	// saves on Close.
	dir := b.TempDir()
	warmState := filepath.Join(dir, "warm.db")
	{
		n, err := dht.New(dht.Config{Addr: addrFor(300), Rate: -1, ResendDelay: time.Second, StateFile: warmState, Bootstrap: []netip.AddrPort{nodes[0].Addr()}})
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Bootstrap(ctx); err != nil {
			b.Fatal(err)
		}
		for _, ih := range ihs {
			_ = n.Lookup(ctx, ih, func(dht.PeerResult) bool { return true })
		}
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
	}
	warmBytes, err := os.ReadFile(warmState)
	if err != nil {
		b.Fatal(err)
	}

	run := func(b *testing.B, warm, bootstrap bool) {
		var started, first, total []time.Duration
		for i := 0; b.Loop(); i++ {
			cfg := dht.Config{Addr: addrFor(301), Rate: -1, ResendDelay: time.Second}
			if warm {
				cfg.StateFile = filepath.Join(b.TempDir(), "routing.db")
				if err := os.WriteFile(cfg.StateFile, warmBytes, 0o600); err != nil {
					b.Fatal(err)
				}
			} else {
				cfg.Bootstrap = []netip.AddrPort{nodes[i%len(nodes)].Addr()}
			}
			ih := ihs[rand.IntN(len(ihs))]
			start := time.Now()
			n, err := dht.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			started = append(started, time.Since(start))
			if bootstrap {
				if err := n.Bootstrap(ctx); err != nil {
					b.Fatal(err)
				}
			}
			var firstAt time.Duration
			err = n.Lookup(ctx, ih, func(dht.PeerResult) bool {
				if firstAt == 0 {
					firstAt = time.Since(start)
				}
				return true
			})
			end := time.Since(start)
			b.StopTimer()
			n.Close()
			b.StartTimer()
			if err != nil || firstAt == 0 {
				b.Fatalf("lookup %d (warm=%v): err %v, first peer after %v", i, warm, err, firstAt)
			}
			first = append(first, firstAt)
			total = append(total, end)
		}
		report(b, "new", started)
		report(b, "first", first)
		report(b, "end", total)
	}
	b.Run("cold", func(b *testing.B) { run(b, false, true) })
	b.Run("cold-lookup", func(b *testing.B) { run(b, false, false) })
	b.Run("warm", func(b *testing.B) { run(b, true, false) })
}

func report(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	pct := func(p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), name+"-p50-ms")
	b.ReportMetric(pct(0.95), name+"-p95-ms")
}
