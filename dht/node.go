package dht

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	anadht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	anlog "github.com/anacrolix/log"
	"golang.org/x/time/rate"

	"github.com/magnetget/magnetget/routing"
)

// Defaults for zero Config fields.
const (
	DefaultRate                = 250
	DefaultResendDelay         = 2 * time.Second
	DefaultMaxPeersPerInfohash = 1000
	DefaultPeerTTL             = 30 * time.Minute
	DefaultMaxPeers            = 200_000
	DefaultSaveInterval        = 5 * time.Minute
	// SavedNodes is how many nodes Save keeps in the state file.
	SavedNodes = 4000
	// SampleInterval is the BEP 51 interval we advertise: samples are drawn afresh per query, so
	// a crawler gains nothing by asking more often than this.
	SampleInterval         = time.Minute
	DefaultMaintainerDelay = time.Minute
	DefaultHealthInterval  = 30 * time.Second
	// tableSeed is how many saved nodes New offers the routing table.
	tableSeed = 256
	// socketReadBuffer is the receive buffer New asks for. The kernel default (208 KiB, a few
	// hundred datagrams) overflows whenever the read loop is off the CPU for ~15 ms during a
	// flood, and the kernel then drops the answers to our own queries along with the flood;
	// 4 MiB gives the loop ~300 ms of slack. Best effort: Linux caps it at net.core.rmem_max.
	socketReadBuffer = 4 << 20
)

var (
	// ErrNoResponses means no node answered during a traversal.
	ErrNoResponses = errors.New("dht: no node responded")
	// ErrNoNodes means there was nobody to start a traversal from: empty table, no saved nodes
	// and no bootstrap addresses.
	ErrNoNodes = errors.New("dht: no nodes to start from")
	// ErrClosed is returned by operations on a closed Node.
	ErrClosed = errors.New("dht: node closed")
)

// Config configures a Node. The zero value listens on 0.0.0.0:0 with a random id and no
// persistence.
type Config struct {
	Conn                net.PacketConn   // nil: listen on Addr. The Node owns it: Close closes it.
	Addr                netip.AddrPort   // used when Conn is nil; zero: 0.0.0.0:0
	NodeID              [20]byte         // zero: loaded from StateFile, else random
	StateFile           string           // routing.db path; "" = no persistence
	Bootstrap           []netip.AddrPort // used when the table is empty or bootstrap got no responses
	Rate                float64          // outgoing packets/s for this node only; 0 = default 250, <0 unlimited
	ResendDelay         time.Duration    // 0 = 2s (tests use ~50ms); also the per-query timeout
	MaxPeersPerInfohash int              // 0 = 1000
	PeerTTL             time.Duration    // 0 = 30 min
	Logger              *slog.Logger
	OnAnnounce          func(ih [20]byte, peer netip.AddrPort) // passive harvesting; called outside any lock
	OnGetPeers          func(ih [20]byte, from netip.AddrPort) // passive harvesting

	// MaxPeers caps the peers stored over all infohashes; 0 = 200000.
	MaxPeers int
	// SaveInterval is how often StateFile is rewritten while running; 0 = 5 min.
	SaveInterval time.Duration
	// MaintainerDelay is how long after New the library's table maintainer (questionable-node
	// pings, bucket refresh, periodic re-bootstrap) starts; 0 = 1 min. It starts late so its
	// first round does not duplicate the caller's Bootstrap.
	MaintainerDelay time.Duration

	// ReplyRate caps the replies we send per second over all sources, apart from the budget our
	// own queries use (Rate), so a flood of queries cannot starve our lookups; 0 = Rate, <0
	// unlimited. Queries beyond it are dropped unanswered.
	ReplyRate float64
	// SourceRate caps the replies per second to one source IP (on loopback, one IP and port),
	// with a burst of two seconds' worth; 0 = 10, <0 unlimited.
	SourceRate float64
	// MaxInfohashesPerIP caps the infohashes one IP can have peers stored under; 0 = 100.
	MaxInfohashesPerIP int
	// ReadOnly joins as a BEP 43 read-only node: our queries carry "ro":1, so other nodes do
	// not add us to their tables, and we answer no queries. For short-lived commands.
	ReadOnly bool

	// NodeGoodFor is how long a node stays good after its last answer to us (or its last query
	// after having answered once); then it is questionable (BEP 5). 0 = 15 min. Tests shorten it.
	NodeGoodFor time.Duration
	// HealthInterval is how often the questionable nodes near our id, those our replies hand
	// out and those our lookups stalled on are pinged (at most healthBatch a round, healthInFlight
	// at once, within Rate); 0 = 30 s.
	HealthInterval time.Duration
	// BadNodeHold is how long a node that left 3 queries of ours in a row unanswered (bad) is
	// left alone before one query of ours may try it again; each failed try doubles it, up to
	// 8 times. 0 = 20 min. Tests shorten it.
	BadNodeHold time.Duration
}

// PeerResult is one peer found by Lookup, with the node that reported it.
type PeerResult struct{ Peer, From netip.AddrPort }

// Stats is a snapshot for status lines and metrics.
type Stats struct {
	GoodNodes, Nodes        int   // routing table
	QueriesIn, QueriesOut   int64 // KRPC queries received / sent since New
	PeersStored, Infohashes int   // peer store
	// RepliesSent counts replies (answers and errors) sent; RepliesDropped the queries left
	// unanswered because their source or the node was over its reply rate; PacketsDropped the
	// packets refused before decoding (too long, malformed bencode, not KRPC).
	RepliesSent, RepliesDropped, PacketsDropped int64
	// AnswersDropped counts answers (responses and errors) to no query of ours: their
	// transaction id does not carry our MAC for the address they came from (forged, or late
	// beyond recognition).
	AnswersDropped int64
	// QueriesInByType counts received queries by method: ping, find_node, get_peers,
	// announce_peer, sample_infohashes, and "other".
	QueriesInByType map[string]int64
}

// Sample is a BEP 51 sample_infohashes reply.
type Sample struct {
	Infohashes [][20]byte
	Num        int           // infohashes the remote node holds
	Interval   time.Duration // how long before asking that node again
	Nodes      []netip.AddrPort
}

var queryTypes = [...]string{"ping", "find_node", "get_peers", "announce_peer", "sample_infohashes", "other"}

// Node is one DHT node on one UDP socket.
type Node struct {
	cfg     Config
	log     *slog.Logger
	id      [20]byte
	addr    netip.AddrPort
	conn    *guardedConn
	srv     *anadht.Server
	limiter *rate.Limiter // our own queries (the library waits on it)
	// replies are budgeted apart from our queries: globally, and per source.
	replyLimiter *rate.Limiter
	sources      *sourceLimiter
	peers        *peerStore
	tokens       *tokens
	txids        *txids
	nodes        *tracker
	saved        []routing.Node // loaded from StateFile: traversal seeds beside the table
	events       chan event     // for OnAnnounce/OnGetPeers, delivered by one goroutine

	ctx    context.Context // cancelled by Close; parent of every operation
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Node starts

	ready          atomic.Bool // set once New has built the node: packets before are dropped
	queriesIn      atomic.Int64
	repliesSent    atomic.Int64
	repliesDropped atomic.Int64
	packetsDropped atomic.Int64
	answersDropped atomic.Int64
	queriesByType  [len(queryTypes)]atomic.Int64
	eventsDropped  atomic.Int64

	saveMu sync.Mutex // serialises Save

	verifying chan struct{} // semaphore: verification pings in flight
	verifyMu  sync.Mutex    // guards verified
	verified  map[netip.AddrPort]time.Time

	lifeMu  sync.Mutex // guards closing; held while adding to wg so Close's Wait sees every Add
	closing bool

	closeOnce sync.Once
	closeErr  error
}

type event struct {
	announce bool
	ih       [20]byte
	addr     netip.AddrPort
}

// New starts a node: loads StateFile, opens the socket, seeds the table with the saved nodes and
// starts the table maintainer and the periodic save. It does not bootstrap: call Bootstrap.
// A corrupt or locked StateFile is logged as a warning and the node starts fresh.
func New(cfg Config) (*Node, error) {
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.ResendDelay <= 0 {
		cfg.ResendDelay = DefaultResendDelay
	}
	if cfg.MaxPeersPerInfohash <= 0 {
		cfg.MaxPeersPerInfohash = DefaultMaxPeersPerInfohash
	}
	if cfg.PeerTTL <= 0 {
		cfg.PeerTTL = DefaultPeerTTL
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = DefaultMaxPeers
	}
	if cfg.SaveInterval <= 0 {
		cfg.SaveInterval = DefaultSaveInterval
	}
	if cfg.MaintainerDelay <= 0 {
		cfg.MaintainerDelay = DefaultMaintainerDelay
	}
	if cfg.NodeGoodFor <= 0 {
		cfg.NodeGoodFor = DefaultNodeGoodFor
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.ReplyRate == 0 {
		cfg.ReplyRate = cfg.Rate
	}
	if cfg.SourceRate == 0 {
		cfg.SourceRate = DefaultSourceRate
	}
	if cfg.MaxInfohashesPerIP <= 0 {
		cfg.MaxInfohashesPerIP = DefaultMaxInfohashesPerIP
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: logger, id: cfg.NodeID,
		verifying: make(chan struct{}, maxVerifying), verified: make(map[netip.AddrPort]time.Time)}

	if cfg.StateFile != "" {
		st, err := routing.Load(cfg.StateFile)
		switch {
		case errors.Is(err, routing.ErrLocked):
			// Another process owns the file: run from memory and never write it, or our id
			// would replace theirs.
			logger.Warn("dht: routing state is locked by another process; starting fresh in memory, not saving", "file", cfg.StateFile, "err", err)
			n.cfg.StateFile = ""
		case err != nil:
			logger.Warn("dht: routing state unusable; starting fresh", "file", cfg.StateFile, "err", err)
		}
		if n.id == ([20]byte{}) {
			n.id = st.NodeID
		}
		n.saved = st.Nodes
	}
	if n.id == ([20]byte{}) {
		if _, err := rand.Read(n.id[:]); err != nil {
			return nil, fmt.Errorf("dht: node id: %w", err)
		}
	}

	pc := cfg.Conn
	if pc == nil {
		addr := cfg.Addr
		if !addr.IsValid() {
			addr = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		}
		network := "udp4"
		if addr.Addr().Is6() && !addr.Addr().Is4In6() {
			network = "udp6"
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, fmt.Errorf("dht: listen %s: %w", addr, err)
		}
		pc = c
	}
	if rb, ok := pc.(interface{ SetReadBuffer(int) error }); ok {
		if err := rb.SetReadBuffer(socketReadBuffer); err != nil {
			logger.Debug("dht: cannot enlarge the socket receive buffer", "err", err)
		}
	}
	n.addr = addrPortOf(pc.LocalAddr())
	n.conn = newGuardedConn(pc)
	n.conn.filter = n.inbound
	n.txids = newTxids()
	n.conn.out = n.txids.outgoing
	v6 := n.addr.Addr().Is6() && !n.addr.Addr().Is4In6()
	// Keep saved nodes of our family only: an IPv4 socket cannot reach IPv6 nodes.
	n.saved = sameFamily(n.saved, v6)

	n.limiter = newLimiter(cfg.Rate)
	n.replyLimiter = newLimiter(cfg.ReplyRate)
	n.sources = newSourceLimiter(cfg.SourceRate)
	n.tokens = newTokens()
	n.peers = newPeerStore(cfg.PeerTTL, cfg.MaxPeersPerInfohash, cfg.MaxPeers, cfg.MaxInfohashesPerIP)
	n.nodes = newTracker(4*SavedNodes, cfg.NodeGoodFor, cfg.BadNodeHold)
	n.nodes.seed(n.saved)
	if cfg.OnAnnounce != nil || cfg.OnGetPeers != nil {
		n.events = make(chan event, 1024)
	}

	want := []krpc.Want{krpc.WantNodes}
	if v6 {
		want = []krpc.Want{krpc.WantNodes6}
	}
	alog := anlog.NewLogger("dht")
	alog.SetHandlers(slogHandler{logger})
	sc := &anadht.ServerConfig{
		NodeId:     n.id,
		Conn:       n.conn,
		NoSecurity: true, // BEP 42 would reject most real nodes behind NAT; the library exempts loopback anyway
		StartingNodes: func() ([]anadht.Addr, error) {
			return toAnaAddrs(n.cfg.Bootstrap), nil
		},
		QueryResendDelay: func() time.Duration { return n.cfg.ResendDelay },
		Logger:           alog.FilterLevel(anlog.Warning),
		DefaultWant:      want,
		SendLimiter:      n.limiter,
		Passive:          cfg.ReadOnly, // BEP 43: "ro":1 in our queries
	}
	srv, err := anadht.NewServer(sc)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("dht: server: %w", err)
	}
	n.srv = srv
	// Saved nodes come best first. The table keeps 8 per bucket, so only the best few hundred
	// are worth offering it (each offer costs a bucket scan under the server lock); all of them
	// stay traversal seeds through the tracker.
	for _, sn := range n.saved[:min(len(n.saved), tableSeed)] {
		_ = srv.AddNode(krpc.NodeInfo{ID: sn.ID, Addr: nodeAddr(sn.Addr)})
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())

	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// The maintainer's first round is a full bootstrap plus bucket refreshes. Starting it at
		// once would duplicate the caller's Bootstrap exactly when the node (and, in tests, a
		// whole network of nodes) is busiest, so it starts a little later.
		t := time.NewTimer(n.cfg.MaintainerDelay)
		defer t.Stop()
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		// Blocks until the server closes: pings questionable nodes, refreshes buckets each
		// minute, re-bootstraps every 30 minutes (from the table, or StartingNodes when empty).
		srv.TableMaintainer()
	}()
	n.wg.Add(1)
	go n.housekeeping()
	n.wg.Add(1)
	go n.healthPings()
	if n.events != nil {
		n.wg.Add(1)
		go n.deliverEvents()
	}
	n.ready.Store(true)
	logger.Debug("dht: node started", "addr", n.addr, "id", fmt.Sprintf("%x", n.id), "saved_nodes", len(n.saved))
	return n, nil
}

// housekeeping expires stored peers and saves the state file periodically.
func (n *Node) housekeeping() {
	defer n.wg.Done()
	expire := time.NewTicker(max(min(n.cfg.PeerTTL/4, time.Minute), time.Second))
	defer expire.Stop()
	save := time.NewTicker(n.cfg.SaveInterval)
	defer save.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-expire.C:
			n.peers.expire()
		case <-save.C:
			if err := n.Save(); err != nil {
				n.log.Warn("dht: saving routing state", "err", err)
			}
		}
	}
}

func (n *Node) deliverEvents() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case e := <-n.events:
			if e.announce {
				n.cfg.OnAnnounce(e.ih, e.addr)
			} else {
				n.cfg.OnGetPeers(e.ih, e.addr)
			}
		}
	}
}

// emit queues a harvesting callback without blocking the packet path; when the consumer is slow
// events are dropped (and counted) rather than stalling the node.
func (n *Node) emit(e event) {
	if n.events == nil || (e.announce && n.cfg.OnAnnounce == nil) || (!e.announce && n.cfg.OnGetPeers == nil) {
		return
	}
	select {
	case n.events <- e:
	default:
		n.eventsDropped.Add(1)
	}
}

// newLimiter returns a limiter of r events/s with a fifth of a second's burst; r < 0 is unlimited.
func newLimiter(r float64) *rate.Limiter {
	if r < 0 {
		return rate.NewLimiter(rate.Inf, 1)
	}
	return rate.NewLimiter(rate.Limit(r), max(1, int(r/5)))
}

// ID returns the node id.
func (n *Node) ID() [20]byte { return n.id }

// Addr returns the local socket address.
func (n *Node) Addr() netip.AddrPort { return n.addr }

// Stats returns a snapshot of counters.
func (n *Node) Stats() Stats {
	ss := n.srv.Stats()
	peers, ihs := n.peers.counts()
	st := Stats{
		GoodNodes:       ss.GoodNodes,
		Nodes:           ss.Nodes,
		QueriesIn:       n.queriesIn.Load(),
		QueriesOut:      ss.OutboundQueriesAttempted,
		PeersStored:     peers,
		Infohashes:      ihs,
		RepliesSent:     n.repliesSent.Load(),
		RepliesDropped:  n.repliesDropped.Load(),
		PacketsDropped:  n.packetsDropped.Load(),
		AnswersDropped:  n.answersDropped.Load(),
		QueriesInByType: make(map[string]int64, len(queryTypes)),
	}
	for i, q := range queryTypes {
		st.QueriesInByType[q] = n.queriesByType[i].Load()
	}
	return st
}

// Nodes returns the addresses of the nodes this node has heard from and has not found bad,
// the ones that answered our queries most recently first. A crawl starts
// its walk from them.
func (n *Node) Nodes() []netip.AddrPort {
	snap := n.nodes.snapshot()
	ns := routing.Best(snap, len(snap))
	out := make([]netip.AddrPort, 0, len(ns))
	for _, r := range ns {
		out = append(out, r.Addr)
	}
	return out
}

// AddNode pings addr in the background; when it answers, the library adds it to the table.
func (n *Node) AddNode(addr netip.AddrPort) {
	if !addr.IsValid() || !n.goTracked() {
		return
	}
	go func() {
		defer n.wg.Done()
		n.ping(addr)
	}()
}

// ping queries addr once (with one resend); an answer adds it to the table and the tracker. A
// bad node is pinged only when its hold is over (tracker.mayQuery).
func (n *Node) ping(addr netip.AddrPort) {
	if !n.nodes.mayQuery(addr) {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 2*n.cfg.ResendDelay+time.Second)
	defer cancel()
	res := n.srv.Query(ctx, anadht.NewAddr(net.UDPAddrFromAddrPort(addr)), "ping", anadht.QueryInput{NumTries: 2})
	n.noteReply(addr, res)
}

// goTracked reserves a slot in wg for a goroutine the caller is about to start, unless the node
// is closing.
func (n *Node) goTracked() bool {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closing {
		return false
	}
	n.wg.Add(1)
	return true
}

// noteReply records a response, or a query that timed out unanswered, in the tracker. A query
// cut short by its context (a traversal that ended, a closing node) says nothing about the node.
func (n *Node) noteReply(addr netip.AddrPort, res anadht.QueryResult) {
	switch {
	case res.Err == nil && res.Reply.R != nil:
		n.nodes.responded(addr, res.Reply.R.ID, time.Now())
	case errors.Is(res.Err, anadht.TransactionTimeout):
		n.nodes.failed(addr)
	}
}

// Save writes StateFile now: our id and the best SavedNodes nodes, merged with the file.
func (n *Node) Save() error {
	if n.cfg.StateFile == "" {
		return nil
	}
	n.saveMu.Lock()
	defer n.saveMu.Unlock()
	nodes := n.nodes.snapshot()
	// Table nodes the maintainer found without us seeing the answer: no timestamps, so they
	// rank below everything we heard from.
	for _, ni := range n.srv.Nodes() {
		ap := ni.Addr.ToNodeAddrPort().AddrPort
		if !n.nodes.isBad(ap) {
			nodes = append(nodes, routing.Node{ID: ni.ID, Addr: ap})
		}
	}
	st := routing.State{NodeID: n.id, Nodes: routing.Best(nodes, SavedNodes)}
	if err := routing.Save(n.cfg.StateFile, st, SavedNodes); err != nil {
		return fmt.Errorf("dht: save: %w", err)
	}
	return nil
}

// Close stops everything the node started, waits for it, closes the socket and saves the state.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.lifeMu.Lock()
		n.closing = true
		n.lifeMu.Unlock()
		n.cancel()
		n.srv.Close()
		cerr := n.conn.Close()
		n.conn.waitReaders()
		n.wg.Wait()
		var serr error
		if n.cfg.StateFile != "" {
			serr = n.Save()
		}
		if cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			cerr = fmt.Errorf("dht: close socket: %w", cerr)
		} else {
			cerr = nil
		}
		n.closeErr = errors.Join(cerr, serr)
	})
	return n.closeErr
}

func toAddrPort(na krpc.NodeAddr) (netip.AddrPort, bool) {
	ip, ok := netip.AddrFromSlice(na.IP)
	if !ok || na.Port <= 0 || na.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(na.Port)), true
}

func nodeAddr(ap netip.AddrPort) krpc.NodeAddr {
	var na krpc.NodeAddr
	na.FromAddrPort(normAddrPort(ap))
	return na
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return normAddrPort(a.AddrPort())
	case nil:
		return netip.AddrPort{}
	default:
		ap, _ := netip.ParseAddrPort(a.String())
		return normAddrPort(ap)
	}
}

func toAnaAddrs(aps []netip.AddrPort) []anadht.Addr {
	out := make([]anadht.Addr, 0, len(aps))
	for _, ap := range aps {
		out = append(out, anadht.NewAddr(net.UDPAddrFromAddrPort(ap)))
	}
	return out
}

func sameFamily(ns []routing.Node, v6 bool) []routing.Node {
	out := ns[:0:0]
	for _, sn := range ns {
		if sn.Addr.Addr().Unmap().Is4() != v6 {
			out = append(out, sn)
		}
	}
	return out
}

// slogHandler forwards the library's log records to the injected logger at debug level: the
// library logs routine network noise at levels that are not ours to interpret.
type slogHandler struct{ l *slog.Logger }

func (h slogHandler) Handle(r anlog.Record) {
	h.l.Debug("dht library: " + r.Text())
}
