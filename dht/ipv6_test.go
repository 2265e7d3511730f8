package dht_test

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/magnetget/magnetget/dht"
)

// A node on an IPv6 socket speaks BEP 32 (nodes6, 18-byte peers) end to end.
func TestIPv6Nodes(t *testing.T) {
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	probe.Close()
	ctx := testCtx(t)
	lo := netip.AddrPortFrom(netip.IPv6Loopback(), 0)
	var nodes []*dht.Node
	for i := range 6 {
		cfg := dht.Config{Addr: lo}
		if i > 0 {
			cfg.Bootstrap = []netip.AddrPort{nodes[0].Addr()}
		}
		nodes = append(nodes, newNode(t, 0, cfg))
	}
	for _, n := range nodes[1:] {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("Bootstrap: %v", err)
		}
	}
	ih := randomID(t)
	if err := nodes[2].Announce(ctx, ih, 4242); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	want := netip.AddrPortFrom(netip.IPv6Loopback(), 4242)
	if got := lookupAll(t, ctx, nodes[5], ih); !slices.Contains(got, want) {
		t.Fatalf("Lookup found %v, want %v", got, want)
	}
	found, err := nodes[5].FindNode(ctx, nodes[1].Addr(), randomID(t))
	if err != nil || len(found) == 0 {
		t.Fatalf("FindNode over IPv6: %v, %v", found, err)
	}
	for _, ap := range found {
		if !ap.Addr().Is6() {
			t.Fatalf("IPv6 FindNode returned %v", ap)
		}
	}
}
