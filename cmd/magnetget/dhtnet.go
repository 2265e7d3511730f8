package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/multiformats/go-multiaddr"
	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/internal/utp"
)

func dhtFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "listen", Aliases: []string{"l"}, EnvVars: []string{"MAGNETGET_LISTEN"}, Usage: "listen address (multiaddr or IP:PORT), repeatable: /udp/ is a DHT socket, /tcp/ the peer listener; one alone implies the other on the same IP and port (default /ip4/0.0.0.0/udp/6881 and /ip6/::/udp/6881)"},
		&cli.StringSliceFlag{Name: "bootstrap", Aliases: []string{"b"}, EnvVars: []string{"MAGNETGET_BOOTSTRAP"}, Usage: "bootstrap node, repeatable: HOST:PORT or a multiaddr such as /ip4/127.0.0.1/udp/6881 (default: the embedded list)"},
		&cli.PathFlag{Name: "bootstrap-file", EnvVars: []string{"MAGNETGET_BOOTSTRAP_FILE"}, Usage: "file of bootstrap nodes (HOST:PORT or multiaddr), one a line, # comments"},
		&cli.PathFlag{Name: "data-dir", EnvVars: []string{"MAGNETGET_DATA_DIR"}, Usage: "where routing.db is kept (default $XDG_DATA_HOME/magnetget)"},
		&cli.Float64Flag{Name: "dht-rate", Value: 250, EnvVars: []string{"MAGNETGET_DHT_RATE"}, Usage: "outgoing DHT packets per second, per socket (negative: unlimited)"},
	}
}

// dhtSet is the process's dht.Set (one node per UDP socket: IPv4 and, for
// BEP 32, IPv6) with what the commands wire around it: the TCP addresses the
// peer listener should use and the resolved bootstrap list.
type dhtSet struct {
	*dht.Set
	nodes []*dht.Node
	// socks carry uTP (BEP 29) peer connections on the DHT's UDP ports, as
	// other clients do: a node reads only what is not uTP. Closed after the
	// nodes.
	socks utpSockets
	tcp   []netip.AddrPort
	boot  []netip.AddrPort // resolved bootstrap addresses
	log   *slog.Logger
}

func dataDir(c *cli.Context) (string, error) {
	if d := c.Path("data-dir"); d != "" {
		return d, nil
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "magnetget"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --data-dir and no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "magnetget"), nil
}

// bootstrapAddrs reads the bootstrap list the flags name (the embedded one
// when none) and resolves it. Bad lines and names that do not resolve are
// warnings: only an empty result matters, and the caller decides that.
func bootstrapAddrs(ctx context.Context, c *cli.Context, log *slog.Logger) ([]netip.AddrPort, error) {
	var mas []multiaddr.Multiaddr
	addList := func(src, text string) {
		good, bad := maddr.ParseList(strings.NewReader(text))
		for _, e := range bad {
			// A --bootstrap value is named as typed; a file line by its number.
			var le *maddr.LineError
			switch {
			case errors.As(e, &le) && src == "--bootstrap":
				log.Warn(fmt.Sprintf("skipping --bootstrap %q: %s", le.Text, userMessage(le.Err)))
			case errors.As(e, &le):
				log.Warn(fmt.Sprintf("skipping %s line %d %q: %s", src, le.Line, le.Text, userMessage(le.Err)))
			default:
				log.Warn(fmt.Sprintf("skipping a bootstrap entry of %s: %s", src, userMessage(e)))
			}
		}
		mas = append(mas, good...)
	}
	given := false
	for _, s := range c.StringSlice("bootstrap") {
		given = true
		addList("--bootstrap", hostPortLines(s, "udp"))
	}
	if f := c.Path("bootstrap-file"); f != "" {
		given = true
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("bootstrap file: %w", err)
		}
		addList(f, hostPortLines(string(b), "udp"))
	}
	if !given {
		addList("embedded bootstrap.txt", magnetget.DefaultBootstrap)
	}
	addrs, warns := maddr.ResolveAll(ctx, mas, "udp")
	for _, w := range warns {
		log.Warn("skipping bootstrap node", "err", w)
	}
	return addrs, nil
}

// listenUDP binds addr, falling back to a free port when the wanted one is
// taken (a second magnetget on the same machine still works).
func listenUDP(addr netip.AddrPort, log *slog.Logger) (net.PacketConn, error) {
	pc, err := bindUDP(addr)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) && addr.Port() != 0 {
		pc, err = bindUDP(netip.AddrPortFrom(addr.Addr(), 0))
		if err == nil {
			log.Warn(fmt.Sprintf("DHT port %d is taken; using %d instead", addr.Port(), pc.LocalAddr().(*net.UDPAddr).Port))
		}
	}
	if err != nil {
		return nil, err
	}
	return pc, nil
}

// bindUDP binds addr exactly.
func bindUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	// One socket per family: "udp6" makes [::] IPv6-only, so it does not
	// collide with the IPv4 socket on the same port (BEP 32 keeps two nodes).
	network := "udp4"
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		network = "udp6"
	}
	pc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	// A busy node (a batch of lookups, a crawl) gets replies in bursts; the
	// default receive buffer drops some of them. Best effort: the kernel
	// caps it at net.core.rmem_max.
	_ = pc.SetReadBuffer(4 << 20)
	return pc, nil
}

// portTries bounds the ports tried when the wanted one is taken.
const portTries = 8

// listenPeerPorts binds the peer listener on the first --listen TCP address
// that takes it, and the UDP sockets (DHT and uTP) that asked for the same
// port number on that very port: peers reach us over uTP at the port we
// announce, which is the TCP one. When the wanted port is taken on either
// protocol (or is 0), up to portTries ports free for both are tried, and one
// warning names the port used. The result holds one socket per udp address,
// nil where an optional IPv6 socket could not be opened (errs says why);
// UDP addresses with another port are bound by listenUDP as before.
func listenPeerPorts(udp, tcp []netip.AddrPort, log *slog.Logger) (pcs []net.PacketConn, errs []error, ln *peerListener, err error) {
	pcs, errs = make([]net.PacketConn, len(udp)), make([]error, len(udp))
	closeAll := func() {
		for i, pc := range pcs {
			if pc != nil {
				pc.Close()
				pcs[i] = nil
			}
		}
	}
	// optional: the default IPv6 twin, which many hosts cannot open.
	optional := func(i int) bool { return udp[i].Addr().Is6() && len(udp) > 1 }
	var firstErr error
	for _, a := range tcp {
		var partners []int
		for i, u := range udp {
			if u.Port() == a.Port() {
				partners = append(partners, i)
			}
		}
		// bind takes port (0: the kernel's choice for TCP, then UDP on the
		// same number) on TCP and every partner, or nothing.
		bind := func(port uint16) (net.Listener, error) {
			l, err := net.Listen("tcp", netip.AddrPortFrom(a.Addr(), port).String())
			if err != nil {
				return nil, err
			}
			port = uint16(l.Addr().(*net.TCPAddr).Port)
			for _, i := range partners {
				pc, err := bindUDP(netip.AddrPortFrom(udp[i].Addr(), port))
				if err != nil && !errors.Is(err, syscall.EADDRINUSE) && optional(i) {
					errs[i] = err
					continue
				}
				if err != nil {
					l.Close()
					closeAll()
					return nil, err
				}
				pcs[i], errs[i] = pc, nil
			}
			return l, nil
		}
		l, err := bind(a.Port())
		for try := 0; err != nil && errors.Is(err, syscall.EADDRINUSE) && try < portTries; try++ {
			l, err = bind(0)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			clear(errs)
			continue
		}
		if got := l.Addr().(*net.TCPAddr).Port; a.Port() != 0 && got != int(a.Port()) {
			log.Warn(fmt.Sprintf("port %d is taken; using %d instead for peers (TCP and uTP) and the DHT", a.Port(), got))
		}
		ln = &peerListener{Listener: l, want: a}
		break
	}
	if ln == nil {
		if firstErr == nil {
			firstErr = errors.New("no TCP listen address")
		}
		return nil, nil, nil, fmt.Errorf("peer listener: %w", firstErr)
	}
	for i, u := range udp {
		if pcs[i] != nil || errs[i] != nil {
			continue
		}
		if pc, err := listenUDP(u, log); err == nil {
			pcs[i] = pc
		} else {
			errs[i] = err
		}
	}
	return pcs, errs, ln, nil
}

// joinDHT starts the DHT nodes the flags ask for and starts their bootstrap
// walks in the background: nothing waits for them, since a lookup starts at
// once from the saved nodes and the bootstrap addresses and takes up what the
// walks learn. hooks carries callbacks and ReadOnly (BEP 43: short-lived
// commands join read-only so others do not fill their tables with a node about
// to vanish). With optional set (downloads and seeds, which also have x.pe
// peers and trackers), a DHT with nowhere to start from is a warning, not an
// error.
func joinDHT(ctx context.Context, c *cli.Context, log *slog.Logger, hooks dht.Config, optional bool) (*dhtSet, error) {
	s, _, err := joinNet(ctx, c, log, hooks, optional, false)
	return s, err
}

// joinPeerDHT is joinDHT with the peer listener on the --listen TCP address,
// its port number shared with the DHT's UDP sockets (see listenPeerPorts).
func joinPeerDHT(ctx context.Context, c *cli.Context, log *slog.Logger, hooks dht.Config) (*dhtSet, *peerListener, error) {
	return joinNet(ctx, c, log, hooks, true, true)
}

func joinNet(ctx context.Context, c *cli.Context, log *slog.Logger, hooks dht.Config, optional, withTCP bool) (_ *dhtSet, _ *peerListener, err error) {
	udp, tcp, err := maddr.ParseListen(c.StringSlice("listen"))
	if err != nil {
		return nil, nil, usageError("--%s", userMessage(err))
	}
	dir, err := dataDir(c)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("data dir: %w", err)
	}
	boot, err := bootstrapAddrs(ctx, c, log)
	if err != nil {
		return nil, nil, err
	}
	var nodes []*dht.Node
	var socks utpSockets
	var pcs []net.PacketConn
	var pcErrs []error
	var ln *peerListener
	closeNodes := func() {
		for _, n := range nodes {
			n.Close()
		}
		socks.close()
		for _, pc := range pcs {
			if pc != nil {
				pc.Close() // not yet taken by a Socket: closing twice is harmless
			}
		}
		if ln != nil {
			ln.Close()
		}
	}
	if withTCP {
		if pcs, pcErrs, ln, err = listenPeerPorts(udp, tcp, log); err != nil {
			return nil, nil, err
		}
	}
	v4db, v6db := false, false
	for i, a := range udp {
		var pc net.PacketConn
		if withTCP {
			pc, err = pcs[i], pcErrs[i]
		} else {
			pc, err = listenUDP(a, log)
		}
		if err != nil {
			// The default IPv6 twin is optional: many hosts have no IPv6.
			if a.Addr().Is6() && len(udp) > 1 {
				log.Warn("no IPv6 DHT socket", "addr", a, "err", err)
				continue
			}
			closeNodes()
			return nil, nil, fmt.Errorf("listen %v: %w", maddr.FromAddrPort(a, "udp"), err)
		}
		// One routing table file per address family: BEP 32 keeps the two
		// tables apart, and a second socket of one family shares nothing.
		state := ""
		if a.Addr().Unmap().Is4() && !v4db {
			state, v4db = filepath.Join(dir, "routing.db"), true
		} else if a.Addr().Is6() && !a.Addr().Is4In6() && !v6db {
			state, v6db = filepath.Join(dir, "routing6.db"), true
		}
		var fam []netip.AddrPort
		for _, b := range boot {
			if b.Addr().Unmap().Is4() == a.Addr().Unmap().Is4() {
				fam = append(fam, netip.AddrPortFrom(b.Addr().Unmap(), b.Port()))
			}
		}
		sock, err := utp.NewSocket(pc, utp.Config{Logger: log}) // owns pc from here
		if err != nil {
			pc.Close()
			closeNodes()
			return nil, nil, fmt.Errorf("uTP on %v: %w", a, err)
		}
		socks = append(socks, sock)
		cfg := hooks
		cfg.Conn = sock.PacketConn()
		cfg.StateFile = state
		cfg.Bootstrap = fam
		cfg.Rate = c.Float64("dht-rate")
		cfg.Logger = log
		n, err := dht.New(cfg)
		if err != nil {
			closeNodes()
			return nil, nil, fmt.Errorf("DHT node on %v: %w", a, err)
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 {
		closeNodes()
		return nil, nil, errors.New("no DHT socket could be opened")
	}
	set, err := dht.NewSet(nodes...)
	if err != nil {
		closeNodes()
		return nil, nil, err
	}
	s := &dhtSet{Set: set, nodes: nodes, socks: socks, tcp: tcp, boot: boot, log: log}
	if len(boot) == 0 && s.Stats().Nodes == 0 {
		if !optional {
			s.Close()
			if ln != nil {
				ln.Close()
			}
			return nil, nil, errors.New("no bootstrap node left and no saved routing table: give --bootstrap")
		}
		log.Warn("the DHT has no bootstrap node and no saved table: peers come only from the magnet's x.pe, trackers and incoming connections")
	}
	set.StartBootstrap(func(n *dht.Node, err error) {
		switch {
		case err == nil:
		case errors.Is(err, dht.ErrNoNodes):
			// Typically the IPv6 socket when the list has no IPv6 node:
			// not worth a warning on every run.
			log.Info("DHT socket has no node to start from", "node", maddr.FromAddrPort(n.Addr(), "udp"))
		default:
			log.Warn("bootstrap", "node", maddr.FromAddrPort(n.Addr(), "udp"), "err", err)
		}
	})
	return s, ln, nil
}

// Close stops every node (each saves its table) and releases the sockets.
func (s *dhtSet) Close() {
	if err := s.Set.Close(); err != nil {
		s.log.Warn("closing DHT node", "err", err)
	}
	s.socks.close()
}

// utpSockets are the uTP sockets of the DHT's UDP ports (one per address
// family).
type utpSockets []*utp.Socket

// DialContext dials addr over uTP from the socket of its address family.
func (u utpSockets) DialContext(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	v4 := addr.Addr().Unmap().Is4()
	for _, s := range u {
		if s.LocalAddrPort().Addr().Unmap().Is4() == v4 {
			return s.DialContext(ctx, addr)
		}
	}
	return nil, fmt.Errorf("no uTP socket for %v", addr)
}

func (u utpSockets) close() {
	for _, s := range u {
		s.Close()
	}
}

// utpDialer is the uTP dialer for peerwire, nil when there is no socket.
func (s *dhtSet) utpDialer() peerwire.UTPDialer {
	if len(s.socks) == 0 {
		return nil
	}
	return s.socks
}

// localIP is the address our peer connections and tracker announces leave
// from: the --listen TCP address (zero when it is unspecified, and the
// system chooses).
func (s *dhtSet) localIP() netip.Addr {
	if len(s.tcp) == 0 || s.tcp[0].Addr().IsUnspecified() {
		return netip.Addr{}
	}
	return s.tcp[0].Addr().Unmap()
}

// seeds is where a crawl walk starts: the bootstrap nodes.
func (s *dhtSet) seeds() []netip.AddrPort { return s.boot }

// udpMultiaddrs names the sockets for users.
func (s *dhtSet) udpMultiaddrs() []string {
	var out []string
	for _, n := range s.nodes {
		out = append(out, maddr.FromAddrPort(n.Addr(), "udp").String())
	}
	return out
}
