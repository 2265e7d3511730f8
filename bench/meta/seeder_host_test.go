package meta

import (
	"bytes"
	"context"
	"crypto/sha1"
	"net/netip"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// TestSeederHostServesViaDHT checks the benchmarks' seeder: a DHT lookup
// from another node finds the host's listener, and metadata.Fetch gets the
// info dict (larger than one BEP 9 piece) from it.
func TestSeederHostServesViaDHT(t *testing.T) {
	nodes := dhttest.Network(t, 16)
	info := metadatatest.MultiFileInfo(7, "seeded", 300, 1<<20, 64<<10) // ~ 30 KiB: 2 pieces
	ih := sha1.Sum(info)
	hosts := serveAll(t, nodes, 0, 1, [][]byte{info})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peers := make(chan netip.AddrPort, 16)
	go func() {
		defer close(peers)
		_ = nodes[9].Lookup(ctx, ih, func(r dht.PeerResult) bool {
			select {
			case peers <- r.Peer:
			default:
			}
			return true
		})
	}()
	res, err := metadata.Fetch(ctx, ih, peers, metadata.Options{})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for _, c := range res.Conns {
		c.Close()
	}
	if !bytes.Equal(res.Info, info) {
		t.Fatalf("got %d bytes of info, want the %d served", len(res.Info), len(info))
	}
	if got := hosts[0].served.Load(); got < 2 {
		t.Fatalf("host sent %d data messages, want at least 2", got)
	}
}
