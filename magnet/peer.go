package magnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/multiformats/go-multiaddr"
)

// normalisePeer turns an x.pe value into "host:port": the BEP 9 forms
// hostname:port, ipv4:port and [ipv6]:port, or a multiaddr such as
// /ip4/1.2.3.4/tcp/6881 or /dns4/host/tcp/6881. IP literals come back in
// netip's form (IPv4-mapped IPv6 unmapped, IPv6 bracketed); names in lower
// case. The result is a fixed point: normalisePeer(p) == p.
func normalisePeer(s string) (string, error) {
	if strings.HasPrefix(s, "/") {
		p, err := peerFromMultiaddr(s)
		if err != nil {
			return "", fmt.Errorf("bad peer multiaddr %q: %w", abbrev(s), err)
		}
		return p, nil
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("bad peer address %q: want host:port, ipv4:port or [ipv6]:port", abbrev(s))
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", fmt.Errorf("bad peer address %q: %w", abbrev(s), err)
	}
	p, err := joinHostPort(host, port)
	if err != nil {
		return "", fmt.Errorf("bad peer address %q: %w", abbrev(s), err)
	}
	return p, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || s[0] == '+' {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	if n == 0 {
		return 0, errors.New("port 0")
	}
	return uint16(n), nil
}

func joinHostPort(host string, port uint16) (string, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), port).String(), nil
	}
	if err := checkHostname(host); err != nil {
		return "", err
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(int(port))), nil
}

// checkHostname accepts DNS names (letters, digits, '-', '_', '.'). A name
// made only of digits and dots is a mistyped IPv4 address, not a name.
func checkHostname(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if len(h) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	numeric := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case '0' <= c && c <= '9' || c == '.':
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_':
			numeric = false
		default:
			return fmt.Errorf("host %q is neither an IP address nor a DNS name", abbrev(h))
		}
	}
	if numeric {
		return fmt.Errorf("host %q is not a valid IPv4 address", abbrev(h))
	}
	return nil
}

// peerFromMultiaddr accepts /ip4, /ip6, /dns, /dns4 or /dns6 followed by
// /tcp/PORT, or by /udp/PORT/utp for a uTP peer (BitTorrent clients listen
// for TCP and uTP on the same port, so "host:port" loses nothing).
func peerFromMultiaddr(s string) (string, error) {
	m, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return "", err
	}
	var host string
	var port uint16
	switch {
	case len(m) == 2 && m[1].Code() == multiaddr.P_TCP:
	case len(m) == 3 && m[1].Code() == multiaddr.P_UDP && m[2].Code() == multiaddr.P_UTP:
	default:
		return "", errors.New("want /ip4, /ip6, /dns, /dns4 or /dns6 then /tcp/PORT or /udp/PORT/utp")
	}
	switch m[0].Code() {
	case multiaddr.P_IP4, multiaddr.P_IP6, multiaddr.P_DNS, multiaddr.P_DNS4, multiaddr.P_DNS6:
		host = m[0].Value()
	default:
		return "", fmt.Errorf("unsupported protocol /%s: want /ip4, /ip6, /dns, /dns4 or /dns6", m[0].Protocol().Name)
	}
	port, err = parsePort(m[1].Value())
	if err != nil {
		return "", err
	}
	return joinHostPort(host, port)
}
