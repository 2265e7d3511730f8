package realclient

import (
	"context"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"
)

//go:embed lt.py
var ltScript string

func startLT(ctx context.Context, name, mode string, cfg map[string]any, lifetime time.Duration, logger *slog.Logger, onEvent func(event)) (*proc, error) {
	if err := LibtorrentAvailable(); err != nil {
		return nil, err
	}
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	// lt.py enforces the lifetime too, a little later than the Go side, so
	// it is gone even if this process dies without killing it.
	cfg["lifetime"] = (lifetime + 5*time.Second).Seconds()
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return startProc(ctx, procConfig{
		name:     name,
		path:     Python,
		args:     []string{"-u", "-c", ltScript, mode, string(b)},
		lifetime: lifetime,
		logger:   logger,
		json:     true,
		onEvent:  onEvent,
	})
}

// DHTConfig configures StartLibtorrentDHT. The zero value starts 30 nodes.
type DHTConfig struct {
	// Nodes is the number of libtorrent sessions; 0 means 30.
	Nodes int
	// FirstSubnet: node i listens on 127.0.K.1 with K = FirstSubnet+i;
	// 0 means 1. Ports are ephemeral.
	FirstSubnet int
	// Bootstrap nodes every session queries at start (for example magnetget
	// nodes), besides up to 12 of its peers in the network. Loopback only.
	// They are introduced with add_dht_node, never as libtorrent "router"
	// nodes: libtorrent keeps routers out of its routing table.
	Bootstrap []netip.AddrPort
	// Seed picks each node's random bootstrap peers; 0 means 1.
	Seed int64
	// MaxLifetime bounds the process; 0 means DefaultLifetime.
	MaxLifetime time.Duration
	Logger      *slog.Logger
}

// LibtorrentDHT is a network of libtorrent DHT nodes in one python process.
type LibtorrentDHT struct {
	p     *proc
	addrs []netip.AddrPort

	mu     sync.Mutex // guards the following
	ready  bool
	counts []int
	found  map[lookupKey][]netip.AddrPort
}

type lookupKey struct {
	node int
	ih   [20]byte
}

// StartLibtorrentDHT starts the nodes and returns once they all listen and
// have been given their bootstrap nodes. ctx bounds the start-up only (as
// with net.Dialer.DialContext); the process then runs until Close or
// MaxLifetime.
func StartLibtorrentDHT(ctx context.Context, cfg DHTConfig) (*LibtorrentDHT, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 30
	}
	if cfg.FirstSubnet <= 0 {
		cfg.FirstSubnet = 1
	}
	if cfg.FirstSubnet+cfg.Nodes > 1<<16 {
		return nil, fmt.Errorf("libtorrent dht: %d nodes from subnet %d do not fit in 127/8", cfg.Nodes, cfg.FirstSubnet)
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if err := checkLoopbackAddrs("libtorrent dht bootstrap", cfg.Bootstrap); err != nil {
		return nil, err
	}
	ips := make([]string, cfg.Nodes)
	for i := range ips {
		ips[i] = DHTNodeIP(cfg.FirstSubnet, i).String()
	}
	d := &LibtorrentDHT{found: make(map[lookupKey][]netip.AddrPort)}
	var err error
	d.p, err = startLT(context.WithoutCancel(ctx), "libtorrent dht", "dht", map[string]any{
		"nodes": cfg.Nodes, "ips": ips, "bootstrap": addrStrings(cfg.Bootstrap), "seed": cfg.Seed,
	}, cfg.MaxLifetime, cfg.Logger, d.onEvent)
	if err != nil {
		return nil, fmt.Errorf("libtorrent dht: %w", err)
	}
	if err := d.p.wait(ctx, "ready", func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.ready }); err != nil {
		d.p.Close()
		return nil, err
	}
	return d, nil
}

func (d *LibtorrentDHT) onEvent(ev event) {
	switch ev.Ev {
	case "ready":
		var r struct{ Addrs []string }
		_ = json.Unmarshal(ev.Raw, &r)
		d.mu.Lock()
		d.addrs = parseAddrs(r.Addrs)
		d.ready = true
		d.mu.Unlock()
	case "nodes":
		var r struct{ Counts []int }
		_ = json.Unmarshal(ev.Raw, &r)
		d.mu.Lock()
		d.counts = r.Counts
		d.mu.Unlock()
	case "peers":
		var r struct {
			Node  int
			Ih    string
			Peers []string
		}
		_ = json.Unmarshal(ev.Raw, &r)
		var k lookupKey
		if b, err := hex.DecodeString(r.Ih); err != nil || len(b) != 20 {
			return
		} else {
			copy(k.ih[:], b)
		}
		k.node = r.Node
		d.mu.Lock()
		for _, p := range parseAddrs(r.Peers) {
			if !slices.Contains(d.found[k], p) {
				d.found[k] = append(d.found[k], p)
			}
		}
		d.mu.Unlock()
	}
}

// Addrs returns the nodes' UDP addresses, in node order.
func (d *LibtorrentDHT) Addrs() []netip.AddrPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.addrs)
}

// NodeCounts returns each node's latest routing-table size (-1 when
// libtorrent did not say), refreshed every half second.
func (d *LibtorrentDHT) NodeCounts() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.counts)
}

// WaitNodes waits until every node's routing table holds at least k nodes.
func (d *LibtorrentDHT) WaitNodes(ctx context.Context, k int) error {
	return d.p.wait(ctx, fmt.Sprintf("every table to hold %d nodes", k), func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.counts) == 0 {
			return false
		}
		return slices.Min(d.counts) >= k
	})
}

// Lookup starts a get_peers lookup for ih from node i and returns at once.
// libtorrent reports peers once per node that answers with some, and
// nothing at all when nobody has any; Peers returns what has come so far.
func (d *LibtorrentDHT) Lookup(ctx context.Context, node int, ih [20]byte) error {
	_, err := d.p.call(ctx, "get_peers", map[string]any{"node": node, "ih": hex.EncodeToString(ih[:])})
	return err
}

// Peers returns the peers node i's lookups for ih have found so far.
func (d *LibtorrentDHT) Peers(node int, ih [20]byte) []netip.AddrPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.found[lookupKey{node, ih}])
}

// GetPeers looks ih up from node i, repeating the lookup every second,
// until some peer is found (then it waits 200 ms more for other answers of
// the same lookup) or ctx ends. It returns everything found for ih at node
// i, including by earlier lookups.
func (d *LibtorrentDHT) GetPeers(ctx context.Context, node int, ih [20]byte) ([]netip.AddrPort, error) {
	return d.lookupUntil(ctx, node, ih, func(peers []netip.AddrPort) bool { return len(peers) > 0 })
}

// FindPeer looks ih up from node i, once a second, until the results
// include want or ctx ends (for example to wait until an announce landed).
func (d *LibtorrentDHT) FindPeer(ctx context.Context, node int, ih [20]byte, want netip.AddrPort) error {
	_, err := d.lookupUntil(ctx, node, ih, func(peers []netip.AddrPort) bool { return slices.Contains(peers, want) })
	return err
}

func (d *LibtorrentDHT) lookupUntil(ctx context.Context, node int, ih [20]byte, done func([]netip.AddrPort) bool) ([]netip.AddrPort, error) {
	if n := len(d.Addrs()); node < 0 || node >= n {
		return nil, fmt.Errorf("libtorrent dht: node %d of %d", node, n)
	}
	for {
		if err := d.Lookup(ctx, node, ih); err != nil {
			return nil, err
		}
		round, cancel := context.WithTimeout(ctx, time.Second)
		err := d.p.wait(round, "peers", func() bool { return done(d.Peers(node, ih)) })
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return d.Peers(node, ih), fmt.Errorf("libtorrent dht: lookup from node %d: %w", node, ctx.Err())
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
	}
	// Other nodes of the same lookup answer within a few ms on loopback.
	select {
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
	}
	return d.Peers(node, ih), nil
}

// Announce makes node i announce ih into the DHT as a peer at its own
// address (Addrs()[i]: libtorrent peers and nodes share the port) and
// returns that peer address. The announce runs in the background (and is
// repeated by libtorrent); poll GetPeers to see it land. Node i also
// accepts BitTorrent connections for ih but has no metadata to give.
func (d *LibtorrentDHT) Announce(ctx context.Context, node int, ih [20]byte) (netip.AddrPort, error) {
	ev, err := d.p.call(ctx, "announce", map[string]any{"node": node, "ih": hex.EncodeToString(ih[:])})
	if err != nil {
		return netip.AddrPort{}, err
	}
	var r struct{ Port uint16 }
	if err := json.Unmarshal(ev.Raw, &r); err != nil {
		return netip.AddrPort{}, fmt.Errorf("libtorrent dht: announce reply: %w", err)
	}
	addrs := d.Addrs()
	return netip.AddrPortFrom(addrs[node%len(addrs)].Addr(), r.Port), nil
}

// AddNode makes every node ping addr (for example a magnetget node that
// started after the network).
func (d *LibtorrentDHT) AddNode(ctx context.Context, addr netip.AddrPort) error {
	if err := checkLoopbackAddr(addr.Addr()); err != nil {
		return err
	}
	_, err := d.p.call(ctx, "add_node", map[string]any{"addr": addr.String()})
	return err
}

// Close kills the process and waits for it.
func (d *LibtorrentDHT) Close() error { return d.p.Close() }

// SeederConfig configures StartLibtorrentSeeder.
type SeederConfig struct {
	// Torrent is the .torrent file; DataDir the directory holding its
	// content (libtorrent's save_path: the parent of the file or folder
	// named by the torrent).
	Torrent, DataDir string
	// IP to listen on (TCP peers, UDP DHT, one ephemeral port); zero means
	// SeederIP.
	IP netip.Addr
	// Bootstrap turns the DHT on, queries these nodes (as DHTConfig.Bootstrap)
	// and makes the seeder announce the torrent; empty means DHT off (dial
	// Addr directly).
	Bootstrap []netip.AddrPort
	// MinNodes: force the first announce once the table has this many
	// nodes; 0 means 3.
	MinNodes int
	// UTPOnly makes the seeder take and make peer connections over uTP
	// (BEP 29) only, on its UDP port (the same number as Addr's).
	UTPOnly     bool
	MaxLifetime time.Duration
	Logger      *slog.Logger
}

// LibtorrentSeeder is a libtorrent session seeding one torrent over TCP.
type LibtorrentSeeder struct {
	p   *proc
	dht bool

	mu        sync.Mutex // guards the following
	addr      netip.AddrPort
	infoHash  string
	announced bool
}

// StartLibtorrentSeeder starts seeding and returns once libtorrent seeds
// and listens (seed mode: data is trusted and checked as pieces are served).
// ctx bounds the start-up only; the process runs until Close or MaxLifetime.
func StartLibtorrentSeeder(ctx context.Context, cfg SeederConfig) (*LibtorrentSeeder, error) {
	if cfg.Torrent == "" || cfg.DataDir == "" {
		return nil, errors.New("libtorrent seeder: Torrent and DataDir are required")
	}
	if err := checkTorrentFile(cfg.Torrent); err != nil {
		return nil, fmt.Errorf("libtorrent seeder: %w", err)
	}
	if !cfg.IP.IsValid() {
		cfg.IP = SeederIP
	}
	if err := checkLoopbackAddr(cfg.IP); err != nil {
		return nil, fmt.Errorf("libtorrent seeder: %w", err)
	}
	if err := checkLoopbackAddrs("libtorrent seeder bootstrap", cfg.Bootstrap); err != nil {
		return nil, err
	}
	if cfg.MinNodes <= 0 {
		cfg.MinNodes = 3
	}
	s := &LibtorrentSeeder{dht: len(cfg.Bootstrap) > 0}
	var err error
	s.p, err = startLT(context.WithoutCancel(ctx), "libtorrent seeder", "seed", map[string]any{
		"torrent": cfg.Torrent, "dir": cfg.DataDir, "ip": cfg.IP.String(),
		"bootstrap": addrStrings(cfg.Bootstrap), "min_nodes": cfg.MinNodes, "utp_only": cfg.UTPOnly,
	}, cfg.MaxLifetime, cfg.Logger, s.onEvent)
	if err != nil {
		return nil, fmt.Errorf("libtorrent seeder: %w", err)
	}
	if err := s.p.wait(ctx, "seeding", func() bool { return s.Addr().IsValid() }); err != nil {
		s.p.Close()
		return nil, err
	}
	return s, nil
}

func (s *LibtorrentSeeder) onEvent(ev event) {
	switch ev.Ev {
	case "ready":
		var r struct{ Addr, Ih string }
		_ = json.Unmarshal(ev.Raw, &r)
		ap, _ := netip.ParseAddrPort(r.Addr)
		s.mu.Lock()
		s.addr, s.infoHash = ap, r.Ih
		s.mu.Unlock()
	case "announced":
		s.mu.Lock()
		s.announced = true
		s.mu.Unlock()
	}
}

// Addr is the seeder's TCP peer address (its DHT node uses the same UDP
// port).
func (s *LibtorrentSeeder) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// WaitAnnounced waits until the seeder's own get_peers lookup returns its
// address, i.e. its announce reached the DHT. Only with a Bootstrap list.
func (s *LibtorrentSeeder) WaitAnnounced(ctx context.Context) error {
	if !s.dht {
		return errors.New("libtorrent seeder: WaitAnnounced needs a Bootstrap list (DHT is off)")
	}
	return s.p.wait(ctx, "DHT announce", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.announced })
}

// Connect makes the seeder dial addr now and again every 2 s (libtorrent
// skips it while connected), for peers that never dial loopback addresses
// themselves (Transmission) or have no other way to learn about the seeder.
func (s *LibtorrentSeeder) Connect(ctx context.Context, addr netip.AddrPort) error {
	if err := checkLoopbackAddr(addr.Addr()); err != nil {
		return fmt.Errorf("libtorrent seeder: %w", err)
	}
	_, err := s.p.call(ctx, "connect", map[string]any{"addr": addr.String()})
	return err
}

// Close kills the process and waits for it.
func (s *LibtorrentSeeder) Close() error { return s.p.Close() }

// DownloadConfig configures LibtorrentDownload.
type DownloadConfig struct {
	// Magnet or Torrent (a .torrent path) names what to fetch.
	Magnet, Torrent string
	// Dir is the save path; created if missing.
	Dir string
	// Bootstrap turns the DHT on with these nodes; empty means DHT off. The
	// downloader is a read-only DHT node (BEP 43): it never enters other
	// tables, where it would linger dead after it exits.
	Bootstrap []netip.AddrPort
	// Peers are dialled directly (and re-dialled every 2 s).
	Peers []netip.AddrPort
	// MetadataOnly stops once the info dict is in and writes it to
	// Dir/<hex infohash>.torrent.
	MetadataOnly bool
	// IP to listen on; zero means DownloaderIP.
	IP netip.Addr
	// UTPOnly: peer connections over uTP (BEP 29) only, both ways.
	UTPOnly     bool
	MaxLifetime time.Duration
	Logger      *slog.Logger
}

// DownloadResult reports a finished download. Times are measured inside
// the python process from just before the session is created, so they
// exclude interpreter start-up (about 0.1 s) but include session start.
type DownloadResult struct {
	Metadata time.Duration // until the info dict was complete
	Total    time.Duration // until done (files flushed to disk)
	Wall     time.Duration // as seen from Go, including process start
	Bytes    int64
	Torrent  string // MetadataOnly: the .torrent written
}

// LibtorrentDownload downloads (or with MetadataOnly fetches metadata) and
// returns when done, after flushing libtorrent's cache so the files are
// complete on disk. ctx bounds the whole download.
func LibtorrentDownload(ctx context.Context, cfg DownloadConfig) (DownloadResult, error) {
	if (cfg.Magnet == "") == (cfg.Torrent == "") {
		return DownloadResult{}, errors.New("libtorrent download: exactly one of Magnet and Torrent is required")
	}
	if cfg.MetadataOnly && cfg.Magnet == "" {
		return DownloadResult{}, errors.New("libtorrent download: MetadataOnly needs a Magnet")
	}
	if err := checkURI(cfg.Magnet + cfg.Torrent); err != nil {
		return DownloadResult{}, fmt.Errorf("libtorrent download: %w", err)
	}
	if cfg.Dir == "" {
		return DownloadResult{}, errors.New("libtorrent download: Dir is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return DownloadResult{}, fmt.Errorf("libtorrent download: %w", err)
	}
	if !cfg.IP.IsValid() {
		cfg.IP = DownloaderIP
	}
	if err := checkLoopbackAddr(cfg.IP); err != nil {
		return DownloadResult{}, fmt.Errorf("libtorrent download: %w", err)
	}
	if err := checkLoopbackAddrs("libtorrent download bootstrap", cfg.Bootstrap); err != nil {
		return DownloadResult{}, err
	}
	if err := checkLoopbackAddrs("libtorrent download peers", cfg.Peers); err != nil {
		return DownloadResult{}, err
	}
	var (
		mu   sync.Mutex
		done *event
	)
	start := time.Now()
	p, err := startLT(ctx, "libtorrent download", "download", map[string]any{
		"magnet": cfg.Magnet, "torrent": cfg.Torrent, "dir": cfg.Dir, "ip": cfg.IP.String(),
		"bootstrap": addrStrings(cfg.Bootstrap), "peers": addrStrings(cfg.Peers), "metadata_only": cfg.MetadataOnly,
		"utp_only": cfg.UTPOnly,
	}, cfg.MaxLifetime, cfg.Logger, func(ev event) {
		if ev.Ev == "done" {
			mu.Lock()
			done = &ev
			mu.Unlock()
		}
	})
	if err != nil {
		return DownloadResult{}, fmt.Errorf("libtorrent download: %w", err)
	}
	defer p.Close()
	werr := p.wait(ctx, "download", func() bool { mu.Lock(); defer mu.Unlock(); return done != nil })
	wall := time.Since(start)
	if werr != nil {
		return DownloadResult{}, werr
	}
	var r struct {
		T        float64
		Metadata float64
		Bytes    int64
		Torrent  string
	}
	if err := json.Unmarshal(done.Raw, &r); err != nil {
		return DownloadResult{}, fmt.Errorf("libtorrent download: done event: %w", err)
	}
	return DownloadResult{
		Metadata: seconds(r.Metadata),
		Total:    seconds(r.T),
		Wall:     wall,
		Bytes:    r.Bytes,
		Torrent:  r.Torrent,
	}, nil
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
