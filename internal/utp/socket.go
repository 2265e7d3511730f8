package utp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config tunes a Socket. The zero value works; each zero field means the default named.
type Config struct {
	// MaxConns bounds the connections of the socket, incoming and outgoing, including those
	// closing; 0 = 512. A SYN beyond it is answered with a RESET, a dial fails.
	MaxConns int
	// MaxPending bounds incoming connections not yet taken by Accept; 0 = 64. Beyond it a SYN
	// is answered with a RESET. A pending connection not accepted within IdleTimeout (at most
	// 10 s) is reset.
	MaxPending int
	// RecvWindow is the most a connection buffers of what it received and the application has
	// not read, in order or not (the window it advertises); 0 = 4 MiB, enough for about
	// 100 MiB/s at 40 ms. A pending connection buffers at most 64 KiB.
	RecvWindow int
	// SendBuffer bounds what a connection holds of what it was given to send and the peer has
	// not acknowledged: Write blocks beyond it; 0 = 4 MiB. Below it, a connection holds at
	// most twice its congestion window (at least 256 KiB), so a peer that acknowledges
	// little pins little.
	SendBuffer int
	// MaxBuffered bounds the received bytes all connections buffer together; a data packet
	// that would pass it is dropped (the peer sends it again); 0 = 64 MiB.
	MaxBuffered int
	// MaxSendBuffered bounds what all connections hold together of what they were given to
	// send and the peer has not acknowledged: Write blocks (until acknowledgements, a failed
	// connection or the write deadline free room) beyond it; 0 = 64 MiB.
	MaxSendBuffered int
	// IdleTimeout closes a connection that has waited this long for its peer (data or a FIN
	// unacknowledged, a SYN unanswered) without hearing from it, and any connection silent
	// for four times as long; 0 = 30 s.
	IdleTimeout time.Duration
	// MaxCwnd caps the congestion window in bytes; 0 = 4 MiB.
	MaxCwnd int
	// PacketQueue bounds the datagrams that are not uTP (DHT messages) waiting for a reader
	// of PacketConn; beyond it they are dropped, as a full socket buffer would. 0 = 1024.
	PacketQueue int
	// Logger gets connection-level events at Debug; nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxConns, 512)
	def(&c.MaxPending, 64)
	def(&c.RecvWindow, 4<<20)
	def(&c.SendBuffer, 4<<20)
	def(&c.MaxBuffered, 64<<20)
	def(&c.MaxSendBuffered, 64<<20)
	def(&c.MaxCwnd, 4<<20)
	def(&c.PacketQueue, 1024)
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// pendingWindow is the receive window of a connection Accept has not taken yet: enough for any
// handshake, little enough that MaxPending of them cost little.
const pendingWindow = 64 << 10

// maxPendingAge bounds how long an incoming connection waits for Accept: spoofed SYNs hold a
// backlog slot no longer than this.
const maxPendingAge = 10 * time.Second

// tickInterval is the resolution of the timers: retransmission, delayed acks, idle checks.
const tickInterval = 10 * time.Millisecond

// Sentinel errors.
var (
	// ErrTimeout: the peer stopped answering (see Config.IdleTimeout), or a SYN went unanswered.
	ErrTimeout = errors.New("utp: connection timed out")
	// ErrTooMany: Config.MaxConns connections are open.
	ErrTooMany = errors.New("utp: too many connections")
	// errReset wraps ECONNRESET so that callers that look for a reset by the peer find it.
	errReset   = fmt.Errorf("utp: connection reset by peer: %w", syscall.ECONNRESET)
	errRefused = fmt.Errorf("utp: connection refused: %w", syscall.ECONNREFUSED)
)

type connKey struct {
	addr netip.AddrPort
	id   uint16 // the connection id the peer puts in the packets it sends us
}

type datagram struct {
	b    []byte
	from net.Addr
}

// Socket runs uTP over one net.PacketConn, which it owns: it demultiplexes connections by
// (remote address, connection id), accepts incoming ones (net.Listener, once Listen was
// called) and dials out (DialContext), and hands every datagram that is not uTP to
// PacketConn, for the DHT node that shares the port.
//
// It runs two goroutines, waited for by Close: one reads the socket, one drives the timers.
// Connections have none of their own.
type Socket struct {
	pc   net.PacketConn
	cfg  Config
	log  *slog.Logger
	addr net.Addr

	mu        sync.Mutex // guards the fields below
	conns     map[connKey]*Conn
	backlog   []*Conn
	listening bool
	closed    bool
	notify    chan struct{} // closed and replaced when the backlog grows or the socket closes
	list      []*Conn       // scratch for tick, used by the timer goroutine only

	acceptDL *deadline
	buffered atomic.Int64 // received bytes buffered by all connections

	sent      atomic.Int64  // bytes held for sending by all connections (Config.MaxSendBuffered)
	sentWait  atomic.Int32  // writers waiting for room in that budget
	sentMu    sync.Mutex    // guards sentFreed; a leaf lock, taken under Conn.mu
	sentFreed chan struct{} // closed and replaced when room is freed while writers wait

	other   chan datagram // non-uTP datagrams for PacketConn
	otherDL *deadline
	pcOnce  sync.Once
	pcView  *packetConn

	resetMu     sync.Mutex // guards the RESET budget
	resetTokens float64
	resetLast   time.Time

	wake chan struct{} // the timer goroutine idles on it while there is no connection
	done chan struct{}
	wg   sync.WaitGroup
	bufs sync.Pool
}

// NewSocket starts uTP on pc. The Socket owns pc: Close closes it.
func NewSocket(pc net.PacketConn, cfg Config) (*Socket, error) {
	if pc == nil {
		return nil, errors.New("utp: nil PacketConn")
	}
	cfg = cfg.withDefaults()
	s := &Socket{
		pc: pc, cfg: cfg, log: cfg.Logger, addr: pc.LocalAddr(),
		conns:     make(map[connKey]*Conn),
		notify:    make(chan struct{}),
		sentFreed: make(chan struct{}),
		acceptDL:  newDeadline(),
		other:     make(chan datagram, cfg.PacketQueue),
		otherDL:   newDeadline(),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	s.bufs.New = func() any { b := make([]byte, 0, maxPacket); return &b }
	s.wg.Add(2)
	go s.readLoop()
	go s.timerLoop()
	return s, nil
}

// maxPacket is the largest datagram we send; what we read may be up to 64 KiB.
const maxPacket = headerLen + 2 + maxSACKLen + mss

// mss is the payload of a full data packet: the whole datagram stays under 1500-byte MTUs with
// IPv6 and UDP headers.
const mss = 1380

// Listen makes the socket accept incoming connections; before it, SYNs are refused.
func (s *Socket) Listen() {
	s.mu.Lock()
	s.listening = true
	s.mu.Unlock()
}

// Addr is the local address of the socket (net.Listener).
func (s *Socket) Addr() net.Addr { return s.addr }

// LocalAddrPort is the local address of the socket.
func (s *Socket) LocalAddrPort() netip.AddrPort { return addrPortOf(s.addr) }

// SetDeadline makes Accept fail with a timeout from t on (a past t: at once, unblocking a
// waiting Accept); the zero time clears it.
func (s *Socket) SetDeadline(t time.Time) error {
	s.acceptDL.set(t)
	return nil
}

// Accept waits for the next incoming connection (net.Listener). Call Listen first.
func (s *Socket) Accept() (net.Conn, error) {
	for {
		dl := s.acceptDL.wait()
		if closedChan(dl) {
			return nil, &net.OpError{Op: "accept", Net: "utp", Addr: s.addr, Err: os.ErrDeadlineExceeded}
		}
		c, notify, err := s.popBacklog()
		if c != nil {
			c.acceptedNow()
			return c, nil
		}
		if err != nil {
			return nil, err
		}
		select {
		case <-notify:
		case <-dl:
		}
	}
}

// popBacklog takes the oldest pending connection, or returns the channel to wait on.
func (s *Socket) popBacklog() (*Conn, chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, net.ErrClosed
	}
	if len(s.backlog) == 0 {
		return nil, s.notify, nil
	}
	c := s.backlog[0]
	s.backlog[0] = nil
	s.backlog = s.backlog[1:]
	return c, nil, nil
}

func (s *Socket) broadcastLocked() {
	close(s.notify)
	s.notify = make(chan struct{})
}

// DialContext opens a uTP connection to addr. It returns when the peer answers the SYN, ctx
// ends (ctx.Err()), the peer refuses (an error wrapping ECONNREFUSED), or the SYN was sent
// three times unanswered (ErrTimeout).
func (s *Socket) DialContext(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, net.ErrClosed
	}
	if len(s.conns) >= s.cfg.MaxConns {
		s.mu.Unlock()
		return nil, ErrTooMany
	}
	var c *Conn
	for {
		id := uint16(rand.Uint32())
		if _, taken := s.conns[connKey{addr, id}]; !taken {
			c = newConn(s, addr, id, id+1)
			s.conns[connKey{addr, id}] = c
			break
		}
	}
	s.mu.Unlock()
	s.kick()
	c.mu.Lock()
	c.accepted = true
	c.state = stateSynSent
	c.seqNr = 1
	c.queueControlLocked(stSyn)
	out := c.collectLocked(time.Now())
	connected := c.connected
	c.mu.Unlock()
	s.transmit(c, out)
	select {
	case <-connected:
	case <-ctx.Done():
		c.abort(nil)
		return nil, ctx.Err()
	}
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		c.abort(nil)
		if errors.Is(err, syscall.ECONNRESET) {
			err = errRefused
		}
		return nil, fmt.Errorf("utp: dial %v: %w", addr, err)
	}
	return c, nil
}

// reserveSend takes up to n bytes of the socket's send budget and returns how many it got.
func (s *Socket) reserveSend(n int) int {
	if n <= 0 {
		return 0
	}
	budget := int64(s.cfg.MaxSendBuffered)
	for {
		cur := s.sent.Load()
		k := min(int64(n), budget-cur)
		if k <= 0 {
			return 0
		}
		if s.sent.CompareAndSwap(cur, cur+k) {
			return int(k)
		}
	}
}

// releaseSend gives n bytes back to the send budget and wakes writers waiting for it.
func (s *Socket) releaseSend(n int) {
	if n <= 0 {
		return
	}
	s.sent.Add(-int64(n))
	if s.sentWait.Load() > 0 {
		s.sentMu.Lock()
		close(s.sentFreed)
		s.sentFreed = make(chan struct{})
		s.sentMu.Unlock()
	}
}

// sendRoomWait registers a writer waiting for send budget: it returns a channel closed when
// room is freed (or nil when there is room already) and the function to call when done.
func (s *Socket) sendRoomWait() (<-chan struct{}, func()) {
	s.sentWait.Add(1)
	s.sentMu.Lock()
	ch := s.sentFreed
	s.sentMu.Unlock()
	done := func() { s.sentWait.Add(-1) }
	// Checked after registering: a release from now on closes ch.
	if s.sent.Load() < int64(s.cfg.MaxSendBuffered) {
		done()
		return nil, func() {}
	}
	return ch, done
}

// kick wakes the timer goroutine if it idles.
func (s *Socket) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close closes the socket and every connection on it (their calls fail with net.ErrClosed),
// and waits for its goroutines.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.broadcastLocked()
	close(s.done)
	s.mu.Unlock()
	err := s.pc.Close()
	s.wg.Wait()
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	clear(s.conns)
	s.backlog = nil
	s.mu.Unlock()
	for _, c := range conns {
		c.fail(net.ErrClosed, false)
	}
	s.acceptDL.stop()
	s.otherDL.stop()
	return err
}

// remove forgets c (its key is free again).
func (s *Socket) remove(c *Conn) {
	s.mu.Lock()
	removed := s.conns[c.key()] == c
	if removed {
		delete(s.conns, c.key())
	}
	for i, b := range s.backlog {
		if b == c {
			s.backlog = append(s.backlog[:i], s.backlog[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if removed && s.log.Enabled(context.Background(), slog.LevelDebug) {
		c.mu.Lock()
		st, err, srtt, cwnd := c.stats, c.err, c.srtt, c.cwnd
		c.mu.Unlock()
		s.log.Debug("utp: connection gone", "peer", c.remote, "err", err, "sent", st.sent, "resent", st.resent,
			"fast_lost", st.fastLost, "timeouts", st.timeouts, "srtt", srtt, "cwnd", cwnd)
	}
}

// readLoop reads the socket until it is closed: uTP packets go to their connections, the rest
// to PacketConn's queue.
func (s *Socket) readLoop() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	backoff := time.Millisecond
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				// Closed under us: nothing more will come. Park until Close.
				<-s.done
				return
			}
			// Transient (an ICMP error reported on the socket, say): pause and go on.
			t := time.NewTimer(backoff)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 100*time.Millisecond)
			continue
		}
		backoff = time.Millisecond
		b := buf[:n]
		if !looksUTP(b) {
			s.queueOther(b, from)
			continue
		}
		s.handlePacket(b, addrPortOf(from), time.Now())
	}
}

func (s *Socket) queueOther(b []byte, from net.Addr) {
	d := datagram{b: append([]byte(nil), b...), from: from}
	select {
	case s.other <- d:
	default: // full: dropped, as by a full socket buffer
	}
}

// handlePacket dispatches one uTP datagram.
func (s *Socket) handlePacket(b []byte, from netip.AddrPort, now time.Time) {
	h, payload, err := parse(b)
	if err != nil || !from.IsValid() {
		return
	}
	if h.typ == stSyn {
		s.handleSyn(&h, from, now)
		return
	}
	s.mu.Lock()
	c := s.conns[connKey{from, h.connID}]
	if c == nil && h.typ == stReset {
		// A RESET may carry the id the peer receives on (ours to send with) rather than the
		// one it sends with: look for the connection that sends with it.
		for _, k := range []uint16{h.connID + 1, h.connID - 1} {
			if x := s.conns[connKey{from, k}]; x != nil && x.sendID == h.connID {
				c = x
			}
		}
	}
	s.mu.Unlock()
	if c == nil {
		if h.typ != stReset {
			s.sendReset(from, h.connID, h.seq)
		}
		return
	}
	c.handle(&h, payload, now)
}

func (s *Socket) handleSyn(h *header, from netip.AddrPort, now time.Time) {
	key := connKey{from, h.connID + 1}
	s.mu.Lock()
	if c := s.conns[key]; c != nil {
		s.mu.Unlock()
		if c.sendID == h.connID {
			c.synAgain() // our answer was lost
		} else {
			s.sendReset(from, h.connID, h.seq) // collides with a connection of ours
		}
		return
	}
	if !s.listening || s.closed || len(s.backlog) >= s.cfg.MaxPending || len(s.conns) >= s.cfg.MaxConns {
		s.mu.Unlock()
		s.sendReset(from, h.connID, h.seq)
		return
	}
	c := newConn(s, from, h.connID+1, h.connID)
	c.state = stateConnected
	c.seqNr = uint16(rand.Uint32())
	c.ackNr = h.seq
	c.peerWnd = int(h.wnd)
	c.lastRecv = now
	c.created = now
	c.replyMicro = micros(now) - h.timestamp
	close(c.connected)
	s.conns[key] = c
	s.backlog = append(s.backlog, c)
	s.broadcastLocked()
	s.mu.Unlock()
	s.kick()
	c.synAgain()
}

// sendReset answers a packet of no connection of ours, within a budget of 100 a second (a
// RESET costs us as much as the packet that asked for it, but no more).
func (s *Socket) sendReset(to netip.AddrPort, connID, seq uint16) {
	now := time.Now()
	s.resetMu.Lock()
	s.resetTokens = min(100, s.resetTokens+now.Sub(s.resetLast).Seconds()*100)
	s.resetLast = now
	ok := s.resetTokens >= 1
	if ok {
		s.resetTokens--
	}
	s.resetMu.Unlock()
	if !ok {
		return
	}
	h := header{typ: stReset, connID: connID, timestamp: micros(now), seq: uint16(rand.Uint32()), ack: seq}
	var b [headerLen]byte
	_, _ = s.pc.WriteTo(appendPacket(b[:0], &h, nil), net.UDPAddrFromAddrPort(to))
}

// transmit sends what a connection collected, outside its lock.
func (s *Socket) transmit(c *Conn, ws []wire) {
	if len(ws) == 0 {
		return
	}
	bp := s.bufs.Get().(*[]byte)
	for i := range ws {
		w := &ws[i]
		w.h.timestamp = micros(time.Now())
		*bp = appendPacket((*bp)[:0], &w.h, w.payload)
		if _, err := s.pc.WriteTo(*bp, c.raddr); err != nil && errors.Is(err, net.ErrClosed) {
			break
		}
	}
	s.bufs.Put(bp)
}

// timerLoop drives retransmissions, delayed acks, keep-alives and idle timeouts.
func (s *Socket) timerLoop() {
	defer s.wg.Done()
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			if !s.tick(now) {
				// Nothing to time: sleep until a connection appears.
				select {
				case <-s.done:
					return
				case <-s.wake:
				}
			}
		}
	}
}

// tick runs each connection's timers; false when there is no connection.
func (s *Socket) tick(now time.Time) bool {
	s.mu.Lock()
	s.list = s.list[:0]
	for _, c := range s.conns {
		s.list = append(s.list, c)
	}
	// Pending connections nobody accepted in time are dropped (reset).
	var stale []*Conn
	for len(s.backlog) > 0 && now.Sub(s.backlog[0].created) > min(s.cfg.IdleTimeout, maxPendingAge) {
		stale = append(stale, s.backlog[0])
		s.backlog[0] = nil
		s.backlog = s.backlog[1:]
	}
	s.mu.Unlock()
	for _, c := range stale {
		c.abort(ErrTimeout)
	}
	for _, c := range s.list {
		out, gone := c.tick(now)
		s.transmit(c, out)
		if gone {
			s.remove(c)
		}
	}
	clear(s.list)
	return len(s.list) > 0
}

// PacketConn is the socket seen as a net.PacketConn carrying only what is not uTP: the DHT
// node reads and writes through it. Its Close ends its reads only; the Socket keeps running
// until its own Close.
func (s *Socket) PacketConn() net.PacketConn {
	s.pcOnce.Do(func() { s.pcView = &packetConn{s: s, closed: make(chan struct{})} })
	return s.pcView
}

type packetConn struct {
	s         *Socket
	closeOnce sync.Once
	closed    chan struct{}
}

func (p *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	dl := p.s.otherDL.wait()
	select {
	case d := <-p.s.other:
		return copy(b, d.b), d.from, nil
	default:
	}
	select {
	case d := <-p.s.other:
		return copy(b, d.b), d.from, nil
	case <-p.closed:
		return 0, nil, net.ErrClosed
	case <-p.s.done:
		return 0, nil, net.ErrClosed
	case <-dl:
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Addr: p.s.addr, Err: os.ErrDeadlineExceeded}
	}
}

func (p *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	return p.s.pc.WriteTo(b, addr)
}

func (p *packetConn) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

func (p *packetConn) LocalAddr() net.Addr { return p.s.addr }

func (p *packetConn) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }

func (p *packetConn) SetReadDeadline(t time.Time) error {
	p.s.otherDL.set(t)
	return nil
}

// SetWriteDeadline is accepted and ignored: a datagram write does not wait.
func (p *packetConn) SetWriteDeadline(time.Time) error { return nil }

// SetReadBuffer enlarges the shared socket's kernel buffer when it has one.
func (p *packetConn) SetReadBuffer(n int) error {
	if rb, ok := p.s.pc.(interface{ SetReadBuffer(int) error }); ok {
		return rb.SetReadBuffer(n)
	}
	return nil
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case nil:
		return ap
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// micros is the uTP clock: microseconds, wrapping at 32 bits.
func micros(t time.Time) uint32 { return uint32(t.UnixMicro()) }

var _ io.Closer = (*Socket)(nil)
