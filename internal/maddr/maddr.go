// Package maddr converts between the multiaddrs users type or store
// ("/ip4/1.2.3.4/udp/6881", "/dns4/router.example/udp/6881") and the
// netip.AddrPort values the rest of the program works with.
//
// Only the shapes magnetget needs are accepted: a host component (/ip4,
// /ip6, /dns, /dns4 or /dns6) followed by one transport component (/udp/PORT
// for DHT nodes, /tcp/PORT for BitTorrent peers).
package maddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/multiformats/go-multiaddr"
)

// Sentinel errors, wrapped by the errors of this package where they apply.
var (
	// ErrUnsupported: a multiaddr of a shape magnetget does not use.
	ErrUnsupported = errors.New("unsupported multiaddr: want /ip4, /ip6, /dns, /dns4 or /dns6 then /udp/PORT or /tcp/PORT")
	// ErrNeedsResolve: ToAddrPort was given a DNS name; use Resolve.
	ErrNeedsResolve = errors.New("multiaddr names a host, not an IP address")
	// ErrNoAddress: a name resolved to no address of the wanted family.
	ErrNoAddress = errors.New("name has no address")
)

// parseRemote parses an address to send to: any supported shape, port > 0,
// and for IP literals a unicast address.
func parseRemote(s string) (multiaddr.Multiaddr, error) {
	m, err := parse(s)
	if err != nil {
		return nil, err
	}
	if m[1].Value() == "0" {
		return nil, errors.New("port 0")
	}
	if ip, ok := ipOf(m[0]); ok && (ip.IsUnspecified() || ip.IsMulticast()) {
		return nil, fmt.Errorf("%s is not a unicast address", ip)
	}
	return m, nil
}

// parse parses s and checks its shape.
func parse(s string) (multiaddr.Multiaddr, error) {
	m, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("bad multiaddr: %w", err)
	}
	if err := checkShape(m); err != nil {
		return nil, err
	}
	return m, nil
}

func checkShape(m multiaddr.Multiaddr) error {
	if len(m) != 2 {
		return ErrUnsupported
	}
	switch m[0].Code() {
	case multiaddr.P_IP4, multiaddr.P_IP6:
	case multiaddr.P_DNS, multiaddr.P_DNS4, multiaddr.P_DNS6:
		if err := checkHostname(m[0].Value()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w (got /%s)", ErrUnsupported, m[0].Protocol().Name)
	}
	switch m[1].Code() {
	case multiaddr.P_UDP, multiaddr.P_TCP:
	default:
		return fmt.Errorf("%w (got /%s)", ErrUnsupported, m[1].Protocol().Name)
	}
	return nil
}

func ipOf(c multiaddr.Component) (netip.Addr, bool) {
	if c.Code() != multiaddr.P_IP4 && c.Code() != multiaddr.P_IP6 {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(c.RawValue())
	return ip.Unmap(), ok
}

func portOf(c multiaddr.Component) uint16 {
	n, _ := strconv.ParseUint(c.Value(), 10, 16) // the codec already bounded it
	return uint16(n)
}

func networkOf(c multiaddr.Component) string {
	if c.Code() == multiaddr.P_TCP {
		return "tcp"
	}
	return "udp"
}

// ToAddrPort converts a multiaddr with an IP literal, such as
// /ip4/1.2.3.4/tcp/51413, and reports its transport, "udp" or "tcp". A DNS
// multiaddr gives an error wrapping ErrNeedsResolve.
func ToAddrPort(m multiaddr.Multiaddr) (ap netip.AddrPort, network string, err error) {
	if err := checkShape(m); err != nil {
		return netip.AddrPort{}, "", fmt.Errorf("maddr: %s: %w", m, err)
	}
	ip, ok := ipOf(m[0])
	if !ok {
		return netip.AddrPort{}, "", fmt.Errorf("maddr: %s: %w", m, ErrNeedsResolve)
	}
	return netip.AddrPortFrom(ip, portOf(m[1])), networkOf(m[1]), nil
}

// FromAddrPort returns the multiaddr of ap for network "udp" or "tcp", such
// as /ip4/1.2.3.4/tcp/51413. IPv4-mapped IPv6 addresses become /ip4. It
// returns nil for an invalid ap, an IPv6 zone (not representable as a
// plain /ip6) or another network.
func FromAddrPort(ap netip.AddrPort, network string) multiaddr.Multiaddr {
	ip := ap.Addr().Unmap()
	if !ip.IsValid() || ip.Zone() != "" || (network != "udp" && network != "tcp") {
		return nil
	}
	proto := "ip6"
	if ip.Is4() {
		proto = "ip4"
	}
	m, err := multiaddr.NewMultiaddr("/" + proto + "/" + ip.String() + "/" + network + "/" + strconv.Itoa(int(ap.Port())))
	if err != nil {
		return nil
	}
	return m
}

// checkHostname accepts DNS names: letters, digits, '-', '_' and '.'. The
// multiaddr codec accepts nearly any text there, spaces included.
func checkHostname(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("host name %q: want 1 to 253 characters", shorten(h))
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("host name %q: character %q not allowed", shorten(h), c)
		}
	}
	return nil
}
