package netem

import (
	"net"
	"sync"
)

// memNet is an in-memory datagram network for tests inside a synctest bubble, where real
// sockets would make time run on the wall clock.
type memNet struct {
	mu    sync.Mutex
	conns map[string]*memPC
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memPkt struct {
	b    []byte
	from net.Addr
}

type memPC struct {
	net.PacketConn // nil: only the methods below are used
	addr           memAddr
	nw             *memNet
	ch             chan memPkt
	done           chan struct{}
	once           sync.Once
}

func (n *memNet) listen(name string) *memPC {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conns == nil {
		n.conns = map[string]*memPC{}
	}
	c := &memPC{addr: memAddr(name), nw: n, ch: make(chan memPkt, 1<<16), done: make(chan struct{})}
	n.conns[name] = c
	return c
}

func (c *memPC) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.ch:
		return copy(b, p.b), p.from, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

func (c *memPC) WriteTo(b []byte, to net.Addr) (int, error) {
	c.nw.mu.Lock()
	dst := c.nw.conns[to.String()]
	c.nw.mu.Unlock()
	if dst != nil {
		select {
		case dst.ch <- memPkt{append([]byte(nil), b...), c.addr}:
		default: // full: lost
		}
	}
	return len(b), nil
}

func (c *memPC) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *memPC) LocalAddr() net.Addr { return c.addr }
