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

// Silence says how a Dead endpoint fails to answer.
type Silence int

const (
	// Mute reads and drops whatever arrives: UDP datagrams vanish; TCP conns are accepted,
	// read and never written to.
	Mute Silence = iota
	// NoAccept (TCP only) listens and never accepts: the kernel completes handshakes up to its
	// backlog, so a dial succeeds and then nothing ever happens.
	NoAccept
)

// Dead is an address that never answers. Close stops its goroutines and frees the address.
type Dead struct {
	Addr netip.AddrPort

	pc     net.PacketConn
	ln     net.Listener
	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// ListenDead binds network ("udp", "udp4", "udp6", "tcp", "tcp4", "tcp6") on addr (port 0:
// any) and never answers there, in the way s says.
func ListenDead(network string, addr netip.AddrPort, s Silence) (*Dead, error) {
	d := &Dead{conns: map[net.Conn]struct{}{}}
	switch network {
	case "udp", "udp4", "udp6":
		if s != Mute {
			return nil, errors.New("netem: a dead UDP address can only be Mute")
		}
		pc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, fmt.Errorf("netem: dead: %w", err)
		}
		d.pc, d.Addr = pc, pc.LocalAddr().(*net.UDPAddr).AddrPort()
		d.wg.Add(1)
		go d.drain()
	case "tcp", "tcp4", "tcp6":
		ln, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(addr))
		if err != nil {
			return nil, fmt.Errorf("netem: dead: %w", err)
		}
		d.ln, d.Addr = ln, ln.Addr().(*net.TCPAddr).AddrPort()
		if s == Mute {
			d.wg.Add(1)
			go d.accept()
		}
	default:
		return nil, fmt.Errorf("netem: dead: unknown network %q", network)
	}
	return d, nil
}

func (d *Dead) drain() {
	defer d.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		if _, _, err := d.pc.ReadFrom(buf); errors.Is(err, net.ErrClosed) {
			return
		} else if err != nil {
			time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
		}
	}
}

func (d *Dead) accept() {
	defer d.wg.Done()
	acceptLoop(d.ln, func(c net.Conn) bool {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			c.Close()
			return false
		}
		d.conns[c] = struct{}{}
		d.wg.Add(1)
		d.mu.Unlock()
		go func() {
			defer d.wg.Done()
			_, _ = io.Copy(io.Discard, c)
			c.Close()
			d.mu.Lock()
			delete(d.conns, c)
			d.mu.Unlock()
		}()
		return true
	})
}

// Close frees the address, closes every conn it accepted and waits for its goroutines.
func (d *Dead) Close() error {
	d.mu.Lock()
	d.closed = true
	var err error
	if d.pc != nil {
		err = d.pc.Close()
	}
	if d.ln != nil {
		err = d.ln.Close()
	}
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
	return err
}
