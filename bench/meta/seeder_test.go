package meta

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
)

// hostIP is the address of seeder host i: 127.0.200+i/250.(1+i%250), clear of
// dhttest (127.0.1-2.x), realclient (127.0.100-104.x) and our clients.
func hostIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(200 + i/250), byte(1 + i%250)})
}

// seederHost is one loopback IP that serves info dicts over BEP 9 and
// announces them through its own DHT node, as a seeding client would.
type seederHost struct {
	ip   netip.Addr
	node *dht.Node

	mu     sync.Mutex // guards lns, conns and closed
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	served atomic.Int64 // ut_metadata data messages sent
}

// startHost starts host i with a DHT node bootstrapped from boot; t.Cleanup
// closes it.
func startHost(t testing.TB, i int, boot []netip.AddrPort) *seederHost {
	t.Helper()
	ip := hostIP(i)
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatalf("seeder host %v: %v", ip, err)
	}
	cfg := dhttest.Config()
	cfg.Conn, cfg.Bootstrap = pc, boot
	n, err := dht.New(cfg)
	if err != nil {
		pc.Close()
		t.Fatalf("seeder host %v: %v", ip, err)
	}
	h := &seederHost{ip: ip, node: n, conns: map[net.Conn]struct{}{}}
	t.Cleanup(h.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Bootstrap(ctx); err != nil {
		t.Fatalf("seeder host %v: bootstrap: %v", ip, err)
	}
	return h
}

// Serve starts a listener for info on the host and returns its address. One
// listener per torrent, because the BEP 10 handshake (sent before the peer's
// choice of torrent is known to peerwire.Accept's caller) carries the
// torrent's metadata_size.
func (h *seederHost) Serve(info []byte) (netip.AddrPort, error) {
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(h.ip, 0).String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("seeder listen: %w", err)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ln.Close()
		return netip.AddrPort{}, errors.New("seeder host closed")
	}
	h.lns = append(h.lns, ln)
	h.wg.Add(1)
	h.mu.Unlock()
	ih := sha1.Sum(info)
	go h.acceptLoop(ln, ih, info)
	return ln.Addr().(*net.TCPAddr).AddrPort(), nil
}

// Announce tells the DHT that the host serves ih on port.
func (h *seederHost) Announce(ctx context.Context, ih [20]byte, port uint16) error {
	return h.node.Announce(ctx, ih, int(port))
}

func (h *seederHost) acceptLoop(ln net.Listener, ih [20]byte, info []byte) {
	defer h.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			nc.Close()
			return
		}
		h.conns[nc] = struct{}{}
		h.wg.Add(1)
		h.mu.Unlock()
		go func() {
			defer h.wg.Done()
			h.serve(nc, ih, info)
			nc.Close()
			h.mu.Lock()
			delete(h.conns, nc)
			h.mu.Unlock()
		}()
	}
}

// serve answers ut_metadata requests on one connection until the peer
// leaves or stays silent for 30 s.
func (h *seederHost) serve(nc net.Conn, ih [20]byte, info []byte) {
	o := peerwire.Options{ExtHandshake: metadata.LocalExtHandshake(len(info)), Timeout: 10 * time.Second}
	c, err := peerwire.Accept(context.Background(), nc, func(x [20]byte) bool { return x == ih }, o)
	if err != nil {
		return
	}
	// A seeder tells the peer it has everything; metadata-only clients
	// ignore it, but some wait for a bitfield before talking.
	if c.SupportsFast() {
		_ = c.WriteMsg(peerwire.Message{ID: peerwire.HaveAll})
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		m, err := c.ReadMsg()
		if err != nil {
			return
		}
		if m.ID != peerwire.Extended || m.ExtID == 0 || int(m.ExtID) != c.LocalExt().M[metadata.ExtName] {
			continue
		}
		if err := metadata.Serve(c, info, m); err != nil {
			return
		}
		h.served.Add(1)
	}
}

// Close stops the listeners, the connections and the DHT node, and waits.
func (h *seederHost) Close() {
	h.mu.Lock()
	h.closed = true
	for _, ln := range h.lns {
		ln.Close()
	}
	for c := range h.conns {
		c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
	h.node.Close()
}
