package netem

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxDatagram is the largest datagram the receive pump reads.
const maxDatagram = 64 << 10

// PacketConn is a net.PacketConn seen through a Link: datagrams are delayed, may be lost
// (Dir.Loss, decided by a generator seeded from Link.Seed), are paced by a rate cap, and are
// dropped when a direction's queue is full, as a socket buffer would. SetDown makes the
// endpoint vanish without closing its socket.
type PacketConn struct {
	inner     net.PacketConn
	out, in   *line
	down      atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	sent, lost, recvd, dropped atomic.Int64
}

// NewPacketConn wraps pc (which the PacketConn then owns) in l and starts its two pumps.
func NewPacketConn(pc net.PacketConn, l Link) *PacketConn {
	p := &PacketConn{
		inner: pc,
		out:   newLine(l.Send, l.Seed, 3),
		in:    newLine(l.Recv, l.Seed, 4),
		done:  make(chan struct{}),
	}
	p.wg.Add(2)
	go p.sendPump()
	go p.recvPump()
	return p
}

// SetDown switches the endpoint off (true) or on: while down, everything sent and received is
// dropped silently and the socket stays bound, so others see a node that never answers (as on
// the Internet) rather than a refused port.
func (p *PacketConn) SetDown(down bool) { p.down.Store(down) }

// SetLink changes the link from now on. Datagrams already queued keep their release times, and
// none sent later is released before them.
func (p *PacketConn) SetLink(l Link) {
	for _, x := range []struct {
		ln     *line
		d      Dir
		stream uint64
	}{{p.out, l.Send, 3}, {p.in, l.Recv, 4}} {
		x.ln.mu.Lock()
		last := x.ln.shaper.last
		x.ln.shaper = newShaper(x.d, l.Seed, x.stream)
		x.ln.shaper.last = last
		x.ln.limit = x.d.buffer()
		x.ln.signalLocked()
		x.ln.mu.Unlock()
	}
}

// PacketStats counts datagrams through a PacketConn.
type PacketStats struct {
	Sent, Lost        int64 // written by the caller: handed on, dropped by Loss
	Received, Dropped int64 // read from the socket: queued for the caller, dropped (down or queue full)
}

// Stats returns the counters so far.
func (p *PacketConn) Stats() PacketStats {
	return PacketStats{Sent: p.sent.Load(), Lost: p.lost.Load(), Received: p.recvd.Load(), Dropped: p.dropped.Load()}
}

// WriteTo queues a copy of b for addr and returns at once; a lost or dropped datagram is
// reported as sent, as UDP does.
func (p *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	l := p.out
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, net.ErrClosed
	}
	if !l.deadline.IsZero() && !time.Now().Before(l.deadline) {
		return 0, os.ErrDeadlineExceeded
	}
	if p.down.Load() || l.bytes+len(b) > l.limit {
		p.lost.Add(1)
		return len(b), nil
	}
	if l.shaper.drop() {
		p.lost.Add(1)
		return len(b), nil
	}
	l.pushLocked(item{at: l.shaper.stamp(time.Now(), len(b)), b: append([]byte(nil), b...), addr: addr})
	p.sent.Add(1)
	return len(b), nil
}

func (p *PacketConn) sendPump() {
	defer p.wg.Done()
	l := p.out
	for {
		l.mu.Lock()
		for l.lenLocked() == 0 && !l.closed {
			ch := l.wake
			l.mu.Unlock()
			wait(ch, time.Time{}, p.done)
			l.mu.Lock()
		}
		if l.closed {
			l.mu.Unlock()
			return
		}
		it := l.q[l.head]
		l.mu.Unlock()
		if time.Now().Before(it.at) {
			wait(nil, it.at, p.done)
			continue
		}
		if !p.down.Load() {
			_, _ = p.inner.WriteTo(it.b, it.addr) // a datagram that cannot be sent is lost
		}
		l.mu.Lock()
		l.popLocked()
		l.mu.Unlock()
	}
}

func (p *PacketConn) recvPump() {
	defer p.wg.Done()
	l := p.in
	backoff := time.Millisecond
	for {
		buf := make([]byte, maxDatagram)
		n, addr, err := p.inner.ReadFrom(buf)
		select {
		case <-p.done:
			return
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			// The socket was closed under us: nothing more will arrive.
			l.mu.Lock()
			l.err = err
			l.signalLocked()
			l.mu.Unlock()
			return
		}
		if err != nil {
			// A transient error (an ICMP report on some systems): pause and go on until Close.
			wait(nil, time.Now().Add(backoff), p.done)
			backoff = min(2*backoff, 100*time.Millisecond)
			continue
		}
		backoff = time.Millisecond
		l.mu.Lock()
		switch {
		case p.down.Load() || l.bytes+n > l.limit || l.shaper.drop():
			p.dropped.Add(1)
		default:
			p.recvd.Add(1)
			l.pushLocked(item{at: l.shaper.stamp(time.Now(), n), b: append([]byte(nil), buf[:n]...), addr: addr})
		}
		l.mu.Unlock()
	}
}

// ReadFrom returns the next datagram whose release time has come.
func (p *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	l := p.in
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.closed {
			return 0, nil, net.ErrClosed
		}
		now := time.Now()
		if !l.deadline.IsZero() && !now.Before(l.deadline) {
			return 0, nil, os.ErrDeadlineExceeded
		}
		var next time.Time
		if l.lenLocked() > 0 {
			if it := l.q[l.head]; !now.Before(it.at) {
				l.popLocked()
				return copy(b, it.b), it.addr, nil
			} else {
				next = it.at
			}
		} else if l.err != nil {
			return 0, nil, l.err
		}
		ch := l.wake
		t := earliest(next, l.deadline)
		l.mu.Unlock()
		wait(ch, t, p.done)
		l.mu.Lock()
	}
}

// Close stops both pumps, drops what is queued and closes the real socket.
func (p *PacketConn) Close() error {
	p.closeOnce.Do(func() {
		close(p.done)
		p.out.close()
		p.in.close()
		p.closeErr = p.inner.Close()
		p.wg.Wait()
	})
	return p.closeErr
}

func (p *PacketConn) LocalAddr() net.Addr { return p.inner.LocalAddr() }

func (p *PacketConn) SetDeadline(t time.Time) error {
	p.in.setDeadline(t)
	p.out.setDeadline(t)
	return nil
}

func (p *PacketConn) SetReadDeadline(t time.Time) error {
	p.in.setDeadline(t)
	return nil
}

func (p *PacketConn) SetWriteDeadline(t time.Time) error {
	p.out.setDeadline(t)
	return nil
}
