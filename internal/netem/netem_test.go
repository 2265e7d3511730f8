package netem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// Tests that measure time run in a synctest bubble over in-memory pipes: the clock is fake and
// advances only when every goroutine waits, so the delays below are exact and the tests do not
// depend on how loaded the machine is.

func readN(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

// TestConnRoundTripsTakeTheLinkRTT: ten ping-pongs through one wrapped end with 30 ms out and
// 20 ms back take exactly ten round trips.
func TestConnRoundTripsTakeTheLinkRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := NewConn(a, Link{Send: Dir{Delay: 30 * time.Millisecond}, Recv: Dir{Delay: 20 * time.Millisecond}})
		defer c.Close()
		defer b.Close()
		go func() { // echo
			buf := make([]byte, 8)
			for {
				if _, err := io.ReadFull(b, buf); err != nil {
					return
				}
				if _, err := b.Write(buf); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		for i := range 10 {
			var msg [8]byte
			binary.BigEndian.PutUint64(msg[:], uint64(i))
			sent := time.Now()
			if _, err := c.Write(msg[:]); err != nil {
				t.Fatal(err)
			}
			if got := readN(t, c, 8); !bytes.Equal(got, msg[:]) {
				t.Fatalf("round %d: echo %x, want %x", i, got, msg)
			}
			if rtt := time.Since(sent); rtt != 50*time.Millisecond {
				t.Fatalf("round %d took %v, want the link's 50ms", i, rtt)
			}
		}
		if d := time.Since(start); d != 500*time.Millisecond {
			t.Fatalf("10 round trips took %v, want 500ms", d)
		}
	})
}

// TestConnLatencyDoesNotCapThroughput: 4 MiB written at once through a 100 ms one-way delay all
// arrive 100 ms later, not 100 ms per chunk (a delay line, not a sleep per read).
func TestConnLatencyDoesNotCapThroughput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := NewConn(a, Link{Send: Dir{Delay: 100 * time.Millisecond, Buffer: 8 << 20}})
		defer c.Close()
		defer b.Close()
		data := make([]byte, 4<<20)
		rand.NewChaCha8([32]byte{7}).Read(data)
		start := time.Now()
		go c.Write(data)
		got := readN(t, b, len(data))
		if !bytes.Equal(got, data) {
			t.Fatal("bytes changed on the way")
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("4 MiB (256 chunks) arrived after %v, want 100ms", d)
		}
	})
}

// TestConnRateCap: 2 MiB through an 8 MiB/s cap with a 64 KiB burst take (2 MiB - 64 KiB) / 8 MiB/s.
func TestConnRateCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := NewConn(a, Link{Send: Dir{Rate: 8 << 20, Burst: 64 << 10}})
		defer c.Close()
		defer b.Close()
		start := time.Now()
		go c.Write(make([]byte, 2<<20))
		readN(t, b, 2<<20)
		want := time.Duration(float64((2<<20)-(64<<10)) / float64(8<<20) * float64(time.Second))
		if d := time.Since(start); d < want-time.Millisecond || d > want+time.Millisecond {
			t.Fatalf("2 MiB at 8 MiB/s took %v, want %v", d, want)
		}
	})
}

// TestSharedBucketCapsTwoConns: two conns sharing one 4 MiB/s bucket move 2 MiB together in
// about half a second, not a quarter.
func TestSharedBucketCapsTwoConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bk := NewBucket(4<<20, 64<<10)
		start := time.Now()
		done := make(chan struct{}, 2)
		for range 2 {
			a, b := net.Pipe()
			c := NewConn(a, Link{Send: Dir{Bucket: bk}})
			defer c.Close()
			defer b.Close()
			go c.Write(make([]byte, 1<<20))
			go func() { io.CopyN(io.Discard, b, 1<<20); done <- struct{}{} }()
		}
		<-done
		<-done
		if d := time.Since(start); d < 450*time.Millisecond || d > 500*time.Millisecond {
			t.Fatalf("2 MiB over a shared 4 MiB/s cap took %v, want about 500ms", d)
		}
	})
}

// TestConnJitterKeepsOrder: with jitter nearly as large as the delay, chunks written 1 ms apart
// still arrive in order and intact, each no earlier than Delay-Jitter after it was written, and
// the average delay stays near Delay.
func TestConnJitterKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		const delay, jitter = 50 * time.Millisecond, 40 * time.Millisecond
		c := NewConn(a, Link{Send: Dir{Delay: delay, Jitter: jitter}, Seed: 3})
		defer c.Close()
		defer b.Close()
		const n = 500
		sentAt := make([]time.Time, n)
		go func() {
			for i := range n {
				var msg [16]byte
				binary.BigEndian.PutUint64(msg[:], uint64(i))
				binary.BigEndian.PutUint64(msg[8:], ^uint64(i))
				sentAt[i] = time.Now()
				c.Write(msg[:])
				time.Sleep(time.Millisecond)
			}
		}()
		var total time.Duration
		for i := range n {
			msg := readN(t, b, 16)
			if got := binary.BigEndian.Uint64(msg); got != uint64(i) || binary.BigEndian.Uint64(msg[8:]) != ^uint64(i) {
				t.Fatalf("message %d arrived as %d: stream reordered or corrupted", i, got)
			}
			d := time.Since(sentAt[i])
			if d < delay-jitter {
				t.Fatalf("message %d arrived after %v, less than %v", i, d, delay-jitter)
			}
			total += d
		}
		// Not reordering can only add delay; the mean stays within the jitter band.
		if mean := total / n; mean < delay-jitter/2 || mean > delay+jitter {
			t.Fatalf("mean delay %v, want about %v", mean, delay)
		}
	})
}

// TestConnEOFAfterData: the end of the stream comes after the bytes before it, delayed like them.
func TestConnEOFAfterData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := NewConn(a, Link{Recv: Dir{Delay: 10 * time.Millisecond}})
		defer c.Close()
		start := time.Now()
		go func() {
			b.Write([]byte("hello"))
			b.Close()
		}()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "hello" {
			t.Fatalf("got %q, %v; want hello and EOF", got, err)
		}
		if d := time.Since(start); d != 10*time.Millisecond {
			t.Fatalf("EOF after %v, want 10ms", d)
		}
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read after EOF: %v, want EOF again", err)
		}
	})
}

// TestConnDeadlines: a Read waiting for delayed bytes and a Write blocked on a full buffer both
// stop at their deadlines.
func TestConnDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := NewConn(a, Link{Send: Dir{Buffer: 64 << 10}, Recv: Dir{Delay: time.Second}})
		defer c.Close()
		defer b.Close()
		go b.Write([]byte("late"))
		start := time.Now()
		c.SetReadDeadline(start.Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("read deadline hit after %v", d)
		}
		c.SetReadDeadline(time.Time{})
		if got := readN(t, c, 4); string(got) != "late" {
			t.Fatalf("read %q after clearing the deadline", got)
		}
		// Nobody reads b, so the line fills (64 KiB queued, one chunk stuck in the pipe).
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := c.Write(make([]byte, 1<<20))
		if !errors.Is(err, os.ErrDeadlineExceeded) || n >= 1<<20 {
			t.Fatalf("write: %d, %v; want a deadline error", n, err)
		}
	})
}

// TestConnCloseUnblocks: Close wakes a blocked Read and Write and stops both pumps (the bubble
// fails if any goroutine is left).
func TestConnCloseUnblocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		c := NewConn(a, Link{Send: Dir{Buffer: 16 << 10, Delay: time.Hour}, Recv: Dir{Delay: time.Hour}})
		errs := make(chan error, 2)
		go func() { _, err := c.Read(make([]byte, 1)); errs <- err }()
		go func() { _, err := c.Write(make([]byte, 1<<20)); errs <- err }()
		go b.Write([]byte("x"))
		synctest.Wait()
		c.Close()
		for range 2 {
			if err := <-errs; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked call returned %v, want net.ErrClosed", err)
			}
		}
	})
}

// TestPacketLatencyAndOrder: datagrams are delayed by the sender's Send and the receiver's Recv
// delay and arrive whole.
func TestPacketLatencyAndOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mn memNet
		a := NewPacketConn(mn.listen("a"), Link{Send: Dir{Delay: 15 * time.Millisecond}, Recv: Dir{Delay: 15 * time.Millisecond}})
		b := NewPacketConn(mn.listen("b"), Link{Send: Dir{Delay: 35 * time.Millisecond}, Recv: Dir{Delay: 35 * time.Millisecond}})
		defer a.Close()
		defer b.Close()
		start := time.Now()
		for i := range 100 {
			a.WriteTo([]byte{byte(i), 1, 2, 3}, memAddr("b"))
		}
		buf := make([]byte, 100)
		for i := range 100 {
			n, from, err := b.ReadFrom(buf)
			if err != nil || n != 4 || buf[0] != byte(i) || from.String() != "a" {
				t.Fatalf("datagram %d: %x from %v, %v", i, buf[:n], from, err)
			}
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Fatalf("a->b took %v, want 15+35 ms", d)
		}
	})
}

// TestPacketLossRate: 10% loss over 20 000 datagrams with a fixed seed loses a binomially
// plausible share (within 5 standard deviations), and the same seed loses the same datagrams.
func TestPacketLossRate(t *testing.T) {
	run := func(seed uint64) []bool {
		var got []bool
		synctest.Test(t, func(t *testing.T) {
			var mn memNet
			a := NewPacketConn(mn.listen("a"), Link{Send: Dir{Loss: 0.1}, Seed: seed})
			b := mn.listen("b")
			defer a.Close()
			defer b.Close()
			const n = 20000
			for i := range n {
				var msg [4]byte
				binary.BigEndian.PutUint32(msg[:], uint32(i))
				a.WriteTo(msg[:], memAddr("b"))
			}
			synctest.Wait()
			got = make([]bool, n)
			buf := make([]byte, 4)
			for len(b.ch) > 0 {
				b.ReadFrom(buf)
				got[binary.BigEndian.Uint32(buf)] = true
			}
			st := a.Stats()
			if st.Sent+st.Lost != n {
				t.Fatalf("stats %+v do not add up to %d", st, n)
			}
		})
		return got
	}
	first := run(1)
	lost := 0
	for _, ok := range first {
		if !ok {
			lost++
		}
	}
	// mean 2000, sd sqrt(20000*0.1*0.9) ≈ 42
	if lost < 2000-5*42 || lost > 2000+5*42 {
		t.Fatalf("lost %d of 20000 at 10%% loss", lost)
	}
	again := run(1)
	for i := range first {
		if first[i] != again[i] {
			t.Fatalf("datagram %d: same seed, different fate", i)
		}
	}
	other := run(2)
	same := 0
	for i := range first {
		if first[i] == other[i] {
			same++
		}
	}
	if same == len(first) {
		t.Fatal("another seed lost exactly the same datagrams")
	}
}

// TestPacketDown: a node that is down drops what it is sent and sends nothing.
func TestPacketDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mn memNet
		a := NewPacketConn(mn.listen("a"), Link{})
		b := NewPacketConn(mn.listen("b"), Link{})
		defer a.Close()
		defer b.Close()
		b.SetDown(true)
		a.WriteTo([]byte("ping"), memAddr("b"))
		b.WriteTo([]byte("pong"), memAddr("a"))
		synctest.Wait()
		b.SetReadDeadline(time.Now().Add(time.Second))
		a.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := b.ReadFrom(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("down node read %v, want nothing", err)
		}
		if _, _, err := a.ReadFrom(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("down node's send arrived: %v", err)
		}
		b.SetDown(false)
		b.SetReadDeadline(time.Time{})
		a.WriteTo([]byte("ping"), memAddr("b"))
		if n, _, err := b.ReadFrom(make([]byte, 8)); err != nil || n != 4 {
			t.Fatalf("node back up read %d, %v", n, err)
		}
	})
}

// TestLoopbackBytesPreserved: 8 MiB each way between a netem Listener and a netem Dialer over
// real loopback TCP, with delay, jitter and a rate cap on both ends, arrive intact.
func TestLoopbackBytesPreserved(t *testing.T) {
	before := runtime.NumGoroutine()
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	shape := Link{Send: Dir{Delay: 2 * time.Millisecond, Jitter: 2 * time.Millisecond, Rate: 200 << 20}, Recv: Dir{Delay: 1 * time.Millisecond}}
	ln := NewListener(inner, shape)
	const size = 8 << 20
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{9}).Read(data)
	want := sha256.Sum256(data)

	type res struct {
		sum [32]byte
		err error
	}
	srv := make(chan res, 1)
	clientDone := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- res{err: err}
			return
		}
		defer c.Close()
		// Close drops what is still in the delay line: stay open until the client has it all.
		defer func() { <-clientDone }()
		go c.Write(data)
		h := sha256.New()
		_, err = io.CopyN(h, c, size)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		srv <- res{s, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &Dialer{Link: shape}
	c, err := d.DialContext(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go c.Write(data)
	h := sha256.New()
	if _, err := io.CopyN(h, c, size); err != nil {
		t.Fatalf("client read: %v", err)
	}
	close(clientDone)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("server->client bytes differ")
	}
	r := <-srv
	if r.err != nil || r.sum != want {
		t.Fatalf("client->server: %v, hash match %v", r.err, r.sum == want)
	}
	c.Close()
	ln.Close()
	checkGoroutines(t, before)
}

// TestDeadAddresses: a mute UDP address, a mute TCP listener, a listener that never accepts and a
// Dialer's dead address all fail to answer, and Close frees everything.
func TestDeadAddresses(t *testing.T) {
	before := runtime.NumGoroutine()
	lo := netip.MustParseAddrPort("127.0.0.1:0")

	du, err := ListenDead("udp4", lo, Mute)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(lo))
	if err != nil {
		t.Fatal(err)
	}
	pc.WriteToUDPAddrPort([]byte("ping"), du.Addr)
	pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := pc.ReadFrom(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("mute UDP address answered: %v", err)
	}
	pc.Close()

	for _, s := range []Silence{Mute, NoAccept} {
		dt, err := ListenDead("tcp4", lo, s)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp4", dt.Addr.String(), 5*time.Second)
		if err != nil {
			t.Fatalf("silence %d: dial: %v", s, err)
		}
		c.Write([]byte("hello"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("silence %d: dead TCP address answered: %v", s, err)
		}
		c.Close()
		dt.Close()
	}

	d := &Dialer{Dead: func(ap netip.AddrPort) bool { return ap.Port() == 9 }}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if c, err := d.DialContext(ctx, "tcp4", "127.0.0.1:9"); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial of a dead address: %v, %v", c, err)
	}
	du.Close()
	again, err := ListenDead("udp4", du.Addr, Mute)
	if err != nil {
		t.Fatalf("address not freed by Close: %v", err)
	}
	again.Close()
	checkGoroutines(t, before)
}

// checkGoroutines fails if more goroutines run than before, after giving exiting ones a moment.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	for range 100 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("%d goroutines left behind:\n%s", runtime.NumGoroutine()-before, buf[:runtime.Stack(buf, true)])
}

// TestPacketSetLink: a link changed at run time delays what is sent afterwards, and a socket
// closed under the PacketConn ends its reads instead of leaving them waiting.
func TestPacketSetLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mn memNet
		inner := mn.listen("b")
		a := NewPacketConn(mn.listen("a"), Link{})
		b := NewPacketConn(inner, Link{})
		defer a.Close()
		defer b.Close()
		b.SetLink(Link{Recv: Dir{Delay: 40 * time.Millisecond}})
		start := time.Now()
		a.WriteTo([]byte("x"), memAddr("b"))
		if _, _, err := b.ReadFrom(make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 40*time.Millisecond {
			t.Fatalf("after SetLink a datagram took %v, want 40ms", d)
		}
		inner.Close()
		if _, _, err := b.ReadFrom(make([]byte, 4)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read from a socket closed underneath: %v", err)
		}
	})
}

// pipeListener hands out the server ends of net.Pipe pairs, for Listener tests in a bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { close(l.done); return nil }
func (l *pipeListener) Addr() net.Addr { return memAddr("pipe") }

// TestListenerCountsTheTCPHandshake: bytes a dialer sends right after connecting reach the
// accepting side one RTT plus the one-way delay later, as on a real link, not just one way later.
func TestListenerCountsTheTCPHandshake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pl := &pipeListener{conns: make(chan net.Conn, 1), done: make(chan struct{})}
		ln := NewListener(pl, Symmetric(60*time.Millisecond, 0))
		defer ln.Close()
		srv, cli := net.Pipe()
		defer cli.Close()
		pl.conns <- srv
		start := time.Now()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go cli.Write([]byte("hi"))
		readN(t, c, 2)
		if d := time.Since(start); d != 90*time.Millisecond {
			t.Fatalf("first bytes after %v, want RTT 60ms + 30ms", d)
		}
		go cli.Write([]byte("more"))
		before := time.Now()
		readN(t, c, 4)
		if d := time.Since(before); d != 30*time.Millisecond {
			t.Fatalf("later bytes after %v, want the one-way 30ms", d)
		}
	})
}

// TestRelay: bytes through a relay in front of an echo server come back intact, a round trip
// takes at least the link's RTT plus the handshake's, and Close leaves nothing running.
func TestRelay(t *testing.T) {
	before := runtime.NumGoroutine()
	echo, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		c, err := echo.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	r, err := NewRelay(netip.MustParseAddrPort("127.0.0.1:0"), echo.Addr().(*net.TCPAddr).AddrPort(), Symmetric(40*time.Millisecond, 0))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp4", r.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	msg := bytes.Repeat([]byte("relay"), 100000)
	go c.Write(msg)
	got := readN(t, c, len(msg))
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes changed through the relay")
	}
	// Lower bound only: the link can make it slower, never faster.
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("echo through a 40 ms link (plus its handshake) took only %v", d)
	}
	c.Close()
	r.Close()
	echo.Close()
	<-echoDone
	checkGoroutines(t, before)
}

// TestPacketConnLoopback: two wrapped real UDP sockets exchange datagrams intact, and Close
// stops both pumps of each.
func TestPacketConnLoopback(t *testing.T) {
	before := runtime.NumGoroutine()
	listen := func() *PacketConn {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		return NewPacketConn(pc, Link{Send: Dir{Delay: time.Millisecond, Rate: 1 << 20}, Recv: Dir{Delay: time.Millisecond}})
	}
	a, b := listen(), listen()
	b.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := range 50 {
		msg := bytes.Repeat([]byte{byte(i)}, 100+i)
		if _, err := a.WriteTo(msg, b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		n, from, err := b.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], msg) || from.String() != a.LocalAddr().String() {
			t.Fatalf("datagram %d: %d bytes from %v, want %d from %v", i, n, from, len(msg), a.LocalAddr())
		}
	}
	a.Close()
	b.Close()
	if _, _, err := b.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	checkGoroutines(t, before)
}
