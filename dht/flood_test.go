package dht_test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// floodSources binds k raw sockets on 127.0.8.x/127.0.9.x (one IP each) for flooding a node.
func floodSources(t testing.TB, k int) []*net.UDPConn {
	t.Helper()
	out := make([]*net.UDPConn, 0, k)
	for i := range k {
		ip := netip.AddrFrom4([4]byte{127, byte(8 + i/250), 0, byte(1 + i%250)})
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// flood sends get_peers queries from every source to target, round robin, until stop is closed
// or max packets are sent, and counts the replies each source gets.
func flood(srcs []*net.UDPConn, target netip.AddrPort, max int, stop <-chan struct{}) (replies []atomic.Int64, wait func()) {
	replies = make([]atomic.Int64, len(srcs))
	var wg sync.WaitGroup
	for i, c := range srcs {
		wg.Add(1)
		go func() { // reader: counts replies until the socket is closed or idle
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				c.SetReadDeadline(time.Now().Add(time.Second))
				if _, _, err := c.ReadFrom(buf); err != nil {
					select {
					case <-stop:
						return
					default:
						continue
					}
				}
				replies[i].Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		to := net.UDPAddrFromAddrPort(target)
		for k := 0; k < max; k++ {
			select {
			case <-stop:
				return
			default:
			}
			q := fmt.Appendf(nil, "d1:ad2:id20:flood-source-%07d9:info_hash20:%020de1:q9:get_peers1:t4:%04d1:y1:qe", k%len(srcs), k, k%10000)
			srcs[k%len(srcs)].WriteTo(q, to)
		}
	}()
	return replies, wg.Wait
}

// Issue 9 row 10: a flood of queries from many sources does not starve our own lookup (our
// queries have their own budget), each source gets at most its rate, and the node's replies stay
// within its reply rate.
func TestLookupDuringQueryFlood(t *testing.T) {
	nodes := dhttest.Network(t, 16)
	ctx := testCtx(t)
	ih := randomID(t)
	if err := nodes[5].Announce(ctx, ih, 6881); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	var boot []netip.AddrPort
	for _, nd := range nodes[:4] {
		boot = append(boot, nd.Addr())
	}
	// Production rates: 250 queries/s for us, 250 replies/s, 10 replies/s per source.
	victim := newNode(t, 241, dht.Config{Rate: dht.DefaultRate, SourceRate: dht.DefaultSourceRate, Bootstrap: boot})
	srcs := floodSources(t, 200)
	stop := make(chan struct{})
	start := time.Now()
	replies, wait := flood(srcs, victim.Addr(), 200_000, stop)
	defer func() { close(stop); wait() }()
	time.Sleep(200 * time.Millisecond) // the flood is under way

	if err := victim.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap during the flood: %v", err)
	}
	want := netip.AddrPortFrom(nodes[5].Addr().Addr(), 6881)
	got := lookupAll(t, ctx, victim, ih)
	if !slices.Contains(got, want) {
		t.Fatalf("Lookup during the flood found %v, want %v", got, want)
	}
	elapsed := time.Since(start).Seconds()
	st := victim.Stats()
	if st.QueriesIn < 1000 {
		t.Fatalf("the flood reached the node with only %d queries", st.QueriesIn)
	}
	// Replies: the flood's plus a few to the network's nodes; bounded by the reply rate.
	if limit := int64(dht.DefaultRate*elapsed) + dht.DefaultRate; st.RepliesSent > limit {
		t.Fatalf("%d replies in %.1fs, above the reply rate (%d)", st.RepliesSent, elapsed, limit)
	}
	for i := range replies {
		if r := replies[i].Load(); float64(r) > dht.DefaultSourceRate*(elapsed+2)+1 {
			t.Fatalf("source %d got %d replies in %.1fs, above its rate", i, r, elapsed)
		}
	}
	t.Logf("%.1fs: %d queries in, %d replies, %d dropped", elapsed, st.QueriesIn, st.RepliesSent, st.RepliesDropped)
}
