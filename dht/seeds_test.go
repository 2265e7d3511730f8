package dht

import (
	"net/netip"
	"testing"

	"github.com/anacrolix/dht/v2/krpc"

	"github.com/magnetget/magnetget/routing"
)

// A traversal counts as "known" only nodes that are among its seeds: when the table's list was
// read empty and its good-node count (read a moment later, after a bootstrap walk beside it
// landed answers) says 14, the walk must still fall back to the bootstrap list. Counting the 14
// made cmd's lookup of a hybrid magnet lose one hash's peers (ErrNoNodes, ~1 run in 600 under
// load).
func TestSeedsCountOnlyWhatTheyHold(t *testing.T) {
	never := func(netip.AddrPort) bool { return false }
	node := func(i int) krpc.NodeInfo {
		return krpc.NodeInfo{ID: [20]byte{byte(i)}, Addr: nodeAddr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}), 1))}
	}
	for _, c := range []struct {
		name      string
		table     []krpc.NodeInfo
		good      int
		tracked   []routing.Node
		wantSeeds int
		wantKnown int
	}{
		{"empty list, count from later", nil, 14, nil, 0, 0},
		{"three listed, count from later", []krpc.NodeInfo{node(1), node(2), node(3)}, 14, nil, 3, 3},
		{"listed but not good", []krpc.NodeInfo{node(1), node(2)}, 0, nil, 2, 0},
		{"tracked", nil, 0, []routing.Node{{ID: [20]byte{9}, Addr: netip.MustParseAddrPort("127.0.0.9:1")}}, 1, 1},
	} {
		seeds, known := mergeSeeds(c.table, c.good, c.tracked, never)
		if len(seeds) != c.wantSeeds || known != c.wantKnown {
			t.Errorf("%s: %d seeds, %d known; want %d, %d", c.name, len(seeds), known, c.wantSeeds, c.wantKnown)
		}
	}
	// Bad table nodes are no seeds.
	bad := func(ap netip.AddrPort) bool { return ap.Addr() == netip.MustParseAddr("127.0.0.1") }
	if seeds, _ := mergeSeeds([]krpc.NodeInfo{node(1), node(2)}, 2, nil, bad); len(seeds) != 1 {
		t.Errorf("a bad table node was kept as a seed: %v", seeds)
	}
}
