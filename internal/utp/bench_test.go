package utp

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/netem"
)

// BenchmarkDHTHop measures what the extra hop costs the DHT: a KRPC-sized query is answered
// by an echo server reading a plain UDP socket ("direct") or a Socket's PacketConn ("socket"),
// with 64 queries in flight. Reported as queries/s.
func BenchmarkDHTHop(b *testing.B) {
	for _, mode := range []string{"direct", "socket"} {
		b.Run(mode, func(b *testing.B) {
			var srv net.PacketConn = listenUDP(b, "127.0.0.30")
			if mode == "socket" {
				s, err := NewSocket(srv, Config{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				srv = s.PacketConn()
			} else {
				defer srv.Close()
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 1500)
				for {
					n, from, err := srv.ReadFrom(buf)
					if err != nil {
						return
					}
					srv.WriteTo(buf[:n], from)
				}
			}()
			cl := listenUDP(b, "127.0.0.31")
			defer cl.Close()
			q := []byte("d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe")
			buf := make([]byte, 1500)
			b.ResetTimer()
			start := time.Now()
			sent, got := 0, 0
			for ; sent < 64 && sent < b.N; sent++ {
				cl.WriteTo(q, srv.LocalAddr())
			}
			for got < b.N {
				cl.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, _, err := cl.ReadFrom(buf); err != nil {
					// A lost datagram: top the window up again.
					for i := 0; i < 8 && sent < b.N+64; i++ {
						cl.WriteTo(q, srv.LocalAddr())
						sent++
					}
					if sent >= b.N+64 {
						break
					}
					continue
				}
				got++
				if sent < b.N {
					cl.WriteTo(q, srv.LocalAddr())
					sent++
				}
			}
			b.ReportMetric(float64(got)/time.Since(start).Seconds(), "queries/s")
			b.StopTimer()
			srv.Close()
			if mode == "direct" {
				wg.Wait()
			}
		})
	}
}

// BenchmarkTransfer64MiB: one 64 MiB stream over our uTP and over TCP, on clean loopback and
// under netem: 40 ms RTT (20 ms one-way delay on each side's sends), and for uTP also 1 % loss
// each way (netem's streams are reliable, so TCP has no lossy variant).
func BenchmarkTransfer64MiB(b *testing.B) {
	const size = 64 << 20
	for _, link := range []struct {
		name  string
		delay time.Duration
		loss  float64
	}{{"loopback", 0, 0}, {"netem-40ms", 20 * time.Millisecond, 0}, {"netem-40ms-1pct", 20 * time.Millisecond, 0.01}} {
		wrapPC := func(pc net.PacketConn) net.PacketConn { return pc }
		wrapLn := func(ln net.Listener) net.Listener { return ln }
		if link.delay > 0 {
			d := netem.Dir{Delay: link.delay, Loss: link.loss}
			seed := uint64(0)
			wrapPC = func(pc net.PacketConn) net.PacketConn {
				seed++
				return netem.NewPacketConn(pc, netem.Link{Send: d, Seed: seed})
			}
			wrapLn = func(ln net.Listener) net.Listener {
				return netem.NewListener(ln, netem.Link{Send: netem.Dir{Delay: link.delay}, Recv: netem.Dir{Delay: link.delay}})
			}
		}
		b.Run("utp/"+link.name, func(b *testing.B) {
			for range b.N {
				a, s := pair(b, Config{RecvWindow: benchWindow, SendBuffer: benchWindow}, wrapPC)
				c, sc := connect(b, a, s)
				benchCopy(b, c, sc, size)
				a.Close()
				s.Close()
			}
		})
		if link.loss > 0 {
			continue
		}
		b.Run("tcp/"+link.name, func(b *testing.B) {
			for range b.N {
				ln, err := net.Listen("tcp", "127.0.0.40:0")
				if err != nil {
					b.Fatal(err)
				}
				wl := wrapLn(ln)
				ch := make(chan net.Conn, 1)
				go func() { c, _ := wl.Accept(); ch <- c }()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				sc := <-ch
				benchCopy(b, c, sc, size)
				wl.Close()
			}
		})
	}
}

func benchCopy(b *testing.B, w, r net.Conn, size int) {
	chunk := make([]byte, 1<<20)
	start := time.Now()
	go func() {
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Close()
	}()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil || n != int64(size) {
		b.Fatalf("copied %d bytes: %v", n, err)
	}
	r.Close()
	if c, ok := w.(*Conn); ok {
		b.Logf("sender: %s", c.statsString())
	}
	b.ReportMetric(float64(size)/(1<<20)/time.Since(start).Seconds(), "MiB/s")
}

func (c *Conn) statsString() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("sent %d resent %d fast-lost %d timeouts %d cwnd %d srtt %v rto %v",
		c.stats.sent, c.stats.resent, c.stats.fastLost, c.stats.timeouts, c.cwnd, c.srtt, c.rto)
}

// benchWindow (UTP_WINDOW=bytes) sets RecvWindow and SendBuffer of the uTP benchmark pair, to
// see what the window costs on a long link: at 40 ms, 64 MiB went at 18 MiB/s with 1 MiB (the
// old default) and 32-37 MiB/s with 4 MiB (the default now), the send buffer being the limit.
var benchWindow = func() int { n, _ := strconv.Atoi(os.Getenv("UTP_WINDOW")); return n }()
