package peersource

import (
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// pipeListener is an in-memory listener (net.Pipe connections) with SetDeadline, so that
// AcceptEarly runs in a synctest bubble, on fake time.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex // guards dl and wake
	dl     time.Time
	wake   chan struct{} // closed and replaced when the deadline changes
	port   int           // the next client port
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{}), wake: make(chan struct{}), port: 40000}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		dl, wake := l.dl, l.wake
		l.mu.Unlock()
		var expire <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return nil, os.ErrDeadlineExceeded
			}
			expire = time.After(d)
		}
		select {
		case c := <-l.conns:
			return c, nil
		case <-l.closed:
			return nil, net.ErrClosed
		case <-wake:
		case <-expire:
		}
	}
}

func (l *pipeListener) SetDeadline(t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dl = t
	close(l.wake)
	l.wake = make(chan struct{})
	return nil
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6881} }

// remoteConn is a pipe end that says it comes from a TCP address.
type remoteConn struct {
	net.Conn
	from *net.TCPAddr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.from }

// dial connects from ip and runs the initiator's BEP 3 handshake for ih (no extensions). It
// returns our end, and whether the handshake was answered (a refused connection is closed
// first). The connection is a net.Pipe: ip is only the address the pipe says it comes from
// (documentation and private ranges in the tests), and nothing goes over any network.
func (l *pipeListener) dial(t *testing.T, ip netip.Addr, ih [20]byte) (net.Conn, bool) {
	t.Helper()
	ours, theirs := net.Pipe()
	l.mu.Lock()
	l.port++
	from := &net.TCPAddr{IP: ip.AsSlice(), Port: l.port}
	l.mu.Unlock()
	select {
	case l.conns <- remoteConn{theirs, from}:
	case <-time.After(time.Minute):
		t.Fatal("the listener accepts nothing")
	}
	hs := peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: ih, PeerID: [20]byte{'t', 'e', 's', 't'}})
	if _, err := ours.Write(hs); err != nil {
		ours.Close()
		return nil, false
	}
	var buf [peerwire.HandshakeLen]byte
	if _, err := io.ReadFull(ours, buf[:]); err != nil {
		ours.Close()
		return nil, false
	}
	return ours, true
}

// closers are what a test opened and closes at its end.
type closers []io.Closer

func (c *closers) add(cs ...io.Closer) { *c = append(*c, cs...) }

// close closes the last opened first (the listener last).
func (c *closers) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i].Close()
	}
}

// earlyOnPipe runs AcceptEarly on a new pipeListener with cfg (its Listener set here); the caller
// defers open.close(), which also closes the listener. Inside a synctest bubble: no network.
func earlyOnPipe(t *testing.T, cfg AcceptConfig) (*pipeListener, *Early, *closers) {
	t.Helper()
	l := newPipeListener()
	open := &closers{l}
	cfg.Listener = l
	e, err := AcceptEarly(t.Context(), cfg)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	return l, e, open
}

// TestAcceptEarlyPerIPWindow: a connection taken from AcceptEarly counts against its IP's
// MaxPerIP for PerIPWindow and not longer (a peer dropped by the fetch may come back, but not in
// a loop); other IPs are not held back meanwhile. On fake time.
func TestAcceptEarlyPerIPWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ours := [20]byte{1}
		l, e, open := earlyOnPipe(t, AcceptConfig{Hashes: [][20]byte{ours}, MaxPerIP: 2})
		defer open.close()
		a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		step := func(why string, ip netip.Addr, want bool) {
			t.Helper()
			c, ok := l.dial(t, ip, ours)
			if ok != want {
				t.Fatalf("%s: answered %v, want %v", why, ok, want)
			}
			if !ok {
				return
			}
			open.add(c)
			pc := <-e.Conns()
			open.add(pc)
		}
		step("first from a", a, true)
		step("second from a", a, true)
		step("third from a at once: two taken within the window", a, false)
		step("first from b", b, true)
		time.Sleep(PerIPWindow - time.Second)
		step("third from a a second before the window ends", a, false)
		time.Sleep(time.Second)
		step("third from a once the window has passed", a, true)
		step("fourth from a right after: the third counts now", a, true)
		step("fifth from a", a, false)
		for _, c := range e.Stop() {
			c.Close()
		}
	})
}

// TestAcceptEarlyRemembersBoundedIPs: at most maxIPs IPs are remembered for MaxPerIP; a new IP
// is refused while that many are within their window, and taken again once they have aged out.
func TestAcceptEarlyRemembersBoundedIPs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ours := [20]byte{1}
		l, e, open := earlyOnPipe(t, AcceptConfig{Hashes: [][20]byte{ours}})
		defer open.close()
		ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
		take := func(i int) bool {
			c, ok := l.dial(t, ip(i), ours)
			if !ok {
				return false
			}
			pc := <-e.Conns()
			open.add(c, pc)
			return true
		}
		for i := range maxIPs {
			if !take(i) {
				t.Fatalf("IP %d of %d refused", i, maxIPs)
			}
		}
		if take(maxIPs) {
			t.Fatalf("IP %d taken while %d others are remembered", maxIPs+1, maxIPs)
		}
		if !take(0) {
			t.Fatal("a remembered IP under its MaxPerIP refused")
		}
		time.Sleep(PerIPWindow)
		if !take(maxIPs) {
			t.Fatal("a new IP refused after the others aged out")
		}
		e.mu.Lock()
		n := len(e.perIP)
		e.mu.Unlock()
		if n > maxIPs {
			t.Fatalf("%d IPs remembered, at most %d allowed", n, maxIPs)
		}
		for _, c := range e.Stop() {
			c.Close()
		}
	})
}

// TestAcceptEarlyAdd: a torrent added by Add gets its own peers on its own channel, not on
// Conns; once removed, its peers are refused and a connection nobody took is closed. The first
// torrent's peers keep going to Conns.
func TestAcceptEarlyAdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		first, second := [20]byte{1}, [20]byte{2}
		l, e, open := earlyOnPipe(t, AcceptConfig{Hashes: [][20]byte{first}})
		defer open.close()
		a := netip.MustParseAddr("192.0.2.1")
		if c, ok := l.dial(t, a, second); ok {
			c.Close()
			t.Fatal("a torrent not added yet was answered")
		}
		conns, remove := e.Add([][20]byte{second})
		c, ok := l.dial(t, a, second)
		if !ok {
			t.Fatal("the added torrent's peer was refused")
		}
		open.add(c)
		synctest.Wait()
		select {
		case pc := <-e.Conns():
			pc.Close()
			t.Fatal("the added torrent's peer was offered on Conns")
		default:
		}
		pc := <-conns
		open.add(pc)
		if pc.InfoHash() != second {
			t.Fatalf("offered a connection for %x", pc.InfoHash())
		}
		// One more, not taken: remove closes it.
		c2, ok := l.dial(t, netip.MustParseAddr("192.0.2.2"), second)
		if !ok {
			t.Fatal("the added torrent's second peer was refused")
		}
		defer c2.Close()
		remove()
		if _, err := c2.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection nobody took was left open after remove")
		}
		if c, ok := l.dial(t, a, second); ok {
			c.Close()
			t.Fatal("a removed torrent's peer was answered")
		}
		c3, ok := l.dial(t, a, first)
		if !ok {
			t.Fatal("the first torrent's peer was refused")
		}
		open.add(c3)
		open.add(<-e.Conns())
		for _, c := range e.Stop() {
			c.Close()
		}
	})
}
