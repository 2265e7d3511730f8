package netem

import (
	"net"
	"sync"
	"time"
)

// item is one chunk (or datagram, or the end of a stream) in a delay line.
type item struct {
	at   time.Time // release time
	b    []byte
	addr net.Addr // datagram source or destination
	err  error    // the stream's end (EOF or read error); sticky at the head
}

// line is one direction's queue. Its mutex is never held across I/O or a wait.
type line struct {
	mu       sync.Mutex
	q        []item // FIFO from head
	head     int
	bytes    int           // bytes queued
	limit    int           // Dir.buffer()
	wake     chan struct{} // closed and replaced on every change
	deadline time.Time     // the caller side's read or write deadline
	err      error         // sticky write error (outgoing streams)
	closed   bool
	shaper   *shaper // used under mu, so stamps are in queue order
}

func newLine(d Dir, seed, stream uint64) *line {
	return &line{limit: d.buffer(), wake: make(chan struct{}), shaper: newShaper(d, seed, stream)}
}

func (l *line) signalLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

func (l *line) lenLocked() int { return len(l.q) - l.head }

func (l *line) pushLocked(it item) {
	if l.head > 0 && l.head == len(l.q) {
		l.q, l.head = l.q[:0], 0
	} else if l.head > 1024 && l.head*2 > len(l.q) {
		l.q = append(l.q[:0], l.q[l.head:]...)
		l.head = 0
	}
	l.q = append(l.q, it)
	l.bytes += len(it.b)
	l.signalLocked()
}

func (l *line) popLocked() item {
	it := l.q[l.head]
	l.q[l.head] = item{}
	l.head++
	l.bytes -= len(it.b)
	l.signalLocked()
	return it
}

func (l *line) setDeadline(t time.Time) {
	l.mu.Lock()
	l.deadline = t
	l.signalLocked()
	l.mu.Unlock()
}

func (l *line) close() {
	l.mu.Lock()
	l.closed = true
	l.signalLocked()
	l.mu.Unlock()
}

// wait blocks until ch is closed, the time t passes (zero: no time) or done is closed.
func wait(ch <-chan struct{}, t time.Time, done <-chan struct{}) {
	if t.IsZero() {
		select {
		case <-ch:
		case <-done:
		}
		return
	}
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ch:
	case <-done:
	case <-tm.C:
	}
}

// earliest is the earlier of two times, zero meaning none.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}
