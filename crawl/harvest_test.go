package crawl

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// TestHarvestFromOwnNode: without any walk, a node whose hooks feed
// Harvest records the infohashes other nodes look up and announce to it,
// with the announcing peer.
func TestHarvestFromOwnNode(t *testing.T) {
	nodes := dhttest.Network(t, 4)
	x, err := index.Open(filepath.Join(t.TempDir(), "crawl.db"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	c := &Crawler{Index: x}
	cfg := dhttest.Config()
	cfg.Addr = netip.MustParseAddrPort("127.0.0.6:0")
	for _, n := range nodes {
		cfg.Bootstrap = append(cfg.Bootstrap, n.Addr())
	}
	cfg.OnAnnounce, cfg.OnGetPeers = c.OnAnnounce, c.OnGetPeers
	own, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := own.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	// The network's nodes hand out only nodes that answered them: have
	// them ping ours, as a long-running node gets pinged in the real DHT.
	for _, n := range nodes {
		n.AddNode(own.Addr())
	}
	for ctx.Err() == nil && !slices.Contains(nodes[1].Nodes(), own.Addr()) {
		time.Sleep(10 * time.Millisecond)
	}
	// Five nodes in all and K = 8: the announce traversal reaches ours.
	ih := testIH(3000)
	if err := nodes[1].Announce(ctx, ih, 7000); err != nil {
		t.Fatal(err)
	}
	want := netip.AddrPortFrom(nodes[1].Addr().Addr(), 7000)
	var e index.Entry
	for ctx.Err() == nil {
		// The hooks run on the node's event goroutine, maybe after
		// Announce returned.
		if e, _, _ = x.Get(ih); e.How&index.Announce != 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e.How != index.GetPeers|index.Announce {
		t.Fatalf("seen as %q, want get_peers|announce", e.How)
	}
	if len(e.Peers) != 1 || e.Peers[0] != want {
		t.Errorf("peers = %v, want [%v]", e.Peers, want)
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	if p := c.Progress(); p.Found != 1 || p.Seen < 2 {
		t.Errorf("progress = %+v", p)
	}
}

func TestRunWithoutSeeds(t *testing.T) {
	x, err := index.Open(filepath.Join(t.TempDir(), "crawl.db"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	cfg := dhttest.Config()
	cfg.Addr = netip.MustParseAddrPort("127.0.0.7:0")
	node, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	c := &Crawler{Index: x, Node: node, MetadataWorkers: 2, OnProgress: func(Progress) {}}
	if err := c.Run(context.Background()); !errors.Is(err, ErrNoStart) {
		t.Fatalf("Run without seeds = %v, want ErrNoStart", err)
	}
	if err := (&Crawler{Node: node}).Run(context.Background()); !errors.Is(err, ErrNoIndex) {
		t.Fatalf("Run without index = %v, want ErrNoIndex", err)
	}
}
