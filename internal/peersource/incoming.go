package peersource

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// Bounds of AcceptEarly, the same as the swarm's for its own accepting.
const (
	DefaultMaxHandshakes = 16              // AcceptConfig.MaxHandshakes when zero
	DefaultMaxPerIP      = 4               // AcceptConfig.MaxPerIP when zero
	HandshakeTimeout     = 5 * time.Second // AcceptConfig.Options.Timeout when zero
	// StopGrace is how long Stop lets handshakes under way finish (a peer that connected a
	// moment before the metadata arrived is handed on, not cut off) before cancelling them.
	StopGrace = time.Second
	// PerIPWindow is how long a taken connection counts against its IP's MaxPerIP.
	PerIPWindow = time.Minute
	// maxIPs bounds the IPs remembered for MaxPerIP; a new one is refused while that many
	// are within their window.
	maxIPs = 4096
)

// AcceptConfig says which peers AcceptEarly takes, and how many.
type AcceptConfig struct {
	// Listener is the peer listener. It must have SetDeadline (a *net.TCPListener has), so
	// that accepting stops without closing it: the swarm accepts on it next.
	Listener net.Listener
	// Hashes are the infohashes we answer to (a hybrid's two swarm hashes), their peers
	// offered on Conns; an encrypted (MSE) handshake is tried against each. Early.Add adds
	// others, for a while.
	Hashes [][20]byte
	// Options is our side of the handshake (peer id, extension handshake); a zero Timeout is
	// HandshakeTimeout.
	Options peerwire.Options
	// MaxHandshakes bounds the incoming connections held at once: handshaking, or handshaken
	// and waiting to be taken from Conns; 0: DefaultMaxHandshakes. More are closed at once.
	MaxHandshakes int
	// MaxPerIP bounds the connections from one IP address: handshaking, waiting, or taken
	// in the last PerIPWindow (a peer dropped by the fetch may come back, but not in a
	// loop); those that failed their handshake do not count. 0: DefaultMaxPerIP.
	MaxPerIP int
	Logger   *slog.Logger // nil: discard
}

// Early accepts the peers that connect to us before the swarm runs, while the metadata is
// fetched: peers told where we are by our DHT announce or a tracker, such as a seed that dials
// its leechers. Their connections are the same peer-wire connections the swarm takes, so the
// ones that served the metadata, and the ones nobody took (Stop), are handed on to it. One Early
// can serve several torrents at once (Add: meta fetches several), each on its own channel.
type Early struct {
	cfg     AcceptConfig
	out     chan *peerwire.Conn
	actx    context.Context    // accepting and offering on out; ends at Stop
	cancel  context.CancelFunc // ends actx
	hcancel context.CancelFunc // ends the handshakes under way
	loop    sync.WaitGroup     // the accept loop
	wg      sync.WaitGroup     // handshakes

	mu     sync.Mutex // guards the fields below
	held   int        // connections handshaking or waiting to be taken
	perIP  map[netip.Addr]*ipCount
	left   []*peerwire.Conn // handshaken, not taken before Stop
	routes map[[20]byte]*route
}

// route is where the connections for some infohashes go.
type route struct {
	out  chan *peerwire.Conn
	done <-chan struct{} // closed when nobody takes from out any more
	keep bool            // connections not taken by done are handed back by Stop (else closed)
}

// ErrNoDeadline: the listener cannot stop accepting without being closed.
var ErrNoDeadline = errors.New("peersource: listener has no SetDeadline")

// AcceptEarly starts accepting on cfg.Listener until Stop (or ctx ends). Each peer that
// completes a handshake for one of cfg.Hashes is offered on Conns.
func AcceptEarly(ctx context.Context, cfg AcceptConfig) (*Early, error) {
	// Accepting must stop without closing the listener: the swarm accepts on it next.
	if _, ok := cfg.Listener.(interface{ SetDeadline(time.Time) error }); !ok {
		return nil, ErrNoDeadline
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if cfg.MaxPerIP <= 0 {
		cfg.MaxPerIP = DefaultMaxPerIP
	}
	if cfg.Options.Timeout <= 0 {
		cfg.Options.Timeout = HandshakeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hctx, hcancel := context.WithCancel(ctx)
	actx, cancel := context.WithCancel(hctx)
	e := &Early{cfg: cfg, out: make(chan *peerwire.Conn), actx: actx, cancel: cancel, hcancel: hcancel,
		perIP: map[netip.Addr]*ipCount{}, routes: map[[20]byte]*route{}}
	main := &route{out: e.out, done: actx.Done(), keep: true}
	for _, ih := range cfg.Hashes {
		e.routes[ih] = main
	}
	e.cfg.Options.InfoHashes = e.hashes
	e.loop.Go(func() { e.acceptLoop(hctx) })
	return e, nil
}

// hashes lists the infohashes answered now (for the MSE responder).
func (e *Early) hashes() [][20]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([][20]byte, 0, len(e.routes))
	for ih := range e.routes {
		out = append(out, ih)
	}
	return out
}

// known reports whether ih is answered now.
func (e *Early) known(ih [20]byte) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.routes[ih] != nil
}

// Add answers the peers that connect for hashes too (another torrent's; hashes already answered
// are left as they are), until remove is called or Stop, and offers their connections on conns
// rather than on Conns. A connection read from conns is the reader's; those nobody took by then
// are closed.
func (e *Early) Add(hashes [][20]byte) (conns <-chan *peerwire.Conn, remove func()) {
	done := make(chan struct{})
	r := &route{out: make(chan *peerwire.Conn), done: done}
	var mine [][20]byte
	e.mu.Lock()
	for _, ih := range hashes {
		if e.routes[ih] == nil {
			e.routes[ih] = r
			mine = append(mine, ih)
		}
	}
	e.mu.Unlock()
	var once sync.Once
	return r.out, func() {
		once.Do(func() {
			e.mu.Lock()
			for _, ih := range mine {
				delete(e.routes, ih)
			}
			e.mu.Unlock()
			close(done)
		})
	}
}

// Conns streams handshaken incoming connections (for metadata.Options.Incoming). A connection
// read from it is the reader's.
func (e *Early) Conns() <-chan *peerwire.Conn { return e.out }

// Stop ends accepting, gives the listener back as it was (no deadline) for the swarm, and
// waits for the handshakes under way (at most StopGrace, then they are cancelled). It returns
// the handshaken connections nobody took: the caller owns them (hand them to the swarm, or
// close them).
func (e *Early) Stop() []*peerwire.Conn {
	e.cancel()
	e.loop.Wait() // ServeListener has cleared the listener's deadline
	t := time.AfterFunc(StopGrace, e.hcancel)
	e.wg.Wait()
	t.Stop()
	e.hcancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	left := e.left
	e.left = nil
	return left
}

// acceptLoop accepts until actx ends (peerwire.ServeListener: the listener stays open); the
// handshakes it starts run under hctx.
func (e *Early) acceptLoop(hctx context.Context) {
	peerwire.ServeListener(e.actx, e.cfg.Listener, func(nc net.Conn) {
		ip := netip.Addr{}
		if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			ip = ta.AddrPort().Addr().Unmap()
		}
		e.mu.Lock()
		ok := e.held < e.cfg.MaxHandshakes && e.admitIPLocked(ip, time.Now())
		if ok {
			e.held++
		}
		e.mu.Unlock()
		if !ok {
			e.cfg.Logger.Debug("incoming peer refused: too many at once", "ip", ip)
			_ = nc.Close()
			return
		}
		e.wg.Go(func() { e.handshake(hctx, nc, ip) })
	})
}

// handshake runs one incoming handshake (until ctx ends) and offers the connection until Stop
// (or, for a torrent added by Add, until its remove).
func (e *Early) handshake(ctx context.Context, nc net.Conn, ip netip.Addr) {
	c, err := peerwire.Accept(ctx, nc, e.known, e.cfg.Options)
	var r *route
	if err == nil {
		e.mu.Lock()
		r = e.routes[c.InfoHash()]
		e.mu.Unlock()
		if r == nil { // removed meanwhile
			c.Close()
			err = errors.New("peersource: its torrent is no longer fetched")
		}
	}
	if err != nil {
		e.mu.Lock()
		e.held--
		if n := e.perIP[ip]; n != nil {
			n.held--
		}
		e.mu.Unlock()
		e.cfg.Logger.Debug("incoming handshake failed", "err", err)
		return
	}
	e.cfg.Logger.Debug("incoming peer", "addr", c.RemoteAddr(), "crypto", c.Crypto())
	select {
	case r.out <- c:
		e.mu.Lock()
		e.held--
		if n := e.perIP[ip]; n != nil {
			n.held--
			n.taken = append(n.taken, time.Now())
		}
		e.mu.Unlock()
		return
	case <-r.done:
	case <-e.actx.Done():
	}
	// Nobody took it: Stop hands it back (Conns' torrent), or its torrent is done (Add).
	e.mu.Lock()
	e.held--
	if n := e.perIP[ip]; n != nil {
		n.held--
	}
	if r.keep {
		e.left = append(e.left, c)
	}
	e.mu.Unlock()
	if !r.keep {
		c.Close()
	}
}

// ipCount is one IP's connections for MaxPerIP.
type ipCount struct {
	held  int         // handshaking or waiting to be taken
	taken []time.Time // when connections were taken, within PerIPWindow
}

// admitIPLocked reports whether one more connection from ip may be held, and counts it.
func (e *Early) admitIPLocked(ip netip.Addr, now time.Time) bool {
	fresh := func(n *ipCount) *ipCount {
		n.taken = slices.DeleteFunc(n.taken, func(t time.Time) bool { return now.Sub(t) >= PerIPWindow })
		return n
	}
	n := e.perIP[ip]
	if n == nil {
		if len(e.perIP) >= maxIPs {
			for a, m := range e.perIP {
				if fresh(m).held == 0 && len(m.taken) == 0 {
					delete(e.perIP, a)
				}
			}
			if len(e.perIP) >= maxIPs {
				return false
			}
		}
		n = &ipCount{}
		e.perIP[ip] = n
	}
	if fresh(n).held+len(n.taken) >= e.cfg.MaxPerIP {
		return false
	}
	n.held++
	return true
}
