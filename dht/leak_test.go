package dht_test

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// Close stops every goroutine the nodes started (the library's read loops, table maintainers,
// traversals, reply senders).
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	var nodes []*dht.Node
	func() {
		// A sub-test owns the network's cleanup, so the nodes are closed when it returns.
		t.Run("network", func(t *testing.T) {
			// The table maintainers start at once so that their goroutines are covered too.
			nodes = dhttest.NetworkWith(t, 8, func(_ int, c *dht.Config) { c.MaintainerDelay = time.Millisecond })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ih := randomID(t)
			if err := nodes[0].Announce(ctx, ih, 1234); err != nil {
				t.Fatalf("Announce: %v", err)
			}
			found := false
			if err := nodes[5].Lookup(ctx, ih, func(pr dht.PeerResult) bool {
				found = found || pr.Peer == netip.AddrPortFrom(nodes[0].Addr().Addr(), 1234)
				return true
			}); err != nil || !found {
				t.Fatalf("Lookup: err %v found %v", err, found)
			}
			// A lookup still running when its node closes must end too.
			done := make(chan error, 1)
			go func() {
				done <- nodes[6].Lookup(context.Background(), randomID(t), func(dht.PeerResult) bool { return true })
			}()
			nodes[6].Close()
			<-done
		})
	}()
	// Goroutines that were told to stop may need a moment to be descheduled; poll, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var ours []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "anacrolix") || strings.Contains(g, "magnetget") {
				ours = append(ours, g)
			}
		}
		t.Fatalf("%d goroutines before, %d after Close:\n%s", before, after, strings.Join(ours, "\n\n"))
	}
}
