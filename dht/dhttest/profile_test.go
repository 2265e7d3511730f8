package dhttest

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
)

// TestMainlineProfileHandsOutDeadNodes: under Mainline, about half of the nodes that live nodes
// hand out never answer, a round trip takes at least the profile's minimum RTT, and an
// announced peer is still found.
func TestMainlineProfileHandsOutDeadNodes(t *testing.T) {
	const n = 24
	nodes := NetworkProfile(t, n, Mainline)
	if len(nodes) != n {
		t.Fatalf("got %d live nodes, want %d", len(nodes), n)
	}
	live := map[netip.AddrPort]bool{}
	for _, nd := range nodes {
		live[nd.Addr()] = true
	}

	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(Addr(3*n), 0)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config()
	cfg.Conn = Mainline.Wrap(pc, 3*n)
	client, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Ask every live node once, all at once (each answer takes a 20-200 ms round trip).
	type answer struct {
		got []netip.AddrPort
		rtt time.Duration
		err error
	}
	answers := make([]answer, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var target [20]byte
			rand.Read(target[:])
			start := time.Now()
			got, err := client.FindNode(ctx, nd.Addr(), target)
			answers[i] = answer{got, time.Since(start), err}
		}()
	}
	wg.Wait()
	var handed, deadHanded, answered int
	for _, a := range answers {
		if a.err != nil {
			continue // 1 % loss each way
		}
		answered++
		if a.rtt < Mainline.MinRTT {
			t.Fatalf("a round trip took %v, under the profile's minimum %v", a.rtt, Mainline.MinRTT)
		}
		for _, ap := range a.got {
			handed++
			if !live[ap] {
				deadHanded++
			}
		}
	}
	t.Logf("%d of %d live nodes answered; %d of %d nodes handed out are dead", answered, n, deadHanded, handed)
	if share := float64(deadHanded) / float64(handed); share < 0.3 || share > 0.7 {
		t.Fatalf("%d of %d nodes handed out are dead (%.2f), want about half", deadHanded, handed, share)
	}

	var ih [20]byte
	rand.Read(ih[:])
	peer := netip.MustParseAddrPort("127.0.9.9:6881")
	if err := nodes[0].Announce(ctx, ih, int(peer.Port())); err != nil {
		t.Fatalf("announce: %v", err)
	}
	found := false
	client.AddNode(nodes[n-1].Addr())
	err = client.Lookup(ctx, ih, func(r dht.PeerResult) bool {
		found = r.Peer.Port() == peer.Port()
		return !found
	})
	if !found {
		t.Fatalf("lookup through the mainline profile found nobody: %v", err)
	}
}

// TestHealthyProfileIsNetwork: the healthy profile starts exactly n nodes, all answering.
func TestHealthyProfileIsNetwork(t *testing.T) {
	nodes := NetworkProfile(t, 8, Healthy)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, nd := range nodes[1:] {
		if _, err := nodes[0].FindNode(ctx, nd.Addr(), nd.ID()); err != nil {
			t.Fatalf("healthy node %v did not answer: %v", nd.Addr(), err)
		}
	}
}
