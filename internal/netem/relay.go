package netem

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Relay puts a TCP endpoint that cannot be wrapped in-process (a real client in another process)
// behind a Link: it listens on its own address through a Listener and joins every conn it
// accepts to a fresh conn to the target. Peers told the relay's address see the target as if
// over the link. Close stops everything it started.
type Relay struct {
	Addr   netip.AddrPort
	ln     *Listener
	target netip.AddrPort

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewRelay listens on addr (port 0: any) and relays to target through l (seen from the target:
// l.Send is what the target sends).
func NewRelay(addr, target netip.AddrPort, l Link) (*Relay, error) {
	inner, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("netem: relay: %w", err)
	}
	r := &Relay{
		Addr:   inner.Addr().(*net.TCPAddr).AddrPort(),
		ln:     NewListener(inner, l),
		target: target,
		conns:  map[net.Conn]struct{}{},
	}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// track registers c, or reports false (and closes c) once the relay is closing.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *Relay) accept() {
	defer r.wg.Done()
	acceptLoop(r.ln, func(c net.Conn) bool {
		if !r.track(c) {
			return false
		}
		r.wg.Add(1)
		go r.join(c)
		return true
	})
}

// acceptLoop gives each conn ln accepts to handle until ln is closed or handle returns false.
func acceptLoop(ln net.Listener, handle func(net.Conn) bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		if !handle(c) {
			return
		}
	}
}

// join dials the target for c and copies both ways until either side ends.
func (r *Relay) join(c net.Conn) {
	defer r.wg.Done()
	defer r.untrack(c)
	t, err := net.DialTimeout("tcp", r.target.String(), 10*time.Second)
	if err != nil || !r.track(t) { // track closes t when the relay is closing
		return
	}
	defer r.untrack(t)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(t, c)
	go cp(c, t)
	<-done
	// One side ended: end the other and wait for its copy.
	c.Close()
	t.Close()
	<-done
}

// Close stops listening, closes every relayed conn and waits.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	err := r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}
