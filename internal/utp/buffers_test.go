package utp

import (
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
