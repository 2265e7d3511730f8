package utp

import (
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

const (
	stateSynSent   = iota // dialled, SYN unanswered
	stateConnected        // open (incoming connections start here)
	stateDone             // failed, reset or closed: waiting to be removed
)

const (
	maxOOO        = 1024                   // out-of-order packets kept beyond the next expected one
	minRTO        = 250 * time.Millisecond // floor of the retransmission timeout
	maxRTO        = 8 * time.Second
	initialRTO    = time.Second
	maxSynSends   = 4                // SYN transmissions before a dial gives up
	targetDelay   = 100_000          // LEDBAT target queueing delay, microseconds
	keepAliveIdle = 10 * time.Second // an idle connection sends an ack this often
	dupAckLimit   = 3
	maxBurst      = 16 // packets sent at once
)

// Addr is a uTP endpoint: an IP address and UDP port, with Network "utp".
type Addr struct{ netip.AddrPort }

func (Addr) Network() string { return "utp" }

// outPacket is a packet we sent (or will send) and the peer has not yet acknowledged.
type outPacket struct {
	typ      byte
	seq      uint16
	payload  []byte
	sentAt   time.Time
	tx       int    // transmissions so far
	txOrder  uint64 // Conn.txCount at the last transmission
	inFlight bool   // counted in flight: sent, not acked, sacked or declared lost
	sacked   bool
	resend   bool // declared lost: send again when the window allows
}

// connStats count events on a connection, for tests and benchmarks.
type connStats struct {
	sent, resent, fastLost, timeouts int
}

// wire is one packet to send, its header filled in under the lock (the timestamp at sending).
type wire struct {
	h       header
	payload []byte
}

// Conn is one uTP connection. It implements net.Conn; Read, Write and Close may be called
// from different goroutines at once.
type Conn struct {
	s              *Socket
	remote         netip.AddrPort
	raddr          *net.UDPAddr
	recvID, sendID uint16
	created        time.Time
	connected      chan struct{} // closed when the SYN is answered or the dial fails

	readDL, writeDL *deadline

	mu       sync.Mutex // guards everything below
	state    int
	err      error // why the connection ended (reads still drain what arrived first)
	userGone bool  // Close was called
	accepted bool  // taken by Accept, or dialled: the full receive window applies
	notify   chan struct{}

	// Sending.
	seqNr      uint16       // next sequence number
	unsent     []byte       // written, not yet packetized
	outq       []*outPacket // sent or queued, not cumulatively acked, in sequence order
	outBytes   int          // payload bytes in outq
	flight     int          // bytes in flight
	finQueued  bool
	finAcked   bool
	peerWnd    int
	cwnd       int
	ssthresh   int
	slowStart  bool
	lossCut    uint16 // no second cwnd cut for losses before this sequence number
	cutValid   bool
	dupAcks    int
	lastAck    uint16
	srtt       time.Duration
	rttvar     time.Duration
	rto        time.Duration
	rtoAt      time.Time // when the oldest packet in flight times out; zero: nothing timed
	baseDelay  [2]uint32 // minimum one-way delay samples, this and the previous minute
	baseMinute int64
	lastSend   time.Time
	txCount    uint64 // transmissions so far, numbering them in order
	rackTx     uint64 // the latest transmission among packets acknowledged (RACK)
	stats      connStats

	// Receiving.
	ackNr       uint16 // last sequence number received in order
	rbuf        [][]byte
	rbufBytes   int
	ooo         map[uint16][]byte
	oooBytes    int
	finRecv     bool
	finSeq      uint16
	eof         bool
	ackNow      bool // send an ack at once
	ackLater    int  // data packets received and not yet acked
	lastRecv    time.Time
	replyMicro  uint32 // our clock minus the peer's timestamp, on its last packet
	lingerUntil time.Time
}

func newConn(s *Socket, remote netip.AddrPort, recvID, sendID uint16) *Conn {
	now := time.Now()
	return &Conn{
		s: s, remote: remote, raddr: net.UDPAddrFromAddrPort(remote),
		recvID: recvID, sendID: sendID, created: now, lastRecv: now,
		connected: make(chan struct{}),
		readDL:    newDeadline(), writeDL: newDeadline(),
		notify: make(chan struct{}),
		cwnd:   4 * mss, ssthresh: s.cfg.MaxCwnd, slowStart: true,
		rto: initialRTO, peerWnd: mss,
	}
}

func (c *Conn) key() connKey { return connKey{c.remote, c.recvID} }

func (c *Conn) broadcastLocked() {
	close(c.notify)
	c.notify = make(chan struct{})
}

// window is what this connection may buffer of received data.
func (c *Conn) windowLocked() int {
	if !c.accepted {
		return min(pendingWindow, c.s.cfg.RecvWindow)
	}
	return c.s.cfg.RecvWindow
}

func (c *Conn) advertisedLocked() uint32 {
	return uint32(max(0, c.windowLocked()-c.rbufBytes-c.oooBytes))
}

// queueControlLocked queues a SYN or FIN: each takes a sequence number.
func (c *Conn) queueControlLocked(typ byte) {
	c.outq = append(c.outq, &outPacket{typ: typ, seq: c.seqNr, resend: true})
	c.seqNr++
}

// collectLocked returns what should go out now: packets declared lost, new data within the
// window, a FIN when all data is out, and an ack when one is due and nothing else carries it.
func (c *Conn) collectLocked(now time.Time) []wire {
	var out []wire
	if c.state == stateDone {
		return nil
	}
	window := min(c.cwnd, c.peerWnd)
	// At most maxBurst packets leave per call (an ack, a Write, a tick): a window that opens
	// wide at once would otherwise overflow the receiver's socket buffer in one burst.
	burst := 0
	fits := func(n int) bool {
		burst++
		return burst <= maxBurst && (c.flight == 0 || c.flight+n <= window)
	}
	for _, p := range c.outq {
		if !p.resend {
			continue
		}
		if !fits(len(p.payload)) {
			break
		}
		out = append(out, c.sendLocked(p, now))
	}
	if c.state == stateConnected {
		for len(c.unsent) > 0 {
			n := min(len(c.unsent), mss)
			if !fits(n) {
				break
			}
			p := &outPacket{typ: stData, seq: c.seqNr, payload: append([]byte(nil), c.unsent[:n]...)}
			c.seqNr++
			c.unsent = c.unsent[n:]
			c.outBytes += n
			c.outq = append(c.outq, p)
			out = append(out, c.sendLocked(p, now))
		}
		if len(c.unsent) == 0 {
			c.unsent = nil
			if c.userGone && !c.finQueued {
				c.finQueued = true
				c.queueControlLocked(stFin)
				p := c.outq[len(c.outq)-1]
				out = append(out, c.sendLocked(p, now))
			}
		}
	}
	if len(out) == 0 && (c.ackNow || c.ackLater > 0) && c.state == stateConnected {
		out = append(out, wire{h: c.headerLocked(stState, c.seqNr)})
		c.lastSend = now
	}
	c.ackNow, c.ackLater = false, 0
	return out
}

// sendLocked marks p sent now and returns it for the wire.
func (c *Conn) sendLocked(p *outPacket, now time.Time) wire {
	p.resend = false
	p.tx++
	if p.tx > 1 {
		c.stats.resent++
	}
	c.stats.sent++
	c.txCount++
	p.txOrder = c.txCount
	p.sentAt = now
	if !p.inFlight {
		p.inFlight = true
		c.flight += len(p.payload)
	}
	if c.rtoAt.IsZero() {
		c.rtoAt = now.Add(c.rto)
	}
	c.lastSend = now
	return wire{h: c.headerLocked(p.typ, p.seq), payload: p.payload}
}

func (c *Conn) headerLocked(typ byte, seq uint16) header {
	id := c.sendID
	if typ == stSyn {
		id = c.recvID
	}
	return header{typ: typ, connID: id, tsDiff: c.replyMicro, wnd: c.advertisedLocked(),
		seq: seq, ack: c.ackNr, sack: c.sackLocked()}
}

// sackLocked builds the selective ack of the out-of-order packets held, or nil.
func (c *Conn) sackLocked() []byte {
	if len(c.ooo) == 0 {
		return nil
	}
	var bits [maxSACKLen]byte
	n := 0
	for seq := range c.ooo {
		i := int(seq - c.ackNr - 2)
		if i < 0 || i >= 8*maxSACKLen {
			continue
		}
		bits[i/8] |= 1 << (i % 8)
		n = max(n, i/8+1)
	}
	if n == 0 {
		return nil
	}
	n = (n + 3) &^ 3
	return append([]byte(nil), bits[:n]...)
}

// handle processes one packet from the peer (the socket's read goroutine).
func (c *Conn) handle(h *header, payload []byte, now time.Time) {
	c.mu.Lock()
	if c.state == stateDone {
		c.mu.Unlock()
		return
	}
	c.lastRecv = now
	if h.typ == stReset {
		c.failLocked(errReset)
		c.mu.Unlock()
		c.s.remove(c)
		return
	}
	c.replyMicro = micros(now) - h.timestamp
	c.peerWnd = int(h.wnd)
	if c.state == stateSynSent {
		if h.typ != stState {
			// Only an answer to our SYN opens the connection.
			c.mu.Unlock()
			return
		}
		c.state = stateConnected
		c.ackNr = h.seq - 1
		close(c.connected)
	}
	c.ackedLocked(h, len(payload), now)
	switch h.typ {
	case stData:
		c.receiveLocked(h.seq, payload, false)
	case stFin:
		c.receiveLocked(h.seq, nil, true)
	}
	out := c.collectLocked(now)
	gone := c.goneLocked(now)
	c.broadcastLocked()
	c.mu.Unlock()
	c.s.transmit(c, out)
	if gone {
		c.s.remove(c)
	}
}

// acceptedNow gives a connection Accept took the full receive window and tells the peer at
// once: one that filled the small pending window would otherwise wait for its retransmission
// timeout or our next keep-alive before sending again.
func (c *Conn) acceptedNow() {
	c.mu.Lock()
	before := c.advertisedLocked()
	c.accepted = true
	var out []wire
	if c.advertisedLocked() > before && c.state == stateConnected {
		c.ackNow = true
		out = c.collectLocked(time.Now())
	}
	c.mu.Unlock()
	c.s.transmit(c, out)
}

// synAgain answers a SYN (again): an ack that tells the peer our sequence number.
func (c *Conn) synAgain() {
	c.mu.Lock()
	if c.state != stateConnected {
		c.mu.Unlock()
		return
	}
	c.ackNow = true
	out := c.collectLocked(time.Now())
	c.mu.Unlock()
	c.s.transmit(c, out)
}

// ackedLocked applies the peer's cumulative and selective acks: frees acknowledged packets,
// samples the round trip, grows or cuts the congestion window and marks lost packets.
func (c *Conn) ackedLocked(h *header, payloadLen int, now time.Time) {
	if len(c.outq) == 0 {
		return
	}
	first := c.outq[0].seq
	acked := 0
	if d := int(h.ack - first); d < len(c.outq) {
		acked = d + 1
	}
	ackedBytes, freed := 0, 0
	for _, p := range c.outq[:acked] {
		if !p.sacked {
			ackedBytes += len(p.payload)
		}
		if p.inFlight {
			p.inFlight = false
			c.flight -= len(p.payload)
		}
		if p.tx == 1 && !p.sacked { // a sacked one was sampled when the SACK came (Karn: never a resent one)
			c.rttSampleLocked(now.Sub(p.sentAt))
		}
		c.rackTx = max(c.rackTx, p.txOrder)
		if p.typ == stFin {
			c.finAcked = true
		}
		c.outBytes -= len(p.payload)
		freed += len(p.payload)
	}
	c.s.releaseSend(freed)
	if acked > 0 {
		clear(c.outq[:acked])
		c.outq = c.outq[acked:]
		c.dupAcks = 0
		c.rtoAt = time.Time{}
		if len(c.outq) > 0 && c.flight > 0 {
			c.rtoAt = now.Add(c.rto)
		}
	} else if h.typ == stState && payloadLen == 0 && h.ack == c.lastAck && c.flight > 0 {
		c.dupAcks++
	}
	c.lastAck = h.ack
	// Selective ack: bit i covers ack+2+i.
	lost := false
	if len(h.sack) > 0 && len(c.outq) > 0 {
		base := h.ack + 2 - c.outq[0].seq
		for i := 0; i < 8*len(h.sack); i++ {
			if h.sack[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			idx := int(base) + i
			if idx >= len(c.outq) || idx < 0 || int(uint16(idx)) != idx {
				break
			}
			p := c.outq[idx]
			if p.sacked {
				continue
			}
			p.sacked = true
			c.rackTx = max(c.rackTx, p.txOrder)
			if p.tx == 1 {
				c.rttSampleLocked(now.Sub(p.sentAt))
			}
			ackedBytes += len(p.payload)
			if p.inFlight {
				p.inFlight = false
				c.flight -= len(p.payload)
			}
			p.resend = false
		}
		// An unacked packet with three acknowledged ones after it is lost, unless it was sent
		// (again) after every packet acknowledged so far: then its answer may still come.
		later := 0
		for i := len(c.outq) - 1; i >= 0; i-- {
			p := c.outq[i]
			if p.sacked {
				later++
				continue
			}
			if later >= dupAckLimit && p.inFlight && p.txOrder < c.rackTx {
				c.lostLocked(p)
				lost = true
			}
		}
	}
	if c.dupAcks >= dupAckLimit && len(c.outq) > 0 && c.outq[0].inFlight && c.outq[0].txOrder < c.rackTx {
		c.dupAcks = 0
		c.lostLocked(c.outq[0])
		lost = true
	}
	if ackedBytes > 0 && !lost {
		c.growLocked(ackedBytes, h.tsDiff, now)
	}
}

// lostLocked declares p lost: it leaves the flight and is sent again; the window is cut once
// per window of data.
func (c *Conn) lostLocked(p *outPacket) {
	c.stats.fastLost++
	p.inFlight = false
	c.flight -= len(p.payload)
	p.resend = true
	if !c.cutValid || !seqLess(p.seq, c.lossCut) {
		c.cwnd = max(c.cwnd*7/10, 2*mss) // CUBIC's β: halving starves lossy long links
		c.ssthresh = c.cwnd
		c.slowStart = false
		c.lossCut, c.cutValid = c.seqNr, true
	}
}

func (c *Conn) rttSampleLocked(r time.Duration) {
	if c.srtt == 0 {
		c.srtt, c.rttvar = r, r/2
	} else {
		d := c.srtt - r
		if d < 0 {
			d = -d
		}
		c.rttvar = (3*c.rttvar + d) / 4
		c.srtt = (7*c.srtt + r) / 8
	}
	c.rto = min(max(c.srtt+4*c.rttvar, minRTO), maxRTO)
}

// growLocked is LEDBAT (RFC 6817) with a slow start: the window grows while the queueing delay
// the peer measures stays under the target and shrinks above it. The linear gain is one
// cwnd/8 per round trip at zero delay (libutp's 3000 bytes is slow to refill long fat links
// after a loss), capped at Config.MaxCwnd.
func (c *Conn) growLocked(acked int, delay uint32, now time.Time) {
	qdelay := 0
	if delay != 0 {
		minute := now.Unix() / 60
		if minute != c.baseMinute {
			c.baseMinute = minute
			c.baseDelay[1], c.baseDelay[0] = c.baseDelay[0], math.MaxUint32
		}
		if c.baseDelay[0] == 0 || delay < c.baseDelay[0] {
			c.baseDelay[0] = delay
		}
		base := min(c.baseDelay[0], c.baseDelay[1])
		if c.baseDelay[1] == 0 {
			base = c.baseDelay[0]
		}
		qdelay = int(int32(delay - base))
		if qdelay < 0 {
			qdelay = 0
		}
	}
	// Grow only when the window, not the application, limits the sending.
	if c.flight+acked+mss < c.cwnd && len(c.unsent) == 0 {
		return
	}
	if c.slowStart {
		if qdelay > targetDelay || c.cwnd+acked > c.ssthresh {
			c.slowStart = false
			c.ssthresh = c.cwnd
		} else {
			c.cwnd = min(c.cwnd+acked, c.s.cfg.MaxCwnd)
			return
		}
	}
	off := float64(targetDelay-qdelay) / targetDelay
	gain := off * float64(acked) / float64(c.cwnd) * float64(max(3000, c.cwnd/8))
	c.cwnd = min(max(c.cwnd+int(gain), 2*mss), c.s.cfg.MaxCwnd)
}

// receiveLocked takes a data packet (or the FIN) with sequence number seq.
func (c *Conn) receiveLocked(seq uint16, payload []byte, fin bool) {
	d := seq - c.ackNr
	if d == 0 || d >= 0x8000 || c.eof {
		c.ackNow = true // a duplicate: our ack was lost
		return
	}
	if fin {
		c.finRecv, c.finSeq = true, seq
	}
	if d == 1 {
		if !fin {
			if !c.keepLocked(payload) {
				c.ackNow = true
				return
			}
			c.ackNr = seq
		}
		for {
			if p, ok := c.ooo[c.ackNr+1]; ok {
				delete(c.ooo, c.ackNr+1)
				c.oooBytes -= len(p)
				c.rbuf = append(c.rbuf, p)
				c.rbufBytes += len(p)
				c.ackNr++
				continue
			}
			if c.finRecv && c.ackNr+1 == c.finSeq {
				c.ackNr = c.finSeq
				c.eof = true
				c.ackNow = true
			}
			break
		}
		c.ackLater++
		if c.ackLater >= 2 {
			c.ackNow = true
		}
		return
	}
	c.ackNow = true
	if fin || d > maxOOO {
		return
	}
	if _, dup := c.ooo[seq]; dup {
		return
	}
	if c.rbufBytes+c.oooBytes+len(payload) > c.windowLocked() || !c.reserveLocked(len(payload)) {
		return
	}
	if c.ooo == nil {
		c.ooo = make(map[uint16][]byte)
	}
	p := append([]byte(nil), payload...)
	c.ooo[seq] = p
	c.oooBytes += len(p)
}

// keepLocked appends an in-order payload to the read buffer, or reports that the window or the
// socket's budget has no room for it.
func (c *Conn) keepLocked(payload []byte) bool {
	if len(payload) == 0 {
		return true
	}
	if c.userGone {
		return true // nobody will read it: acknowledge and drop
	}
	if c.rbufBytes+c.oooBytes+len(payload) > c.windowLocked() || !c.reserveLocked(len(payload)) {
		return false
	}
	c.rbuf = append(c.rbuf, append([]byte(nil), payload...))
	c.rbufBytes += len(payload)
	return true
}

func (c *Conn) reserveLocked(n int) bool {
	if c.s.buffered.Add(int64(n)) > int64(c.s.cfg.MaxBuffered) {
		c.s.buffered.Add(-int64(n))
		return false
	}
	return true
}

// tick runs the connection's timers: it reports what to send and whether to forget it.
func (c *Conn) tick(now time.Time) ([]wire, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateDone {
		return nil, true
	}
	silent := now.Sub(c.lastRecv)
	waiting := c.state == stateSynSent || c.flight > 0 || len(c.outq) > 0
	if (waiting && silent > c.s.cfg.IdleTimeout) || silent > 4*c.s.cfg.IdleTimeout {
		c.failLocked(ErrTimeout)
		c.broadcastLocked()
		return nil, true
	}
	if c.goneLocked(now) {
		return nil, true
	}
	if !c.rtoAt.IsZero() && now.After(c.rtoAt) {
		c.rtoAt = time.Time{}
		if c.state == stateSynSent && len(c.outq) > 0 && c.outq[0].tx >= maxSynSends {
			c.failLocked(ErrTimeout)
			c.broadcastLocked()
			return nil, true
		}
		// Everything in flight is presumed lost; start again from one packet.
		c.stats.timeouts++
		for _, p := range c.outq {
			if p.inFlight {
				p.inFlight = false
				c.flight -= len(p.payload)
				p.resend = true
			}
		}
		c.ssthresh = max(c.cwnd/2, 2*mss)
		c.cwnd = mss
		c.slowStart = true
		c.rto = min(2*c.rto, maxRTO)
		c.lossCut, c.cutValid = c.seqNr, true
	}
	if c.ackLater > 0 && c.state == stateConnected {
		c.ackNow = true
	}
	if c.state == stateConnected && now.Sub(c.lastSend) > keepAliveIdle {
		c.ackNow = true
	}
	out := c.collectLocked(now)
	if len(out) > 0 {
		c.broadcastLocked() // window space may have opened for writers
	}
	return out, false
}

// goneLocked reports whether the connection is finished and can be forgotten: closed by the
// user, and its FIN acknowledged (and the peer's received) or its linger time over.
func (c *Conn) goneLocked(now time.Time) bool {
	if c.state == stateDone {
		return true
	}
	if !c.userGone {
		return false
	}
	if (c.finAcked && c.eof) || now.After(c.lingerUntil) {
		c.state = stateDone
		c.releaseLocked()
		return true
	}
	return false
}

// failLocked ends the connection with err (what Read and Write report from now on).
func (c *Conn) failLocked(err error) {
	if c.err == nil {
		c.err = err
	}
	c.state = stateDone
	c.releaseLocked()
	if !closedChan(c.connected) {
		close(c.connected)
	}
}

// releaseLocked gives back what the connection buffered for sending and, if it will not be read
// any more, what it received.
func (c *Conn) releaseLocked() {
	c.s.releaseSend(c.outBytes + len(c.unsent))
	c.outq, c.unsent, c.flight, c.outBytes = nil, nil, 0, 0
	c.s.buffered.Add(-int64(c.oooBytes))
	c.ooo, c.oooBytes = nil, 0
	if c.userGone {
		c.s.buffered.Add(-int64(c.rbufBytes))
		c.rbuf, c.rbufBytes = nil, 0
	}
}

// fail ends the connection from outside (the socket closing); reset sends the peer a RESET.
func (c *Conn) fail(err error, reset bool) {
	c.mu.Lock()
	live := c.state != stateDone
	c.failLocked(err)
	c.broadcastLocked()
	c.mu.Unlock()
	if live && reset {
		c.s.sendReset(c.remote, c.sendID, 0)
	}
	c.readDL.stop()
	c.writeDL.stop()
}

// abort drops the connection at once, telling the peer with a RESET.
func (c *Conn) abort(err error) {
	if err == nil {
		err = net.ErrClosed
	}
	c.mu.Lock()
	c.userGone = true
	c.mu.Unlock()
	c.fail(err, true)
	c.s.remove(c)
}

// Read reads what the peer sent, in order; io.EOF after its FIN.
func (c *Conn) Read(b []byte) (int, error) {
	for {
		c.mu.Lock()
		if c.userGone {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if c.rbufBytes > 0 {
			if len(b) == 0 {
				c.mu.Unlock()
				return 0, nil
			}
			n := 0
			for n < len(b) && len(c.rbuf) > 0 {
				k := copy(b[n:], c.rbuf[0])
				n += k
				if k == len(c.rbuf[0]) {
					c.rbuf[0] = nil
					c.rbuf = c.rbuf[1:]
				} else {
					c.rbuf[0] = c.rbuf[0][k:]
				}
			}
			wasShut := c.advertisedLocked() < mss
			c.rbufBytes -= n
			c.s.buffered.Add(-int64(n))
			if len(c.rbuf) == 0 {
				c.rbuf = nil
			}
			var out []wire
			if wasShut && c.advertisedLocked() >= mss && c.state == stateConnected {
				// The window reopens: tell the peer now rather than at its next probe.
				c.ackNow = true
				out = c.collectLocked(time.Now())
			}
			c.mu.Unlock()
			c.s.transmit(c, out)
			return n, nil
		}
		if c.eof {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, &net.OpError{Op: "read", Net: "utp", Addr: Addr{c.remote}, Err: err}
		}
		notify := c.notify
		c.mu.Unlock()
		dl := c.readDL.wait()
		if closedChan(dl) {
			return 0, &net.OpError{Op: "read", Net: "utp", Addr: Addr{c.remote}, Err: os.ErrDeadlineExceeded}
		}
		select {
		case <-notify:
		case <-dl:
		}
	}
}

// sendLimitLocked is what the connection may hold for sending: twice the congestion window
// keeps the window full while acks come back (and lets it grow), within Config.SendBuffer.
func (c *Conn) sendLimitLocked() int {
	return min(c.s.cfg.SendBuffer, max(minSendLimit, 2*c.cwnd))
}

// minSendLimit is the least a connection may hold for sending (below Config.SendBuffer): what
// a slow start needs for its first round trips.
const minSendLimit = 256 << 10

// Write queues b for sending, blocking while the connection holds its share of the send
// buffer (Config.SendBuffer) or the socket holds Config.MaxSendBuffered unacknowledged.
func (c *Conn) Write(b []byte) (int, error) {
	n := 0
	for {
		budgetFull := false
		c.mu.Lock()
		if c.userGone {
			c.mu.Unlock()
			return n, net.ErrClosed
		}
		if c.err != nil || c.state != stateConnected {
			err := c.err
			if err == nil {
				err = net.ErrClosed
			}
			c.mu.Unlock()
			return n, &net.OpError{Op: "write", Net: "utp", Addr: Addr{c.remote}, Err: err}
		}
		if room := c.sendLimitLocked() - c.outBytes - len(c.unsent); room > 0 && n < len(b) {
			k := c.s.reserveSend(min(room, len(b)-n))
			budgetFull = k == 0
			c.unsent = append(c.unsent, b[n:n+k]...)
			n += k
		}
		out := c.collectLocked(time.Now())
		notify := c.notify
		c.mu.Unlock()
		c.s.transmit(c, out)
		if n == len(b) {
			return n, nil
		}
		dl := c.writeDL.wait()
		if closedChan(dl) {
			return n, &net.OpError{Op: "write", Net: "utp", Addr: Addr{c.remote}, Err: os.ErrDeadlineExceeded}
		}
		var freed <-chan struct{}
		done := func() {}
		if budgetFull {
			// Other connections hold the socket's budget: wait for them too.
			if freed, done = c.s.sendRoomWait(); freed == nil {
				continue
			}
		}
		select {
		case <-notify:
		case <-freed:
		case <-dl:
		}
		done()
	}
}

// Close sends what is still queued and then a FIN, without waiting; Read and Write fail with
// net.ErrClosed from now on. The connection lingers (up to IdleTimeout, at most 10 s) until
// the peer acknowledges.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.userGone {
		c.mu.Unlock()
		return nil
	}
	c.userGone = true
	c.s.buffered.Add(-int64(c.rbufBytes))
	c.rbuf, c.rbufBytes = nil, 0
	now := time.Now()
	c.lingerUntil = now.Add(min(c.s.cfg.IdleTimeout, 10*time.Second))
	var out []wire
	gone := c.state != stateConnected
	if gone {
		c.failLocked(net.ErrClosed)
	} else {
		out = c.collectLocked(now)
	}
	c.broadcastLocked()
	c.mu.Unlock()
	c.s.transmit(c, out)
	c.readDL.stop()
	c.writeDL.stop()
	if gone {
		c.s.remove(c)
	}
	return nil
}

func (c *Conn) LocalAddr() net.Addr  { return Addr{c.s.LocalAddrPort()} }
func (c *Conn) RemoteAddr() net.Addr { return Addr{c.remote} }

func (c *Conn) SetDeadline(t time.Time) error {
	c.readDL.set(t)
	c.writeDL.set(t)
	return nil
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	c.readDL.set(t)
	return nil
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.writeDL.set(t)
	return nil
}
