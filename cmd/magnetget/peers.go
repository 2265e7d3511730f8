package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/internal/peerwire"
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
