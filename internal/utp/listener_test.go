package utp

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// The merged listener yields TCP and uTP connections, stops with a past deadline without
// closing anything (peerwire.ServeListener's hand-over), accepts again once it is cleared, and
// its Close leaves the uTP socket (the DHT's) running.
func TestListenerMergesTCPAndUTP(t *testing.T) {
	checkGoroutines(t)
	// A UDP port whose TCP twin is free (a few tries: something else may hold it).
	var sock *Socket
	var tcp net.Listener
	for try := 0; tcp == nil; try++ {
		sock = newSocket(t, "127.0.0.50", Config{})
		l, err := net.Listen("tcp", sock.LocalAddrPort().String())
		if err == nil {
			tcp = l
		} else if try == 20 {
			t.Fatalf("no UDP port with its TCP twin free: %v", err)
		}
	}
	ln, err := NewListener(tcp, sock)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr().String() != tcp.Addr().String() {
		t.Fatalf("Addr %v, want the TCP listener's %v", ln.Addr(), tcp.Addr())
	}
	client := newSocket(t, "127.0.0.51", Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	uc, err := client.DialContext(ctx, sock.LocalAddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	got, err := ln.Accept()
	if err != nil || got.RemoteAddr().Network() != "utp" {
		t.Fatalf("Accept = %v, %v; want the uTP connection", got, err)
	}
	got.Close()

	tc, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	got, err = ln.Accept()
	if err != nil || got.RemoteAddr().Network() != "tcp" {
		t.Fatalf("Accept = %v, %v; want the TCP connection", got, err)
	}
	got.Close()

	// A past deadline unblocks a waiting Accept with a timeout.
	errc := make(chan error, 1)
	go func() { _, err := ln.Accept(); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	ln.SetDeadline(time.Unix(1, 0))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Accept after a past deadline: %v", err)
	}
	ln.SetDeadline(time.Time{})
	uc2, err := client.DialContext(ctx, sock.LocalAddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer uc2.Close()
	if got, err = ln.Accept(); err != nil {
		t.Fatalf("Accept after clearing the deadline: %v", err)
	}
	got.Close()

	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if _, err := net.Dial("tcp", tcp.Addr().String()); err == nil {
		t.Fatal("the TCP listener is still open after Close")
	}
	// The socket still carries other traffic.
	peer := listenUDP(t, "127.0.0.52")
	defer peer.Close()
	peer.WriteTo([]byte("d1:y1:qe"), sock.Addr())
	pc := sock.PacketConn()
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := pc.ReadFrom(make([]byte, 100)); err != nil || n != 8 {
		t.Fatalf("the socket after the listener's Close: %d, %v", n, err)
	}
}
