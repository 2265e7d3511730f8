package dht_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// BenchmarkColdLookupHalfDead measures a cold node's time to the first peer in a loopback network
// of 64 live nodes and 64 dead ones, named in everyone's tables and answers but never answering
// (issue 10), under two profiles: "dead" (plain loopback otherwise) and dhttest.Mainline (20-200 ms
// round trips, 1 % loss, the node under test behind its own access link). The node under test runs
// with production defaults (2 s resend delay, 250 queries/s) and one live bootstrap node; each
// iteration starts a new node. Modes:
//
//   - wait-bootstrap: Bootstrap, then Lookup (what a cold `meta` did);
//   - at-once: Lookup at once, with Bootstrap running beside it.
//
// Reported: p50/p95 of the time from New to the first peer, and of Bootstrap alone (both from
// New), and how many lookups found no peer within 30 s.
func BenchmarkColdLookupHalfDead(b *testing.B) {
	for _, p := range []dhttest.Profile{{Name: "dead", Dead: 0.5}, dhttest.Mainline} {
		b.Run(p.Name, func(b *testing.B) { benchColdLookup(b, p) })
	}
}

func benchColdLookup(b *testing.B, p dhttest.Profile) {
	live := dhttest.NetworkProfile(b, 64, p)
	ctx := context.Background()
	var ihs [][20]byte
	for i := range 16 {
		ih := [20]byte{'h', 'a', 'l', 'f', byte(i)}
		if err := live[(i*7)%len(live)].Announce(ctx, ih, 1000+i); err != nil {
			b.Fatalf("Announce: %v", err)
		}
		ihs = append(ihs, ih)
	}
	run := func(b *testing.B, wait bool) {
		var first, boot []time.Duration
		misses := 0
		for i := 0; b.Loop(); i++ {
			pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addrFor(302)))
			if err != nil {
				b.Fatal(err)
			}
			cfg := dht.Config{Conn: p.Wrap(pc, 1000), Bootstrap: []netip.AddrPort{live[i%len(live)].Addr()}}
			ih := ihs[i%len(ihs)]
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			start := time.Now()
			n, err := dht.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			bootstrap := func() {
				if err := n.Bootstrap(lctx); err != nil && lctx.Err() == nil {
					b.Errorf("Bootstrap: %v", err)
				}
				boot = append(boot, time.Since(start))
			}
			if wait {
				bootstrap()
			} else {
				wg.Add(1)
				go func() { defer wg.Done(); bootstrap() }()
			}
			var firstAt time.Duration
			err = n.Lookup(lctx, ih, func(dht.PeerResult) bool {
				firstAt = time.Since(start)
				return false
			})
			b.StopTimer()
			wg.Wait()
			cancel()
			n.Close()
			b.StartTimer()
			if firstAt == 0 {
				misses++ // counted, not fatal: the old traversal missed some
				continue
			}
			first = append(first, firstAt)
		}
		if len(first) == 0 {
			b.Fatal("no lookup found a peer")
		}
		b.ReportMetric(float64(misses), "missed")
		report(b, "first", first)
		report(b, "bootstrap", boot)
	}
	b.Run("wait-bootstrap", func(b *testing.B) { run(b, true) })
	b.Run("at-once", func(b *testing.B) { run(b, false) })
}
