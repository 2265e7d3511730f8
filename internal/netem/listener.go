package netem

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Listener wraps every conn it accepts in its link (each with its own seed: Link.Seed plus the
// conn's ordinal), and makes up for the TCP handshake the kernel did at loopback speed: nothing
// the dialer sends is delivered before an RTT plus the one-way delay after Accept. Accepted
// conns belong to the caller, as with net.Listener.
type Listener struct {
	net.Listener
	link atomic.Pointer[Link]
	n    atomic.Uint64
}

// NewListener wraps ln, which the Listener then owns.
func NewListener(ln net.Listener, l Link) *Listener {
	wl := &Listener{Listener: ln}
	wl.link.Store(&l)
	return wl
}

// SetLink changes the link of conns accepted from now on; conns already accepted keep theirs.
func (ln *Listener) SetLink(l Link) { ln.link.Store(&l) }

// Accept waits for the next conn and wraps it.
func (ln *Listener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l := *ln.link.Load()
	l.Seed += ln.n.Add(1)
	wc := NewConn(c, l)
	// The kernel completed the TCP handshake at loopback speed. On the emulated link the dialer's
	// connect would have returned one RTT later, so its first bytes arrive no earlier than an RTT
	// plus the one-way delay from now.
	wc.in.mu.Lock()
	wc.in.shaper.last = time.Now().Add(l.Send.Delay + 2*l.Recv.Delay)
	wc.in.mu.Unlock()
	return wc, nil
}

// Dialer dials TCP through a Link: a dial returns one emulated RTT after the real one, and
// addresses for which Dead reports true never answer (the dial waits until its context ends,
// like a SYN sent into a void).
type Dialer struct {
	Link   Link
	Dead   func(netip.AddrPort) bool // nil: none
	Dialer net.Dialer
	n      atomic.Uint64
}

// DialContext dials address on network ("tcp", "tcp4", "tcp6") and wraps the conn.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if d.Dead != nil {
		if ap, err := netip.ParseAddrPort(address); err == nil && d.Dead(ap) {
			<-ctx.Done()
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("netem: dead address: %w", ctx.Err())}
		}
	}
	c, err := d.Dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	// The TCP handshake took loopback time; on the emulated link connect returns one RTT later.
	if rtt := d.Link.Send.Delay + d.Link.Recv.Delay; rtt > 0 {
		t := time.NewTimer(rtt)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			c.Close()
			return nil, ctx.Err()
		}
	}
	l := d.Link
	l.Seed += d.n.Add(1)
	return NewConn(c, l), nil
}
