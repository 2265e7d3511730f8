package realclient

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// Default addresses. Ports are always ephemeral, so tests running in
// parallel (and other packages' tests) can share these IPs.
var (
	SeederIP     = netip.MustParseAddr("127.0.100.1")
	DownloaderIP = netip.MustParseAddr("127.0.101.1")
	Aria2IP      = netip.MustParseAddr("127.0.102.1")
	// TransmissionIP is where transmission-cli listens (IPv4; it also
	// listens on [::1] at the same port).
	TransmissionIP = netip.MustParseAddr("127.0.104.1")
)

// DHTNodeIP is the address of libtorrent DHT node i: 127.0.K.1 with K =
// first+i, one /24 per node as libtorrent's DHT expects of distinct hosts.
func DHTNodeIP(first, i int) netip.Addr {
	k := first + i
	return netip.AddrFrom4([4]byte{127, byte(k >> 8), byte(k), 1})
}

func checkLoopbackAddr(a netip.Addr) error {
	if !a.Unmap().IsLoopback() {
		return fmt.Errorf("%w: %v", ErrNotLoopback, a)
	}
	return nil
}

func checkLoopbackAddrs(what string, aps []netip.AddrPort) error {
	for _, ap := range aps {
		if err := checkLoopbackAddr(ap.Addr()); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// checkLoopbackURL accepts URLs whose host is a loopback IP literal
// (trackers); names are refused so no resolver is ever asked.
func checkLoopbackURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNotLoopback, s, err)
	}
	a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]"))
	if err != nil {
		return fmt.Errorf("%w: %q: host is not an IP literal", ErrNotLoopback, s)
	}
	return checkLoopbackAddr(a)
}

// checkMagnet refuses magnets whose trackers, web seeds or peer hints point
// off the machine.
func checkMagnet(uri string) error {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "magnet" {
		return fmt.Errorf("not a magnet URI: %q", uri)
	}
	q := u.Query()
	for _, k := range []string{"tr", "ws", "as", "xs"} {
		for _, v := range q[k] {
			if err := checkLoopbackURL(v); err != nil {
				return fmt.Errorf("magnet %s: %w", k, err)
			}
		}
	}
	for _, v := range q["x.pe"] {
		ap, err := netip.ParseAddrPort(v)
		if err != nil {
			return fmt.Errorf("magnet x.pe: %w: %q", ErrNotLoopback, v)
		}
		if err := checkLoopbackAddr(ap.Addr()); err != nil {
			return fmt.Errorf("magnet x.pe: %w", err)
		}
	}
	return nil
}

// FreePort returns a TCP port that was free on ip for both TCP and UDP a
// moment ago, for clients that cannot bind port 0 themselves (aria2c). The
// race with other binders is accepted: the caller's client fails loudly.
func FreePort(ip netip.Addr) (int, error) {
	for range 20 {
		l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return 0, fmt.Errorf("free port on %v: %w", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).AddrPort().Port()
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return int(port), nil
	}
	return 0, fmt.Errorf("free port on %v: no port free for both tcp and udp", ip)
}

func addrStrings(aps []netip.AddrPort) []string {
	out := make([]string, len(aps))
	for i, ap := range aps {
		out[i] = ap.String()
	}
	return out
}

func parseAddrs(ss []string) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(ss))
	for _, s := range ss {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap)
		}
	}
	return out
}
