package dht

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// guardedConn wraps the node's socket for the library's read loop. The library panics when
// ReadFrom fails before its Close (a transient ICMP error, or a socket closed under it), so this
// wrapper retries transient errors and reports an error only once the node itself closes. It also
// lets Close wait until the read loop has left ReadFrom, and runs the node's packet filter.
type guardedConn struct {
	net.PacketConn

	// filter, when set (before the library starts reading), sees every packet first and
	// reports whether the library should get it, and its length after any rewrite in place;
	// see inbound.go.
	filter func(b []byte, from netip.AddrPort) (int, bool)
	// out, when set, rewrites every packet the library writes (txid.go). Our own replies do
	// not pass here: the node writes them on the socket directly.
	out func(b []byte, to netip.AddrPort) []byte

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error

	// ReadFrom calls in progress. A counter under a mutex rather than a WaitGroup: the read
	// loop may start a new ReadFrom while Close waits, which a WaitGroup forbids.
	mu      sync.Mutex
	readers int
	idle    *sync.Cond // signalled when readers drops to 0
}

func newGuardedConn(pc net.PacketConn) *guardedConn {
	c := &guardedConn{PacketConn: pc, closed: make(chan struct{})}
	c.idle = sync.NewCond(&c.mu)
	return c
}

func (c *guardedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.mu.Lock()
	c.readers++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.readers--
		if c.readers == 0 {
			c.idle.Broadcast()
		}
		c.mu.Unlock()
	}()
	backoff := time.Millisecond
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err == nil {
			if c.filter != nil {
				var ok bool
				if n, ok = c.filter(b[:n], addrPortOf(addr)); !ok {
					continue
				}
			}
			return n, addr, nil
		}
		select {
		case <-c.closed:
			return 0, nil, net.ErrClosed
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			// Closed by someone else (a caller-supplied conn): nothing more will arrive. Park
			// until the node closes rather than letting the library panic.
			<-c.closed
			return 0, nil, net.ErrClosed
		}
		// Transient (for example ECONNREFUSED from an earlier send): pause briefly and retry.
		t := time.NewTimer(backoff)
		select {
		case <-c.closed:
			t.Stop()
			return 0, nil, net.ErrClosed
		case <-t.C:
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// WriteTo writes a packet of the library's, rewritten by out. It reports len(b) written when the
// rewritten packet went out whole: the library treats any other count as a short write.
func (c *guardedConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.out == nil {
		return c.PacketConn.WriteTo(b, addr)
	}
	p := c.out(b, addrPortOf(addr))
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil && n == len(p) {
		n = len(b)
	}
	return n, err
}

// Close closes the socket once; the library's own (asynchronous) Close call lands here too.
func (c *guardedConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.closeErr = c.PacketConn.Close()
	})
	return c.closeErr
}

// waitReaders blocks until no ReadFrom is in progress. Call after Close.
func (c *guardedConn) waitReaders() {
	c.mu.Lock()
	for c.readers > 0 {
		c.idle.Wait()
	}
	c.mu.Unlock()
}
