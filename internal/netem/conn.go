package netem

import (
	"net"
	"os"
	"sync"
	"time"
)

// chunk is the largest piece a Write is cut into, so a rate cap paces a large write smoothly.
const chunk = 16 << 10

// Conn is a net.Conn seen through a Link. Create it with NewConn.
type Conn struct {
	inner     net.Conn
	out, in   *line
	rmu, wmu  sync.Mutex // serialise Read and Write calls, as a socket does
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // the two pumps
}

// NewConn wraps c (which the Conn then owns) in l and starts its two pump goroutines.
func NewConn(c net.Conn, l Link) *Conn {
	wc := &Conn{
		inner: c,
		out:   newLine(l.Send, l.Seed, 1),
		in:    newLine(l.Recv, l.Seed, 2),
		done:  make(chan struct{}),
	}
	wc.wg.Add(2)
	go wc.sendPump()
	go wc.recvPump()
	return wc
}

// Write queues b on the delay line; it blocks only while the line holds Dir.Buffer bytes.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	l := c.out
	written := 0
	for len(b) > 0 {
		n := min(len(b), chunk)
		l.mu.Lock()
		for {
			if l.closed {
				l.mu.Unlock()
				return written, net.ErrClosed
			}
			if l.err != nil {
				err := l.err
				l.mu.Unlock()
				return written, err
			}
			if !l.deadline.IsZero() && !time.Now().Before(l.deadline) {
				l.mu.Unlock()
				return written, os.ErrDeadlineExceeded
			}
			if l.bytes == 0 || l.bytes+n <= l.limit {
				break
			}
			ch, dl := l.wake, l.deadline
			l.mu.Unlock()
			wait(ch, dl, c.done)
			l.mu.Lock()
		}
		l.pushLocked(item{at: l.shaper.stamp(time.Now(), n), b: append([]byte(nil), b[:n]...)})
		l.mu.Unlock()
		b = b[n:]
		written += n
	}
	return written, nil
}

// sendPump hands each queued chunk to the real conn when its release time comes.
func (c *Conn) sendPump() {
	defer c.wg.Done()
	l := c.out
	for {
		l.mu.Lock()
		for l.lenLocked() == 0 && !l.closed {
			ch := l.wake
			l.mu.Unlock()
			wait(ch, time.Time{}, c.done)
			l.mu.Lock()
		}
		if l.closed {
			l.mu.Unlock()
			return
		}
		it := l.q[l.head] // only this goroutine pops, so the head stays put
		l.mu.Unlock()
		if time.Now().Before(it.at) {
			wait(nil, it.at, c.done)
			continue // re-check closed; the head is the same
		}
		_, err := c.inner.Write(it.b)
		l.mu.Lock()
		l.popLocked()
		if err != nil && l.err == nil {
			l.err = err
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// recvPump reads the real conn as fast as it delivers (while the line has room) and queues
// what arrives with its release time; the end of the stream is queued too.
func (c *Conn) recvPump() {
	defer c.wg.Done()
	l := c.in
	for {
		l.mu.Lock()
		for l.bytes >= l.limit && !l.closed {
			ch := l.wake
			l.mu.Unlock()
			wait(ch, time.Time{}, c.done)
			l.mu.Lock()
		}
		room := l.limit - l.bytes
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return
		}
		buf := make([]byte, min(room, 4*chunk))
		n, err := c.inner.Read(buf)
		l.mu.Lock()
		if n > 0 {
			l.pushLocked(item{at: l.shaper.stamp(time.Now(), n), b: buf[:n]})
		}
		if err != nil {
			if l.closed {
				err = net.ErrClosed
			}
			l.pushLocked(item{at: l.shaper.stamp(time.Now(), 0), err: err})
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Read returns bytes whose release time has come, waiting for them.
func (c *Conn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	l := c.in
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.closed {
			return 0, net.ErrClosed
		}
		now := time.Now()
		if !l.deadline.IsZero() && !now.Before(l.deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		var next time.Time
		if l.lenLocked() > 0 {
			it := &l.q[l.head]
			if !now.Before(it.at) {
				if len(it.b) == 0 && it.err != nil {
					return 0, it.err // left at the head: every later Read sees it too
				}
				if len(b) == 0 {
					return 0, nil
				}
				n := copy(b, it.b)
				it.b = it.b[n:]
				l.bytes -= n
				if len(it.b) == 0 {
					l.popLocked()
				} else {
					l.signalLocked()
				}
				return n, nil
			}
			next = it.at
		}
		ch := l.wake
		t := earliest(next, l.deadline)
		l.mu.Unlock()
		wait(ch, t, c.done)
		l.mu.Lock()
	}
}

// Close stops both pumps, drops what is still in the delay lines and closes the real conn.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.out.close()
		c.in.close()
		c.closeErr = c.inner.Close()
		c.wg.Wait()
	})
	return c.closeErr
}

func (c *Conn) LocalAddr() net.Addr  { return c.inner.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.inner.RemoteAddr() }

// SetDeadline sets both deadlines. Deadlines apply to the caller's side of the delay lines;
// the real conn has none.
func (c *Conn) SetDeadline(t time.Time) error {
	c.in.setDeadline(t)
	c.out.setDeadline(t)
	return c.closedErr()
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	c.in.setDeadline(t)
	return c.closedErr()
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.out.setDeadline(t)
	return c.closedErr()
}

func (c *Conn) closedErr() error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
		return nil
	}
}
