package dht

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/magnetget/magnetget/routing"
)

// closest (prefix range over an id-sorted snapshot) agrees with sorting every node by distance.
func TestTrackerClosestMatchesFullSort(t *testing.T) {
	for _, size := range []int{0, 3, 8, 50, 2000} {
		tr := newTracker(10000)
		var all []routing.Node
		now := time.Now()
		for i := range size {
			var id [20]byte
			for j := range id {
				id[j] = byte(rand.IntN(256))
			}
			ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1)
			tr.responded(ap, id, now)
			all = append(all, routing.Node{ID: id, Addr: ap})
		}
		// A node that only queried us is not offered to others.
		tr.queried(netip.MustParseAddrPort("127.9.9.9:9"), [20]byte{1}, now)
		for range 50 {
			var target [20]byte
			for j := range target {
				target[j] = byte(rand.IntN(256))
			}
			got := tr.closest(target, 8, func(netip.AddrPort) bool { return true })
			want := closestTo(target, slices.Clone(all), 8)
			if len(got) != len(want) {
				t.Fatalf("size %d: %d nodes, want %d", size, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i].ID[:], want[i].ID[:]) {
					t.Fatalf("size %d: node %d is %x, want %x", size, i, got[i].ID, want[i].ID)
				}
			}
		}
	}
}
