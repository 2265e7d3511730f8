package utp

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// rawPeer is a hand-written uTP peer on a plain UDP socket: it sends crafted packets and
// reads what comes back.
type rawPeer struct {
	t  *testing.T
	pc *net.UDPConn
	to net.Addr
}

func newRawPeer(t *testing.T, ip string, to net.Addr) *rawPeer {
	pc := listenUDP(t, ip)
	t.Cleanup(func() { pc.Close() })
	return &rawPeer{t: t, pc: pc, to: to}
}

func (p *rawPeer) send(h header, payload []byte) {
	p.t.Helper()
	h.timestamp = micros(time.Now())
	if h.wnd == 0 {
		h.wnd = 1 << 20
	}
	if _, err := p.pc.WriteTo(appendPacket(nil, &h, payload), p.to); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next uTP packet within d, or ok false.
func (p *rawPeer) recv(d time.Duration) (header, []byte, bool) {
	buf := make([]byte, 2048)
	p.pc.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := p.pc.ReadFrom(buf)
		if err != nil {
			return header{}, nil, false
		}
		h, payload, err := parse(buf[:n])
		if err == nil {
			h.sack = append([]byte(nil), h.sack...)
			return h, append([]byte(nil), payload...), true
		}
	}
}

func (s *Socket) numConns() (conns, pending int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), len(s.backlog)
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newSocket(t *testing.T, ip string, cfg Config) *Socket {
	s, err := NewSocket(listenUDP(t, ip), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A SYN flood against a socket nobody accepts from: at most MaxPending connections exist,
// the rest are answered with RESET, and the pending ones are dropped after IdleTimeout.
func TestSynFloodBounded(t *testing.T) {
	checkGoroutines(t)
	s := newSocket(t, "127.0.0.10", Config{MaxPending: 8, IdleTimeout: 2 * time.Second})
	s.Listen()
	p := newRawPeer(t, "127.0.0.11", s.Addr())
	for i := range 100 {
		p.send(header{typ: stSyn, connID: uint16(1000 + 2*i), seq: 1}, nil)
	}
	resets, states := 0, 0
	for {
		h, _, ok := p.recv(300 * time.Millisecond)
		if !ok {
			break
		}
		switch h.typ {
		case stReset:
			resets++
		case stState:
			states++
		}
	}
	if states != 8 || resets != 92 {
		t.Fatalf("100 SYNs got %d answers and %d RESETs, want 8 and 92", states, resets)
	}
	if c, pend := s.numConns(); c != 8 || pend != 8 {
		t.Fatalf("%d connections, %d pending; want 8, 8", c, pend)
	}
	waitUntil(t, 5*time.Second, "the unaccepted connections to be dropped", func() bool { c, _ := s.numConns(); return c == 0 })
}

// MaxConns bounds connections, accepted ones included.
func TestMaxConnsBounded(t *testing.T) {
	checkGoroutines(t)
	s := newSocket(t, "127.0.0.12", Config{MaxConns: 4})
	s.Listen()
	p := newRawPeer(t, "127.0.0.13", s.Addr())
	for i := range 4 {
		p.send(header{typ: stSyn, connID: uint16(10 * i), seq: 1}, nil)
		h, _, ok := p.recv(2 * time.Second)
		for ok && h.connID != uint16(10*i) { // the window update of the one accepted before
			h, _, ok = p.recv(2 * time.Second)
		}
		if !ok || h.typ != stState {
			t.Fatalf("SYN %d: answer %+v %v", i, h, ok)
		}
		if _, err := s.Accept(); err != nil {
			t.Fatal(err)
		}
	}
	p.send(header{typ: stSyn, connID: 500, seq: 1}, nil)
	h, _, ok := p.recv(2 * time.Second)
	for ok && h.connID != 500 { // the window updates of the accepted ones
		h, _, ok = p.recv(2 * time.Second)
	}
	if !ok || h.typ != stReset {
		t.Fatalf("fifth SYN: answer %v %v, want a RESET", h.typ, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := s.DialContext(ctx, addrPortOf(p.pc.LocalAddr())); !errors.Is(err, ErrTooMany) {
		t.Fatalf("dial beyond MaxConns: %v", err)
	}
}

// handshake opens a connection from the raw peer and returns the server side, accepted.
func handshake(t *testing.T, s *Socket, p *rawPeer, id uint16) (*Conn, uint16) {
	t.Helper()
	p.send(header{typ: stSyn, connID: id, seq: 1}, nil)
	h, _, ok := p.recv(2 * time.Second)
	for ok && h.connID != id { // acks of earlier connections
		h, _, ok = p.recv(2 * time.Second)
	}
	if !ok || h.typ != stState || h.ack != 1 {
		t.Fatalf("SYN answer %+v %v", h, ok)
	}
	nc, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return nc.(*Conn), h.seq - 1 // what we ack from now on
}

// A peer that sends far more than the window while nobody reads: the connection buffers at
// most RecvWindow, advertises a closed window, and drops packets beyond maxOOO.
func TestReceiveWindowBounded(t *testing.T) {
	checkGoroutines(t)
	const window = 64 << 10
	s := newSocket(t, "127.0.0.14", Config{RecvWindow: window})
	s.Listen()
	p := newRawPeer(t, "127.0.0.15", s.Addr())
	c, theirAck := handshake(t, s, p, 77)
	payload := make([]byte, mss)
	for i := range 200 { // 270 KiB in order
		p.send(header{typ: stData, connID: 78, seq: uint16(2 + i), ack: theirAck}, payload)
	}
	// Out of order, within and far beyond maxOOO.
	for _, seq := range []uint16{400, 2 + maxOOO + 10, 30000} {
		p.send(header{typ: stData, connID: 78, seq: seq, ack: theirAck}, payload)
	}
	var last header
	for {
		h, _, ok := p.recv(300 * time.Millisecond)
		if !ok {
			break
		}
		last = h
	}
	c.mu.Lock()
	buffered, ooo, wnd := c.rbufBytes+c.oooBytes, len(c.ooo), c.advertisedLocked()
	c.mu.Unlock()
	if buffered > window || s.buffered.Load() > window {
		t.Fatalf("buffered %d (socket %d), window %d", buffered, s.buffered.Load(), window)
	}
	if ooo != 0 {
		t.Fatalf("%d out-of-order packets kept past a full window", ooo)
	}
	if last.wnd >= mss || wnd >= mss {
		t.Fatalf("advertised window %d (now %d) with the buffer full", last.wnd, wnd)
	}
	if n := int(last.ack - 1); n*mss > window || n < window/mss-1 {
		t.Fatalf("acked %d packets of %d bytes with a %d window", n, mss, window)
	}
	// Reading drains the buffer and gives the budget back.
	buf := make([]byte, 1<<20)
	total := 0
	for total < buffered {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if got := s.buffered.Load(); got != 0 {
		t.Fatalf("socket still counts %d bytes buffered after the reads", got)
	}
	c.Close()
}

// The socket-wide budget caps what all connections buffer together.
func TestSocketBufferBudget(t *testing.T) {
	checkGoroutines(t)
	s := newSocket(t, "127.0.0.16", Config{MaxBuffered: 100 << 10})
	s.Listen()
	p := newRawPeer(t, "127.0.0.17", s.Addr())
	payload := make([]byte, mss)
	for k := range 3 {
		_, ack := handshake(t, s, p, uint16(100*k))
		for i := range 100 {
			p.send(header{typ: stData, connID: uint16(100*k + 1), seq: uint16(2 + i), ack: ack}, payload)
		}
	}
	for {
		if _, _, ok := p.recv(300 * time.Millisecond); !ok {
			break
		}
	}
	if got := s.buffered.Load(); got > 100<<10 {
		t.Fatalf("socket buffers %d bytes, budget %d", got, 100<<10)
	}
}

// A peer that answers the SYN and then goes silent: the writer's connection fails with
// ErrTimeout after IdleTimeout and is forgotten; a fully idle silent one after four times it.
func TestSilentPeerTimesOut(t *testing.T) {
	checkGoroutines(t)
	s := newSocket(t, "127.0.0.18", Config{IdleTimeout: 300 * time.Millisecond})
	p := newRawPeer(t, "127.0.0.19", s.Addr())
	dial := func() *Conn {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			c, err := s.DialContext(context.Background(), addrPortOf(p.pc.LocalAddr()))
			ch <- res{c, err}
		}()
		h, _, ok := p.recv(2 * time.Second)
		for ok && h.typ != stSyn { // retransmissions of an earlier connection
			h, _, ok = p.recv(2 * time.Second)
		}
		if !ok {
			t.Fatal("no SYN")
		}
		p.send(header{typ: stState, connID: h.connID, seq: 500, ack: h.seq}, nil)
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.c.(*Conn)
	}
	c := dial()
	if _, err := c.Write([]byte("anyone there?")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Read on a silent connection: %v", err)
	}
	waitUntil(t, 2*time.Second, "the connection to be forgotten", func() bool { n, _ := s.numConns(); return n == 0 })
	c.Close()

	idle := dial()
	_, err = idle.Read(make([]byte, 10))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Read on an idle silent connection: %v", err)
	}
	idle.Close()
}

// A packet from another address carrying a live connection's id is not that connection's:
// connections are keyed by (address, id).
func TestConnIDFromOtherAddressIgnored(t *testing.T) {
	checkGoroutines(t)
	a, b := pair(t, Config{}, nil)
	client, server := connect(t, a, b)
	sc := server.(*Conn)
	sc.mu.Lock() // the socket's reader writes ackNr
	recvID, sendID, next := sc.recvID, sc.sendID, sc.ackNr+1
	sc.mu.Unlock()
	attacker := newRawPeer(t, "127.0.0.20", b.Addr())
	// Data and a RESET, as if from the client, with the client's ids.
	attacker.send(header{typ: stData, connID: recvID, seq: next}, []byte("injected"))
	attacker.send(header{typ: stReset, connID: recvID}, nil)
	attacker.send(header{typ: stReset, connID: sendID}, nil)
	if h, _, ok := attacker.recv(time.Second); !ok || h.typ != stReset {
		t.Fatalf("attacker got %+v %v, want a RESET for an unknown connection", h, ok)
	}
	if _, err := client.Write([]byte("genuine")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 20)
	n, err := server.Read(buf)
	if err != nil || string(buf[:n]) != "genuine" {
		t.Fatalf("server read %q, %v; want the client's bytes only", buf[:n], err)
	}
	client.Close()
	server.Close()
}

// A selective ack of any length up to the 255 the length byte allows is parsed within the
// packet, and only bits covering packets in flight count.
func TestLongSACKHarmless(t *testing.T) {
	checkGoroutines(t)
	s := newSocket(t, "127.0.0.21", Config{})
	s.Listen()
	p := newRawPeer(t, "127.0.0.22", s.Addr())
	c, ack := handshake(t, s, p, 900)
	go c.Write(make([]byte, 10*mss))
	var first header
	for i := 0; i < 3; i++ {
		h, _, ok := p.recv(2 * time.Second)
		if !ok {
			t.Fatal("no data")
		}
		if h.typ == stData && first.seq == 0 {
			first = h
		}
	}
	sack := make([]byte, 252)
	for i := range sack {
		sack[i] = 0xff
	}
	raw := appendPacket(nil, &header{typ: stState, connID: 901, seq: ack + 1, ack: first.seq - 1, wnd: 1 << 20, sack: sack}, nil)
	binary.BigEndian.PutUint32(raw[4:], micros(time.Now()))
	p.pc.WriteTo(raw, s.Addr())
	time.Sleep(50 * time.Millisecond)
	c.mu.Lock()
	flight := c.flight
	c.mu.Unlock()
	if flight < 0 {
		t.Fatalf("flight %d after a huge SACK", flight)
	}
	c.Close()
}

var _ = netip.AddrPort{}
