package maddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultPort is the port ParseListen uses when given no specs.
const DefaultPort = 6881

// ParseListen turns --listen values into the addresses to bind. Each spec is
// a multiaddr with an IP literal: /udp/ is a DHT socket, /tcp/ the peer
// listener. When only one transport is given, the other is implied on the
// same IPs and ports. A plain "ip:port" means both transports. Port 0 picks
// a free port. No specs: udp and tcp on 0.0.0.0:6881 and [::]:6881.
func ParseListen(specs []string) (udp, tcp []netip.AddrPort, err error) {
	if len(specs) == 0 {
		def := []netip.AddrPort{
			netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort),
			netip.AddrPortFrom(netip.IPv6Unspecified(), DefaultPort),
		}
		return def, append([]netip.AddrPort(nil), def...), nil
	}
	var both []netip.AddrPort
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		if !strings.HasPrefix(spec, "/") {
			ap, err := parseHostPort(spec)
			if err != nil {
				return nil, nil, fmt.Errorf("maddr: listen %q: %w", spec, err)
			}
			both = appendNew(both, ap)
			continue
		}
		m, err := parse(spec)
		if err != nil {
			return nil, nil, fmt.Errorf("maddr: listen %q: %w", spec, err)
		}
		ap, network, err := ToAddrPort(m)
		if errors.Is(err, ErrNeedsResolve) {
			return nil, nil, fmt.Errorf("maddr: listen %q: want an IP address (such as /ip4/0.0.0.0), not a host name", spec)
		} else if err != nil {
			return nil, nil, fmt.Errorf("maddr: listen %q: %w", spec, err)
		}
		if network == "udp" {
			udp = appendNew(udp, ap)
		} else {
			tcp = appendNew(tcp, ap)
		}
	}
	switch {
	case len(udp) == 0:
		udp = append(udp, tcp...)
	case len(tcp) == 0:
		tcp = append(tcp, udp...)
	}
	for _, ap := range both {
		udp, tcp = appendNew(udp, ap), appendNew(tcp, ap)
	}
	return udp, tcp, nil
}

func appendNew(s []netip.AddrPort, ap netip.AddrPort) []netip.AddrPort {
	for _, x := range s {
		if x == ap {
			return s
		}
	}
	return append(s, ap)
}

// ParseHostPort parses "1.2.3.4:5", "[::1]:5" or a multiaddr with an IP
// literal (/ip4/1.2.3.4/tcp/5, /ip6/::1/udp/5). IPv4-mapped IPv6
// addresses are unmapped. Port 0 is rejected: the result is an address to
// reach.
func ParseHostPort(s string) (netip.AddrPort, error) {
	var ap netip.AddrPort
	if strings.HasPrefix(s, "/") {
		m, err := parse(s)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("maddr: %q: %w", s, err)
		}
		ap, _, err = ToAddrPort(m)
		if err != nil {
			return netip.AddrPort{}, err
		}
	} else {
		var err error
		if ap, err = parseHostPort(s); err != nil {
			return netip.AddrPort{}, fmt.Errorf("maddr: %q: %w", s, err)
		}
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("maddr: %q: port 0", s)
	}
	return ap, nil
}

// parseHostPort parses an IP literal and port; port 0 is allowed.
func parseHostPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, errors.New("want ipv4:port, [ipv6]:port or a multiaddr such as /ip4/1.2.3.4/udp/6881")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
