package dht

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// A synthetic network for the traversal: n nodes, every other one dead (never answers until the
// hard timeout), each live node naming the 8 nodes nearest the target among 40 it knows, dead
// ones included, as answers on the Mainline DHT do.
type synthNet struct {
	nodes []travNode
	dead  map[netip.AddrPort]bool
	knows map[netip.AddrPort][]travNode
}

func newSynthNet(rng *rand.Rand, n int, target [20]byte) *synthNet {
	s := &synthNet{dead: map[netip.AddrPort]bool{}, knows: map[netip.AddrPort][]travNode{}}
	for i := range n {
		var id [20]byte
		for j := range id {
			id[j] = byte(rng.IntN(256))
		}
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 6881)
		s.nodes = append(s.nodes, travNode{addr: ap, id: id, hasID: true})
		s.dead[ap] = i%2 == 1
	}
	for _, nd := range s.nodes {
		var known []travNode
		for range 40 {
			known = append(known, s.nodes[rng.IntN(n)])
		}
		slices.SortFunc(known, func(a, b travNode) int {
			da, db := xor(a.id, target), xor(b.id, target)
			return bytes.Compare(da[:], db[:])
		})
		s.knows[nd.addr] = known[:8]
	}
	return s
}

// The nearest live node is reached well within one hard timeout although every seed nearest the
// target is dead: a query past its soft timeout frees its slot for the next candidate.
func TestTraversalDeadNodesCostConcurrencyNotRounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const soft, hard = 400 * time.Millisecond, 4 * time.Second
		var target [20]byte
		rng := rand.New(rand.NewPCG(1, 2))
		for j := range target {
			target[j] = byte(rng.IntN(256))
		}
		s := newSynthNet(rng, 1000, target)
		byDist := slices.Clone(s.nodes)
		slices.SortFunc(byDist, func(a, b travNode) int {
			da, db := xor(a.id, target), xor(b.id, target)
			return bytes.Compare(da[:], db[:])
		})
		var nearestLive travNode
		for _, nd := range byDist {
			if !s.dead[nd.addr] {
				nearestLive = nd
				break
			}
		}
		// Seeds: the 8 dead nodes nearest the target (all of alpha), then 8 live ones far away.
		var seeds []travNode
		for _, nd := range byDist[16:] {
			if s.dead[nd.addr] && len(seeds) < 8 {
				seeds = append(seeds, nd)
			}
		}
		for _, nd := range slices.Backward(byDist) {
			if !s.dead[nd.addr] && len(seeds) < 16 {
				seeds = append(seeds, nd)
			}
		}
		start := time.Now()
		var reached time.Duration = -1
		tr := &trav{
			target: target, k: 8, alpha: 8, soft: soft, maxSlow: 32,
			query: func(ctx context.Context, ap netip.AddrPort) travReply {
				if s.dead[ap] {
					select {
					case <-ctx.Done():
					case <-time.After(hard):
					}
					return travReply{}
				}
				time.Sleep(50 * time.Millisecond) // one round trip
				if ap == nearestLive.addr && reached < 0 {
					reached = time.Since(start)
				}
				var id [20]byte
				for _, nd := range s.nodes {
					if nd.addr == ap {
						id = nd.id
					}
				}
				return travReply{ok: true, id: id, nodes: s.knows[ap]}
			},
		}
		res := tr.run(context.Background(), seeds)
		if len(res.closest) == 0 || res.closest[0].addr != nearestLive.addr {
			t.Fatalf("traversal did not converge on the nearest live node (%d tried, %d answered)", res.tried, res.responded)
		}
		if reached < 0 || reached >= hard {
			t.Fatalf("nearest live node reached after %v (virtual time); a round of dead nodes costs %v", reached, hard)
		}
		t.Logf("nearest live node reached after %v; %d queried, %d answered; traversal ended after %v", reached, res.tried, res.responded, time.Since(start))
	})
}

// A traversal stops at once when its handler says so, and waits for every query it started.
func TestTraversalStopsAndWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		events := make(chan []PeerResult, 1)
		var seeds []travNode
		for i := range 20 {
			seeds = append(seeds, travNode{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 1)})
		}
		tr := &trav{
			k: 8, alpha: 4, soft: 100 * time.Millisecond, maxSlow: 8,
			query: func(ctx context.Context, ap netip.AddrPort) travReply {
				select {
				case events <- []PeerResult{{Peer: ap}}:
				case <-ctx.Done():
				}
				<-ctx.Done() // never answers on its own
				return travReply{}
			},
			event:  events,
			handle: func([]PeerResult) bool { return false },
		}
		res := tr.run(context.Background(), seeds)
		synctest.Wait() // every goroutine the traversal started has ended
		if res.tried == 0 || res.tried > 4 {
			t.Fatalf("tried %d", res.tried)
		}
	})
}
