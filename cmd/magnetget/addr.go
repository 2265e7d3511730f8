package main

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/magnetget/magnetget/internal/maddr"
)

// hostPortToMultiaddr rewrites an address typed as host:port ("127.0.1.1:6881",
// "[::1]:6881", "router.example:6881") into the multiaddr the lists are parsed
// as, for the given transport ("udp" or "tcp"). Anything else, multiaddrs
// included, comes back unchanged so the parser reports it.
func hostPortToMultiaddr(s, network string) string {
	t := strings.TrimSpace(s)
	if t == "" || strings.HasPrefix(t, "/") || strings.HasPrefix(t, "#") {
		return s
	}
	host, port, err := net.SplitHostPort(t)
	if err != nil || host == "" {
		return s
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return s
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		p, _ := strconv.ParseUint(port, 10, 16)
		if m := maddr.FromAddrPort(netip.AddrPortFrom(ip, uint16(p)), network); m != nil {
			return m.String()
		}
		return s
	}
	return "/dns/" + host + "/" + network + "/" + port
}

// hostPortLines applies hostPortToMultiaddr to every line of a list,
// keeping line numbers and comments as they are.
func hostPortLines(text, network string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		body, comment, hasComment := strings.Cut(l, "#")
		if conv := hostPortToMultiaddr(body, network); conv != body {
			lines[i] = conv
			if hasComment {
				lines[i] += " #" + comment
			}
		}
	}
	return strings.Join(lines, "\n")
}

// hostPort formats an address as the magnet convention writes x.pe:
// "1.2.3.4:6881" or "[2001:db8::1]:6881" (libtorrent, qBittorrent and
// anacrolix read this form; none reads multiaddrs).
func hostPort(ap netip.AddrPort) string {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// interfaceAddrs lists this host's addresses.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

// dialableHints returns the x.pe hints others can dial to reach a listener
// bound to bound. A concrete address is itself. A wildcard (0.0.0.0, ::)
// cannot be dialled, so it is replaced by this host's addresses of that
// family (both families for ::, which Go binds dual-stack), loopback and
// link-local left out; when none is left, note says why no hint is given.
func dialableHints(bound netip.AddrPort) (hints []string, note string) {
	addrs, err := interfaceAddrs()
	return hintsFrom(bound, addrs, err)
}

func hintsFrom(bound netip.AddrPort, addrs []netip.Addr, err error) (hints []string, note string) {
	ip := bound.Addr().Unmap()
	if !ip.IsUnspecified() {
		return []string{hostPort(bound)}, ""
	}
	if err != nil {
		return nil, "no x.pe: listening on every address and the host's addresses are unknown (" + err.Error() + "); give --listen with this host's IP"
	}
	for _, a := range addrs {
		a = a.Unmap()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			continue
		}
		if ip.Is4() && !a.Is4() {
			continue
		}
		hints = append(hints, hostPort(netip.AddrPortFrom(a, bound.Port())))
	}
	if len(hints) == 0 {
		return nil, "no x.pe: listening on every address and this host has no address others can dial; give --listen with the IP to advertise"
	}
	return hints, ""
}
