package maddr

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/magnetget/magnetget"
	"github.com/multiformats/go-multiaddr"
)

func TestDefaultBootstrapParses(t *testing.T) {
	addrs, bad := ParseList(strings.NewReader(magnetget.DefaultBootstrap))
	if len(bad) != 0 {
		t.Fatalf("embedded bootstrap.txt has bad lines: %v", bad)
	}
	if len(addrs) == 0 {
		t.Fatal("embedded bootstrap.txt has no addresses")
	}
	for _, m := range addrs {
		if m[1].Code() != multiaddr.P_UDP {
			t.Errorf("bootstrap entry %s is not a /udp/ address: DHT nodes speak UDP", m)
		}
	}
}

func TestParseList(t *testing.T) {
	const list = "# bootstrap nodes\n" +
		"/dns4/router.example.com/udp/6881\n" +
		"\n" +
		"   /ip4/127.0.0.1/udp/6881   # trailing comment\r\n" +
		"/ip6/::1/tcp/51413\n" +
		"/dns/both.example/udp/1\n" +
		"/dns6/six.example/udp/2\n" +
		"router.example.com:6881\n" + // 8: not a multiaddr
		"/ip4/1.2.3.4/udp/0\n" + // 9: port 0
		"/ip4/1.2.3.4\n" + // 10: no transport
		"/dnsaddr/bootstrap.libp2p.io/udp/1\n" + // 11: unsupported
		"/ip4/1.2.3.4/udp/1/quic\n" + // 12: extra component
		"/ip4/0.0.0.0/udp/1\n" + // 13: not unicast
		"/ip4/1.2.3.999/udp/1\n" + // 14: bad IP
		"/dns4/bad name/udp/1\n" + // 15: bad host name
		"/ip4/127.0.0.2/udp/6882" // 16: good, no final newline
	addrs, bad := ParseList(strings.NewReader(list))
	var got []string
	for _, m := range addrs {
		got = append(got, m.String())
	}
	want := []string{
		"/dns4/router.example.com/udp/6881", "/ip4/127.0.0.1/udp/6881", "/ip6/::1/tcp/51413",
		"/dns/both.example/udp/1", "/dns6/six.example/udp/2", "/ip4/127.0.0.2/udp/6882",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("good lines:\n got %q\nwant %q", got, want)
	}
	wantBad := []struct {
		line int
		msg  string
	}{
		{8, "bad multiaddr"},
		{9, "port 0"},
		{10, "unsupported multiaddr"},
		{11, "unsupported multiaddr: want /ip4, /ip6, /dns, /dns4 or /dns6 then /udp/PORT or /tcp/PORT (got /dnsaddr)"},
		{12, "unsupported multiaddr"},
		{13, "0.0.0.0 is not a unicast address"},
		{14, "bad multiaddr"},
		{15, `host name "bad name"`},
	}
	if len(bad) != len(wantBad) {
		t.Fatalf("got %d bad lines, want %d: %v", len(bad), len(wantBad), bad)
	}
	for i, w := range wantBad {
		var le *LineError
		if !errors.As(bad[i], &le) {
			t.Fatalf("bad[%d] = %T, want *LineError", i, bad[i])
		}
		if le.Line != w.line {
			t.Errorf("bad[%d].Line = %d, want %d (%v)", i, le.Line, w.line, bad[i])
		}
		prefix := fmt.Sprintf("bootstrap line %d: ", w.line)
		if msg := bad[i].Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, w.msg) {
			t.Errorf("bad[%d] = %q, want %q...%q", i, msg, prefix, w.msg)
		}
	}
	if !errors.Is(bad[3], ErrUnsupported) {
		t.Errorf("%v does not wrap ErrUnsupported", bad[3])
	}
}

func TestParseListLongLine(t *testing.T) {
	list := "/ip4/127.0.0.1/udp/1\n/dns4/" + strings.Repeat("a", 5000) + "/udp/1\n/ip4/127.0.0.1/udp/2\n"
	addrs, bad := ParseList(strings.NewReader(list))
	if len(addrs) != 2 || len(bad) != 1 {
		t.Fatalf("got %v and bad %v, want 2 good and 1 bad", addrs, bad)
	}
	if le := bad[0].(*LineError); le.Line != 2 || !strings.Contains(le.Error(), "longer than") {
		t.Fatalf("bad line error %v", bad[0])
	}
}

func ma(t *testing.T, s string) multiaddr.Multiaddr {
	t.Helper()
	m, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestToFromAddrPort(t *testing.T) {
	for _, tc := range []struct {
		ma      string
		ap      string
		network string
	}{
		{"/ip4/1.2.3.4/tcp/51413", "1.2.3.4:51413", "tcp"},
		{"/ip4/127.0.0.1/udp/6881", "127.0.0.1:6881", "udp"},
		{"/ip6/::1/udp/6881", "[::1]:6881", "udp"},
		{"/ip6/2001:db8::7/tcp/0", "[2001:db8::7]:0", "tcp"},
	} {
		ap, network, err := ToAddrPort(ma(t, tc.ma))
		if err != nil || ap.String() != tc.ap || network != tc.network {
			t.Errorf("ToAddrPort(%s) = %v, %q, %v; want %s, %s", tc.ma, ap, network, err, tc.ap, tc.network)
		}
		if back := FromAddrPort(ap, network); back == nil || back.String() != tc.ma {
			t.Errorf("FromAddrPort(%v, %s) = %v, want %s", ap, network, back, tc.ma)
		}
	}
	// IPv4-mapped IPv6 is IPv4 on the wire of a dual-stack socket.
	if m := FromAddrPort(netip.MustParseAddrPort("[::ffff:10.0.0.1]:5"), "udp"); m.String() != "/ip4/10.0.0.1/udp/5" {
		t.Errorf("FromAddrPort of a mapped address = %v", m)
	}
	for _, tc := range []struct {
		ap      netip.AddrPort
		network string
	}{
		{netip.AddrPort{}, "udp"},
		{netip.MustParseAddrPort("1.2.3.4:5"), "ip"},
		{netip.MustParseAddrPort("[fe80::1%eth0]:5"), "udp"},
	} {
		if m := FromAddrPort(tc.ap, tc.network); m != nil {
			t.Errorf("FromAddrPort(%v, %q) = %v, want nil", tc.ap, tc.network, m)
		}
	}
	if _, _, err := ToAddrPort(ma(t, "/dns4/localhost/udp/1")); !errors.Is(err, ErrNeedsResolve) {
		t.Errorf("ToAddrPort of a DNS multiaddr: %v, want ErrNeedsResolve", err)
	}
	if _, _, err := ToAddrPort(ma(t, "/ip4/1.2.3.4/udp/1/utp")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ToAddrPort of /utp: %v, want ErrUnsupported", err)
	}
}

// fakeResolver answers from a map and records what it was asked, so tests
// send no DNS query.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ips, ok := f[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	return ips, nil
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	// The real resolver with localhost, which Go answers from /etc/hosts or
	// its built-in rule without any DNS query.
	aps, err := Resolve(ctx, ma(t, "/dns4/localhost/udp/6881"), "udp")
	if err != nil {
		t.Fatalf("Resolve localhost: %v", err)
	}
	if !slices.Contains(aps, netip.MustParseAddrPort("127.0.0.1:6881")) {
		t.Fatalf("Resolve localhost = %v, want 127.0.0.1:6881 among them", aps)
	}
	for _, ap := range aps {
		if !ap.Addr().Is4() {
			t.Errorf("/dns4 resolved to %v", ap)
		}
	}

	r := fakeResolver{"dual.example": {
		netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1"),
	}}
	for _, tc := range []struct {
		ma   string
		want []string
	}{
		{"/dns/dual.example/udp/1", []string{"192.0.2.1:1", "[2001:db8::1]:1"}},
		{"/dns4/dual.example/udp/1", []string{"192.0.2.1:1"}},
		{"/dns6/dual.example/udp/1", []string{"[2001:db8::1]:1"}},
		{"/ip6/2001:db8::9/udp/3", []string{"[2001:db8::9]:3"}},
	} {
		aps, err := ResolveWith(ctx, r, ma(t, tc.ma), "udp")
		var got []string
		for _, ap := range aps {
			got = append(got, ap.String())
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Resolve(%s) = %v, %v; want %v", tc.ma, got, err, tc.want)
		}
	}
	if _, err := ResolveWith(ctx, r, ma(t, "/dns/dual.example/tcp/1"), "udp"); err == nil || !strings.Contains(err.Error(), "want a /udp address") {
		t.Errorf("transport mismatch: %v", err)
	}
	if _, err := ResolveWith(ctx, fakeResolver{"v4.example": {netip.MustParseAddr("192.0.2.1")}}, ma(t, "/dns6/v4.example/udp/1"), "udp"); !errors.Is(err, ErrNoAddress) {
		t.Errorf("no address of the wanted family: %v, want ErrNoAddress", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ResolveWith(cctx, r, ma(t, "/dns/dual.example/udp/1"), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

func TestResolveAll(t *testing.T) {
	r := fakeResolver{
		"a.example": {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")},
		"b.example": {netip.MustParseAddr("192.0.2.2")},
	}
	ms := []multiaddr.Multiaddr{
		ma(t, "/dns4/a.example/udp/6881"),
		ma(t, "/dns4/gone.example/udp/6881"),
		ma(t, "/dns4/b.example/udp/6881"), // a duplicate of a.example's second address
		ma(t, "/ip4/127.0.0.1/udp/7"),
		ma(t, "/ip4/127.0.0.1/tcp/7"), // wrong transport: a warning
	}
	aps, warnings := ResolveAllWith(context.Background(), r, ms, "udp")
	want := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:6881"), netip.MustParseAddrPort("192.0.2.2:6881"), netip.MustParseAddrPort("127.0.0.1:7"),
	}
	if !reflect.DeepEqual(aps, want) {
		t.Errorf("addrs = %v, want %v", aps, want)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0].Error(), "gone.example") || !strings.Contains(warnings[1].Error(), "/tcp/7") {
		t.Errorf("warnings = %v, want one for gone.example and one for /tcp/7", warnings)
	}
	// The default resolver path, hermetic with localhost and literals.
	aps, warnings = ResolveAll(context.Background(), []multiaddr.Multiaddr{ma(t, "/dns4/localhost/udp/1"), ma(t, "/ip4/127.0.0.3/udp/2")}, "udp")
	if len(warnings) != 0 || !slices.Contains(aps, netip.MustParseAddrPort("127.0.0.1:1")) || !slices.Contains(aps, netip.MustParseAddrPort("127.0.0.3:2")) {
		t.Errorf("ResolveAll = %v, %v", aps, warnings)
	}
}

func TestParseListen(t *testing.T) {
	aps := func(ss ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, s := range ss {
			out = append(out, netip.MustParseAddrPort(s))
		}
		return out
	}
	for _, tc := range []struct {
		specs    []string
		udp, tcp []netip.AddrPort
	}{
		{nil, aps("0.0.0.0:6881", "[::]:6881"), aps("0.0.0.0:6881", "[::]:6881")},
		{[]string{"/ip4/127.0.0.1/udp/0"}, aps("127.0.0.1:0"), aps("127.0.0.1:0")},
		{[]string{"/ip4/127.0.0.1/tcp/51413"}, aps("127.0.0.1:51413"), aps("127.0.0.1:51413")},
		{[]string{"/ip4/127.0.0.1/udp/1", "/ip6/::1/tcp/2"}, aps("127.0.0.1:1"), aps("[::1]:2")},
		{[]string{"/ip4/127.0.0.1/udp/1", "/ip6/::1/udp/1", "/ip4/127.0.0.1/udp/1"}, aps("127.0.0.1:1", "[::1]:1"), aps("127.0.0.1:1", "[::1]:1")},
		{[]string{"127.0.0.1:0", "/ip4/127.0.0.2/udp/5"}, aps("127.0.0.2:5", "127.0.0.1:0"), aps("127.0.0.2:5", "127.0.0.1:0")},
		{[]string{"[::]:6881"}, aps("[::]:6881"), aps("[::]:6881")},
	} {
		udp, tcp, err := ParseListen(tc.specs)
		if err != nil || !reflect.DeepEqual(udp, tc.udp) || !reflect.DeepEqual(tcp, tc.tcp) {
			t.Errorf("ParseListen(%q) = %v, %v, %v; want %v, %v", tc.specs, udp, tcp, err, tc.udp, tc.tcp)
		}
	}
	for _, tc := range []struct{ spec, msg string }{
		{"/dns4/localhost/udp/1", "not a host name"},
		{"/ip4/127.0.0.1", "unsupported multiaddr"},
		{"localhost:1", "want ipv4:port"},
		{"", "want ipv4:port"},
		{"/ip4/127.0.0.1/udp/70000", "bad multiaddr"},
	} {
		if _, _, err := ParseListen([]string{tc.spec}); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseListen(%q) error = %v, want %q", tc.spec, err, tc.msg)
		}
	}
}

func TestParseHostPort(t *testing.T) {
	for s, want := range map[string]string{
		"1.2.3.4:5":              "1.2.3.4:5",
		"[::1]:6881":             "[::1]:6881",
		"[::ffff:1.2.3.4]:5":     "1.2.3.4:5",
		"/ip4/1.2.3.4/tcp/5":     "1.2.3.4:5",
		"/ip6/2001:db8::1/udp/9": "[2001:db8::1]:9",
	} {
		ap, err := ParseHostPort(s)
		if err != nil || ap.String() != want {
			t.Errorf("ParseHostPort(%q) = %v, %v; want %s", s, ap, err, want)
		}
	}
	for _, s := range []string{"", "1.2.3.4", "1.2.3.4:0", "/ip4/1.2.3.4/udp/0", "::1:5", "localhost:5", "/dns4/localhost/udp/5", "/ip4/1.2.3.4", "1.2.3.4:65536"} {
		if ap, err := ParseHostPort(s); err == nil {
			t.Errorf("ParseHostPort(%q) = %v, want an error", s, ap)
		}
	}
}

func FuzzParseList(f *testing.F) {
	f.Add(magnetget.DefaultBootstrap)
	f.Add("# c\n\n/ip4/127.0.0.1/udp/1 # x\r\n/ip6/::1/tcp/2\n/dns/a.example/udp/3")
	f.Add("/ip4/1.2.3.4/udp/0\n/dnsaddr/x/udp/1\n/ip6zone/eth0/ip6/fe80::1/udp/1\n/ip4/1.2.3.4/udp/1/utp\n")
	f.Add("/dns4/\x00/udp/1\n/ip4/1.2.3.4/tcp/65536\n////\n")
	f.Fuzz(func(t *testing.T, list string) {
		addrs, bad := ParseList(strings.NewReader(list))
		lines := strings.Count(list, "\n") + 1
		for _, e := range bad {
			var le *LineError
			if !errors.As(e, &le) || le.Line < 1 || le.Line > lines {
				t.Fatalf("bad error %v (%d lines)", e, lines)
			}
		}
		for _, m := range addrs {
			// Every accepted entry is usable: its text parses back to the
			// same address, and IP literals convert.
			again, err := parseRemote(m.String())
			if err != nil || !again.Equal(m) {
				t.Fatalf("accepted %s, which does not parse back: %v", m, err)
			}
			if _, ok := ipOf(m[0]); ok {
				if _, _, err := ToAddrPort(m); err != nil {
					t.Fatalf("accepted %s, which does not convert: %v", m, err)
				}
			}
		}
	})
}

func FuzzParseHostPort(f *testing.F) {
	for _, s := range []string{"1.2.3.4:5", "[::1]:6881", "[fe80::1%eth0]:1", "/ip4/1.2.3.4/tcp/5", "/ip6/::1/udp/0", "/dns4/x/udp/1", "1.2.3.4:0", "[::ffff:1.2.3.4]:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := ParseHostPort(s)
		if err != nil {
			return
		}
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Is4In6() {
			t.Fatalf("ParseHostPort(%q) = %v", s, ap)
		}
		// The host:port form of the result is accepted and is a fixed point.
		ap2, err := ParseHostPort(ap.String())
		if err != nil || ap2 != ap {
			t.Fatalf("ParseHostPort(%q) = %v, but ParseHostPort(%q) = %v, %v", s, ap, ap.String(), ap2, err)
		}
		// Without a zone, the multiaddr form is accepted too.
		if ap.Addr().Zone() == "" {
			m := FromAddrPort(ap, "udp")
			ap3, err := ParseHostPort(m.String())
			if err != nil || ap3 != ap {
				t.Fatalf("multiaddr %s of %v parses to %v, %v", m, ap, ap3, err)
			}
		}
	})
}
