package wan

import (
	"context"
	"crypto/sha1"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/netem"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
)

// envInt reads a non-negative integer knob, falling back to def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}

// median of ds (0 for none).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// metaSeeder is a peer that serves an info dict over BEP 9 behind a netem listener, and nothing
// else: all a metadata fetch needs.
type metaSeeder struct {
	Addr netip.AddrPort
	ln   *netem.Listener
	info []byte
	ih   [20]byte

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// startMetaSeeder listens on ip:0 behind link; t.Cleanup stops it.
func startMetaSeeder(t testing.TB, ip netip.Addr, info []byte, link netem.Link) *metaSeeder {
	t.Helper()
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatalf("meta seeder: %v", err)
	}
	s := &metaSeeder{
		Addr:  ln.Addr().(*net.TCPAddr).AddrPort(),
		ln:    netem.NewListener(ln, link),
		info:  info,
		ih:    sha1.Sum(info),
		conns: map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.Close)
	return s
}

func (s *metaSeeder) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(nc)
			nc.Close()
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

// serve answers ut_metadata requests on one conn until the peer leaves or is silent for 30 s.
func (s *metaSeeder) serve(nc net.Conn) {
	o := peerwire.Options{ExtHandshake: metadata.LocalExtHandshake(len(s.info)), Timeout: 10 * time.Second}
	c, err := peerwire.Accept(context.Background(), nc, func(x [20]byte) bool { return x == s.ih }, o)
	if err != nil {
		return
	}
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
		if err := metadata.Serve(c, s.info, m); err != nil {
			return
		}
	}
}

// Close stops the listener and every conn, and waits.
func (s *metaSeeder) Close() {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// ipOf is 127.0.a.(1+i%250) with a advancing every 250: a block of loopback addresses.
func ipOf(a, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(a + i/250), byte(1 + i%250)})
}

// logLoad notes the machine's load average: these benchmarks share the CPU with whatever else
// runs, and a loaded machine shows in every figure (the no-delay control case first).
func logLoad(b *testing.B) {
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average %s (%d CPUs)", strings.TrimSpace(string(l)), runtime.NumCPU())
	}
}
