package maddr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/multiformats/go-multiaddr"
)

// Lookuper resolves host names; *net.Resolver implements it. Tests pass a
// fake so that no DNS query leaves the process.
type Lookuper interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Resolve returns the addresses of m using net.DefaultResolver. network is
// "udp" or "tcp" and must match m's transport; "" accepts either.
// /dns4 and /dns6 resolve to IPv4 or IPv6 addresses only, /dns to both.
func Resolve(ctx context.Context, m multiaddr.Multiaddr, network string) ([]netip.AddrPort, error) {
	return ResolveWith(ctx, net.DefaultResolver, m, network)
}

// ResolveWith is Resolve with the given resolver.
func ResolveWith(ctx context.Context, r Lookuper, m multiaddr.Multiaddr, network string) ([]netip.AddrPort, error) {
	if err := checkShape(m); err != nil {
		return nil, fmt.Errorf("maddr: %s: %w", m, err)
	}
	if network != "" && network != networkOf(m[1]) {
		return nil, fmt.Errorf("maddr: %s: want a /%s address", m, network)
	}
	port := portOf(m[1])
	if ip, ok := ipOf(m[0]); ok {
		return []netip.AddrPort{netip.AddrPortFrom(ip, port)}, nil
	}
	family := map[int]string{multiaddr.P_DNS: "ip", multiaddr.P_DNS4: "ip4", multiaddr.P_DNS6: "ip6"}[m[0].Code()]
	ips, err := r.LookupNetIP(ctx, family, m[0].Value())
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("maddr: resolve %s: %w", m, ctx.Err())
		}
		return nil, fmt.Errorf("maddr: resolve %s: %w", m, err)
	}
	var out []netip.AddrPort
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		ip = ip.Unmap()
		// A resolver may return both families for "ip4"/"ip6" on some
		// systems; keep what the multiaddr asked for.
		if seen[ip] || (family == "ip4" && !ip.Is4()) || (family == "ip6" && !ip.Is6()) {
			continue
		}
		seen[ip] = true
		out = append(out, netip.AddrPortFrom(ip, port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("maddr: resolve %s: %w", m, ErrNoAddress)
	}
	return out, nil
}

// maxParallelLookups bounds concurrent DNS lookups in ResolveAll.
const maxParallelLookups = 8

// ResolveAll resolves every multiaddr (in parallel, through
// net.DefaultResolver) and returns all addresses in input order without
// duplicates. A multiaddr that does not resolve costs one warning, not the
// whole list.
func ResolveAll(ctx context.Context, ms []multiaddr.Multiaddr, network string) (addrs []netip.AddrPort, warnings []error) {
	return ResolveAllWith(ctx, net.DefaultResolver, ms, network)
}

// ResolveAllWith is ResolveAll with the given resolver.
func ResolveAllWith(ctx context.Context, r Lookuper, ms []multiaddr.Multiaddr, network string) (addrs []netip.AddrPort, warnings []error) {
	type result struct {
		aps []netip.AddrPort
		err error
	}
	results := make([]result, len(ms))
	sem := make(chan struct{}, maxParallelLookups)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			aps, err := ResolveWith(ctx, r, m, network)
			results[i] = result{aps, err}
		}()
	}
	wg.Wait()
	seen := map[netip.AddrPort]bool{}
	for _, res := range results {
		if res.err != nil {
			warnings = append(warnings, res.err)
		}
		for _, ap := range res.aps {
			if !seen[ap] {
				seen[ap] = true
				addrs = append(addrs, ap)
			}
		}
	}
	return addrs, warnings
}
