package utp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/netem"
)

// listenUDP binds a fresh UDP socket on ip (a 127.x address).
func listenUDP(t testing.TB, ip string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadBuffer(4 << 20)
	_ = pc.SetWriteBuffer(4 << 20)
	return pc
}

// pair starts two sockets, the second listening; wrap (optional) shapes each raw socket.
func pair(t testing.TB, cfg Config, wrap func(net.PacketConn) net.PacketConn) (a, b *Socket) {
	t.Helper()
	mk := func(ip string) *Socket {
		var pc net.PacketConn = listenUDP(t, ip)
		if wrap != nil {
			pc = wrap(pc)
		}
		s, err := NewSocket(pc, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b = mk("127.0.0.1"), mk("127.0.0.2")
	b.Listen()
	return a, b
}

// connect dials b from a and accepts it.
func connect(t testing.TB, a, b *Socket) (client, server net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := b.Accept()
		ch <- res{c, err}
	}()
	client, err := a.DialContext(ctx, b.LocalAddrPort())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	return client, r.c
}

// transfer sends n random bytes from w to r and checks that r reads exactly them, then EOF.
func transfer(t testing.TB, w, r net.Conn, n int) {
	t.Helper()
	data := make([]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	want := sha256.Sum256(data)
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		if err == nil {
			err = w.Close()
		}
		errc <- err
	}()
	h := sha256.New()
	got, err := io.Copy(h, r)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", got, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if got != int64(n) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("received %d bytes (want %d), digest match %v", got, n, bytes.Equal(h.Sum(nil), want[:]))
	}
}

// checkGoroutines fails when goroutines of this package outlive the test body.
func checkGoroutines(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			var ours []string
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "internal/utp.") && !strings.Contains(g, "checkGoroutines") && !strings.Contains(g, "testing.tRunner") {
					ours = append(ours, g)
				}
			}
			if len(ours) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines left behind:\n%s", strings.Join(ours, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestTransferLoopback(t *testing.T) {
	checkGoroutines(t)
	a, b := pair(t, Config{}, nil)
	c, s := connect(t, a, b)
	transfer(t, c, s, 16<<20)
	s.Close()
	// And the other way on a second connection.
	c2, s2 := connect(t, a, b)
	transfer(t, s2, c2, 1<<20)
	c2.Close()
}

func TestTransferLossyLink(t *testing.T) {
	checkGoroutines(t)
	seed := uint64(0)
	a, b := pair(t, Config{}, func(pc net.PacketConn) net.PacketConn {
		seed++
		d := netem.Dir{Delay: 20 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 0.01}
		return netem.NewPacketConn(pc, netem.Link{Send: d, Seed: seed})
	})
	c, s := connect(t, a, b)
	n := 16 << 20
	if testing.Short() {
		n = 2 << 20
	}
	transfer(t, c, s, n)
	s.Close()
}

func TestCloseSendsEOFBothWays(t *testing.T) {
	checkGoroutines(t)
	a, b := pair(t, Config{}, nil)
	c, s := connect(t, a, b)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello" {
		t.Fatalf("ReadAll = %q, %v; want hello, nil", got, err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
	s.Close()
}

func TestDeadlines(t *testing.T) {
	checkGoroutines(t)
	a, b := pair(t, Config{SendBuffer: 64 << 10}, nil)
	c, s := connect(t, a, b)
	defer c.Close()
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline: %v", err)
	}
	var ne net.Error
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Read(make([]byte, 10)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past deadline is not a net.Error timeout: %v", err)
	}
	// A cleared deadline: the read waits for data again.
	s.SetReadDeadline(time.Time{})
	go c.Write([]byte("x"))
	if n, err := s.Read(make([]byte, 10)); n != 1 || err != nil {
		t.Fatalf("Read after clearing: %d, %v", n, err)
	}
	// A writer the peer does not read from blocks once the window and send buffer are full,
	// until its deadline.
	c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Write(make([]byte, 8<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write into a full window: %v, want deadline exceeded", err)
	}
	// A deadline set in the past unblocks a waiting Read.
	done := make(chan error, 1)
	c2, s2 := connect(t, a, b)
	defer c2.Close()
	go func() { _, err := s2.Read(make([]byte, 1)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	s2.SetReadDeadline(time.Unix(1, 0))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read unblocked by a past deadline: %v", err)
	}
	s2.Close()
}

func TestSocketCloseUnblocksEverything(t *testing.T) {
	checkGoroutines(t)
	a, b := pair(t, Config{}, nil)
	c, s := connect(t, a, b)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(4)
	go func() { defer wg.Done(); _, err := c.Read(make([]byte, 1)); errs <- err }()
	_ = s // never read: the writer below blocks on a full window
	go func() { defer wg.Done(); _, err := c.Write(make([]byte, 16<<20)); errs <- err }()
	go func() { defer wg.Done(); _, err := b.Accept(); errs <- err }()
	go func() {
		defer wg.Done()
		_, _, err := a.PacketConn().ReadFrom(make([]byte, 100))
		errs <- err
	}()
	time.Sleep(50 * time.Millisecond)
	a.Close()
	b.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("after Close: %v, want net.ErrClosed", err)
		}
	}
	if _, err := a.DialContext(context.Background(), b.LocalAddrPort()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("dial on a closed socket: %v", err)
	}
}

func TestDialRefusedAndTimeout(t *testing.T) {
	checkGoroutines(t)
	a, b := pair(t, Config{}, nil)
	// A socket that does not listen answers a SYN with a RESET.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.DialContext(ctx, a.LocalAddrPort()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial to a socket not listening: %v, want refused", err)
	}
	// A port where nobody answers: ctx ends the dial.
	dead := listenUDP(t, "127.0.0.3")
	defer dead.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := a.DialContext(ctx2, addrPortOf(dead.LocalAddr())); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial to a silent port: %v", err)
	}
}

func TestPacketConnCarriesDHT(t *testing.T) {
	checkGoroutines(t)
	a, _ := pair(t, Config{}, nil)
	peer := listenUDP(t, "127.0.0.4")
	defer peer.Close()
	msg := []byte("d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe")
	if _, err := peer.WriteTo(msg, a.Addr()); err != nil {
		t.Fatal(err)
	}
	pc := a.PacketConn()
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := pc.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) || addrPortOf(from) != addrPortOf(peer.LocalAddr()) {
		t.Fatalf("ReadFrom = %q from %v, %v", buf[:n], from, err)
	}
	if _, err := pc.WriteTo([]byte("d1:y1:re"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "d1:y1:re" {
		t.Fatalf("reply: %q %v", buf[:n], err)
	}
	pc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := pc.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom with nothing queued: %v", err)
	}
}
