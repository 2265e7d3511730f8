package peersource

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// TestAcceptEarlyBounds: peers that connect before the swarm runs are handshaken and offered
// for the right infohashes only, at most MaxPerIP per IP (a failed handshake does not count)
// and MaxHandshakes held at once; Stop hands back the ones nobody took and leaves the listener
// open and without a deadline, for the swarm.
func TestAcceptEarlyBounds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.219.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ours, other := [20]byte{1}, [20]byte{2}
	e, err := AcceptEarly(context.Background(), AcceptConfig{Listener: ln, Hashes: [][20]byte{ours},
		MaxPerIP: 2, MaxHandshakes: 3})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dialled []*peerwire.Conn
	defer func() {
		for _, c := range dialled {
			c.Close()
		}
	}()
	dial := func(from string, ih [20]byte) bool {
		c, err := peerwire.Dial(ctx, addr, ih, peerwire.Options{LocalAddr: netip.MustParseAddr(from), Timeout: 10 * time.Second})
		if err != nil {
			return false
		}
		// A refused connection is closed before the handshake is answered.
		dialled = append(dialled, c)
		return true
	}
	steps := []struct {
		from string
		ih   [20]byte
		want bool
		why  string
	}{
		{"127.0.219.2", other, false, "a torrent that is not ours"},
		{"127.0.219.2", ours, true, "first from .2"},
		{"127.0.219.2", ours, true, "second from .2 (the failed handshake did not count)"},
		{"127.0.219.2", ours, false, "third from .2: over MaxPerIP"},
		{"127.0.219.3", ours, true, "first from .3"},
		{"127.0.219.4", ours, false, "three held, none taken: over MaxHandshakes"},
	}
	held := 0
	for _, st := range steps {
		if got := dial(st.from, st.ih); got != st.want {
			t.Fatalf("%s: handshake answered %v, want %v", st.why, got, st.want)
		}
		if st.want {
			held++
		}
		// A refused handshake is closed before its goroutine counts it out: the next dial
		// must not race that (CI once saw the failed one still counted against .2).
		waitFor(t, st.why+": counted out", func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.held == held
		})
	}
	var taken *peerwire.Conn
	select {
	case taken = <-e.Conns():
	case <-ctx.Done():
		t.Fatal("no connection offered")
	}
	defer taken.Close()
	if taken.InfoHash() != ours {
		t.Fatalf("offered a connection for %x", taken.InfoHash())
	}
	// The handshake goroutine counts the connection out just after handing it over.
	waitFor(t, "the taken connection counted out", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.held < 3
	})
	if !dial("127.0.219.4", ours) {
		t.Fatal("a connection was taken, so one more may be held; refused")
	}
	left := e.Stop()
	for _, c := range left {
		c.Close()
	}
	if len(left) != 3 {
		t.Fatalf("Stop handed back %d connections, want the 3 not taken", len(left))
	}
	// The listener is the swarm's now: still open, and no deadline left behind (Accept would
	// fail at once).
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("listener after Stop: %v", err)
	}
	c.Close()
}
