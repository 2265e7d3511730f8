// Package dhttest starts small DHT networks on loopback for tests, in the manner of
// net/http/httptest. Only tests import it.
package dhttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
)

// Seeds is how many other nodes each node is given to bootstrap from. One seed per node turns a
// small network into a star (see NOTES-anacrolix-dht.md); several make a well-knit table.
const Seeds = 6

// Addr returns the i-th loopback address used by Network: 127.0.x.y with y in 1..250, so that
// every node has its own IP (peers and tokens are keyed by IP).
func Addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(1 + i/250), byte(1 + i%250)})
}

// Config returns the configuration Network uses: unlimited send and reply rates (each node stands
// for a host of the wide DHT, where one client rarely asks one node twice; in a small network a
// client running many lookups asks every node over and over), and a resend delay that is short
// for a network but long enough for a loaded CI machine running -race (an answered query never
// waits for it).
func Config() dht.Config {
	return dht.Config{Rate: -1, SourceRate: -1, ResendDelay: time.Second}
}

// Network starts n nodes on loopback (distinct 127.0.x.y addresses), each seeded with several
// others, bootstrapped, and closed by t.Cleanup.
func Network(t testing.TB, n int) []*dht.Node {
	return NetworkWith(t, n, nil)
}

// NetworkWith is Network with a hook to adjust each node's Config (state files, callbacks)
// before it starts. Bootstrap is set by NetworkWith; Conn is the node's socket, which the hook
// may wrap (the wrapper then owns it).
func NetworkWith(t testing.TB, n int, configure func(i int, c *dht.Config)) []*dht.Node {
	t.Helper()
	conns := make([]*net.UDPConn, n)
	for i := range conns {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(Addr(i), 0)))
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			t.Fatalf("dhttest: listen: %v", err)
		}
		conns[i] = c
	}
	addrs := make([]netip.AddrPort, n)
	for i, c := range conns {
		addrs[i] = c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	nodes := make([]*dht.Node, 0, n)
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.Close()
		}
	})
	rng := rand.New(rand.NewPCG(uint64(n), 42))
	for i, c := range conns {
		cfg := Config()
		cfg.Conn = c // set first, so the hook may wrap it (NetworkProfile does)
		if configure != nil {
			configure(i, &cfg)
		}
		cfg.Bootstrap = pickOthers(rng, addrs, i, Seeds)
		nd, err := dht.New(cfg)
		if err != nil {
			for _, c := range conns[i:] {
				c.Close()
			}
			t.Fatalf("dhttest: node %d: %v", i, err)
		}
		nodes = append(nodes, nd)
	}
	// Each node walks toward its own id from its seeds. Nodes answer with the nodes they have
	// heard back from, so early walkers see sparse tables: retry the nodes that failed (their
	// seeds were all still empty). Lookups seed from every node that ever answered, so one walk
	// per node knits the network well enough.
	pending := nodes
	if n < 2 {
		pending = nil // a lone node has nobody to walk to
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		failed, err := bootstrapAll(pending)
		if attempt == 3 && err != nil {
			t.Fatalf("dhttest: bootstrap: %v", err)
		}
		pending = failed
	}
	return nodes
}

func pickOthers(rng *rand.Rand, addrs []netip.AddrPort, self, k int) []netip.AddrPort {
	if len(addrs) <= 1 {
		return nil
	}
	picked := map[int]bool{self: true}
	var out []netip.AddrPort
	// The ring neighbour keeps the seed graph connected; the rest are random shortcuts.
	next := (self + 1) % len(addrs)
	picked[next] = true
	out = append(out, addrs[next])
	for len(out) < min(k, len(addrs)-1) {
		j := rng.IntN(len(addrs))
		if !picked[j] {
			picked[j] = true
			out = append(out, addrs[j])
		}
	}
	return out
}

func bootstrapAll(nodes []*dht.Node) (failed []*dht.Node, _ error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i, nd := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := nd.Bootstrap(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %d: %w", i, err))
				failed = append(failed, nd)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return failed, errs[0]
	}
	return nil, nil
}
