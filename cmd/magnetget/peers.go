package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/internal/trackers"
)

// newPeerID makes our peer id (peerwire.NewPeerID: one maker for the whole program).
func newPeerID() [20]byte { return peerwire.NewPeerID() }

// resolvePeers turns x.pe hints ("host:port") into addresses; a name that
// does not resolve is skipped with a warning.
func resolvePeers(ctx context.Context, hints []string, log *slog.Logger) []netip.AddrPort {
	var out []netip.AddrPort
	for _, h := range hints {
		if ap, err := maddr.ParseHostPort(h); err == nil {
			out = append(out, ap)
			continue
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			log.Warn("skipping peer hint", "peer", h, "err", err)
			continue
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			log.Warn("skipping peer hint", "peer", h, "err", err)
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			log.Warn("skipping peer hint", "peer", h, "err", err)
			continue
		}
		for _, ip := range ips {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
		}
	}
	return out
}

// mergePeers yields the direct peers first, then whatever the sources
// stream, each address once; the channel closes when every source has.
func mergePeers(ctx context.Context, direct []netip.AddrPort, sources ...<-chan netip.AddrPort) <-chan netip.AddrPort {
	out := make(chan netip.AddrPort)
	var (
		mu   sync.Mutex
		seen = map[netip.AddrPort]bool{}
		wg   sync.WaitGroup
	)
	send := func(ap netip.AddrPort) bool {
		mu.Lock()
		dup := seen[ap]
		seen[ap] = true
		mu.Unlock()
		if dup {
			return true
		}
		select {
		case out <- ap:
			return true
		case <-ctx.Done():
			return false
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, ap := range direct {
			if !send(ap) {
				return
			}
		}
	}()
	for _, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ap := range src {
				if !send(ap) {
					// Keep draining so the producer is never stuck.
					for range src {
					}
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// trackerPeers announces once to each tracker and streams the peers they
// return; the channel closes when every tracker has answered or failed.
func trackerPeers(ctx context.Context, urls []string, ih, peerID [20]byte, port uint16, log *slog.Logger) <-chan netip.AddrPort {
	ch := make(chan netip.AddrPort)
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peers, _, err := trackers.Announce(ctx, u, trackers.Request{InfoHash: ih, PeerID: peerID, Port: port, Left: 1, Event: trackers.Started})
			if err != nil {
				log.Info("tracker", "err", err)
				return
			}
			for _, p := range peers {
				select {
				case ch <- p:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(ch) }()
	return ch
}
