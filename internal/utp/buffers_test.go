package utp

import (
	"errors"
	"os"
	"testing"
	"time"
)

// A peer that filled the 64 KiB window of a connection nobody accepted yet resumes at once
// when Accept takes it: Accept sends a STATE that opens the full window. Before, nothing was
// sent until the next keep-alive (10 s), so the peer stalled until its own timeout.
func TestAcceptOpensWindow(t *testing.T) {
	checkGoroutines(t)
	s := newSocket(t, "127.0.0.23", Config{RecvWindow: 1 << 20})
	s.Listen()
	p := newRawPeer(t, "127.0.0.24", s.Addr())
	p.send(header{typ: stSyn, connID: 300, seq: 1}, nil)
	h, _, ok := p.recv(2 * time.Second)
	if !ok || h.typ != stState {
		t.Fatalf("SYN answer %+v %v", h, ok)
	}
	theirAck := h.seq - 1
	payload := make([]byte, mss)
	const sent = 60 // 81 KiB: more than the pending window
	for i := range sent {
		p.send(header{typ: stData, connID: 301, seq: uint16(2 + i), ack: theirAck}, payload)
	}
	var last header
	for {
		h, _, ok := p.recv(300 * time.Millisecond)
		if !ok {
			break
		}
		last = h
	}
	if last.wnd >= mss {
		t.Fatalf("pending connection advertises %d bytes after %d KiB", last.wnd, sent*mss>>10)
	}
	acked := last.ack
	c, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, _, ok = p.recv(2 * time.Second)
	if !ok || h.typ != stState || h.wnd < 512<<10 {
		t.Fatalf("after Accept the peer got %+v (ok %v), want a STATE opening the window", h, ok)
	}
	// The peer goes on from where the window stopped it: acknowledged without a resend.
	for i := range 10 {
		p.send(header{typ: stData, connID: 301, seq: acked + 1 + uint16(i), ack: theirAck}, payload)
	}
	waitUntil(t, 2*time.Second, "the new data to be acknowledged", func() bool {
		h, _, ok := p.recv(100 * time.Millisecond)
		return ok && h.ack == acked+10
	})
}

// Peers that never acknowledge: each connection holds at most minSendLimit (its congestion
// window stays small), all together at most Config.MaxSendBuffered; a Write beyond blocks
// until its deadline, and wakes when another connection fails and frees its share. Without
// the socket-wide budget, MaxConns connections would pin SendBuffer each.
func TestSendBudgetBounded(t *testing.T) {
	checkGoroutines(t)
	const budget = 1 << 20
	s := newSocket(t, "127.0.0.25", Config{SendBuffer: 4 << 20, MaxSendBuffered: budget, IdleTimeout: 3 * time.Second})
	s.Listen()
	p := newRawPeer(t, "127.0.0.26", s.Addr())
	const n = 8 // 8 × minSendLimit = 2 MiB wanted
	conns := make([]*Conn, n)
	for i := range conns {
		conns[i], _ = handshake(t, s, p, uint16(1000+10*i))
	}
	type res struct {
		n   int
		err error
	}
	results := make(chan res, n)
	for _, c := range conns {
		c.SetWriteDeadline(time.Now().Add(600 * time.Millisecond))
		go func() {
			k, err := c.Write(make([]byte, 4<<20))
			results <- res{k, err}
		}()
	}
	total := 0
	for range n {
		r := <-results
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write to a peer that never acks: %d bytes, %v; want a deadline error", r.n, r.err)
		}
		if r.n > minSendLimit {
			t.Fatalf("one connection took %d bytes with nothing acknowledged", r.n)
		}
		total += r.n
	}
	if total > budget || s.sent.Load() > budget {
		t.Fatalf("connections hold %d bytes (socket counts %d), budget %d", total, s.sent.Load(), budget)
	}
	if total < budget-mss {
		t.Fatalf("connections hold %d bytes, expected the budget of %d used", total, budget)
	}
	// One more connection gets nothing while the budget is used ...
	extra, _ := handshake(t, s, p, 2000)
	extra.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	if k, err := extra.Write(make([]byte, 64<<10)); k != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write with the budget used: %d, %v", k, err)
	}
	// ... and proceeds once another connection is reset and gives its share back.
	extra.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := extra.Write(make([]byte, 64<<10)); done <- err }()
	var victim int
	for i, c := range conns {
		c.mu.Lock()
		held := c.outBytes + len(c.unsent)
		c.mu.Unlock()
		if held >= 64<<10 {
			victim = i
			break
		}
	}
	p.send(header{typ: stReset, connID: uint16(1000 + 10*victim + 1)}, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked after another connection freed its share")
	}
	// Silent peers time out and every byte of the budget comes back.
	for _, c := range append(conns, extra) {
		c.Close()
	}
	waitUntil(t, 15*time.Second, "the send budget to be returned", func() bool { return s.sent.Load() == 0 })
}
