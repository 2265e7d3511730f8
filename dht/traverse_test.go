package dht

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
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
		var mu sync.Mutex
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
				mu.Lock()
				if ap == nearestLive.addr && reached < 0 {
					reached = time.Since(start)
				}
				mu.Unlock()
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

// When every seed is dead (a stale saved table), the caller's other nodes (the bootstrap list) are
// taken up once the seeds pass their soft timeout, not after their hard timeout.
func TestTraversalFallsBackAfterSoftTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const soft, hard = 400 * time.Millisecond, 4 * time.Second
		var target [20]byte
		rng := rand.New(rand.NewPCG(3, 4))
		s := newSynthNet(rng, 200, target)
		var deadSeeds, liveBoot []travNode
		for _, nd := range s.nodes {
			switch {
			case s.dead[nd.addr] && len(deadSeeds) < 16:
				deadSeeds = append(deadSeeds, nd)
			case !s.dead[nd.addr] && len(liveBoot) < 2:
				liveBoot = append(liveBoot, travNode{addr: nd.addr}) // bootstrap: no id known
			}
		}
		start := time.Now()
		var mu sync.Mutex
		var firstAnswer time.Duration = -1
		usedBoot := false
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
				mu.Lock()
				if firstAnswer < 0 {
					firstAnswer = time.Since(start)
				}
				mu.Unlock()
				return travReply{ok: true, id: [20]byte{1}, nodes: s.knows[ap]}
			},
			more: func(responded int) []travNode {
				if responded == 0 && !usedBoot {
					usedBoot = true
					return liveBoot
				}
				return nil
			},
		}
		res := tr.run(context.Background(), deadSeeds)
		if res.responded == 0 || firstAnswer < 0 || firstAnswer >= hard {
			t.Fatalf("first answer after %v (virtual), %d answered; the dead seeds' hard timeout is %v", firstAnswer, res.responded, hard)
		}
	})
}

// A candidate is never dropped unqueried when the queries past their soft timeout fill maxSlow:
// it waits for a slot. (Before, the end-of-candidates check took it off the list and lost it.)
func TestTraversalKeepsCandidatesWhenSlowIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const soft, hard = 100 * time.Millisecond, time.Second
		var target [20]byte
		// tr.query below is the whole network: these addresses are never sent to.
		dead := travNode{addr: netip.MustParseAddrPort("127.0.0.1:1"), id: [20]byte{1}, hasID: true}
		live := travNode{addr: netip.MustParseAddrPort("127.0.0.2:1"), id: [20]byte{2}, hasID: true}
		var asked []netip.AddrPort
		var mu sync.Mutex
		tr := &trav{
			target: target, k: 8, alpha: 1, soft: soft, maxSlow: 1,
			query: func(ctx context.Context, ap netip.AddrPort) travReply {
				mu.Lock()
				asked = append(asked, ap)
				mu.Unlock()
				if ap == dead.addr {
					select {
					case <-ctx.Done():
					case <-time.After(hard):
					}
					return travReply{}
				}
				return travReply{ok: true, id: live.id}
			},
		}
		res := tr.run(context.Background(), []travNode{dead, live})
		if res.responded != 1 || !slices.Contains(asked, live.addr) {
			t.Fatalf("asked %v, %d answered; the live candidate was dropped while the slow slot was full", asked, res.responded)
		}
	})
}
