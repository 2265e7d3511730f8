package peerwire

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestServeListenerLeavesListenerUsable: cancelling ServeListener returns at once and leaves a
// TCP listener open, without a deadline, for the next owner to accept on.
func TestServeListenerLeavesListenerUsable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan net.Conn, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ServeListener(ctx, ln, func(c net.Conn) { got <- c })
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	(<-got).Close()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return on cancel")
	}
	// The next owner accepts normally.
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c2, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept after ServeListener: %v", err)
	}
	c2.Close()
}
