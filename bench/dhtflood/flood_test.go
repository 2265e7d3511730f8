package dhtflood

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/utp"
)

var (
	duration = flag.Duration("dhtflood.duration", 5*time.Second, "how long the flood lasts")
	qps      = flag.Int("dhtflood.rate", 50_000, "flood queries per second, over all sources")
	sources  = flag.Int("dhtflood.sources", 1000, "flood sources (one loopback IP each)")
)

const childEnv = "DHTFLOOD_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child runs the node under test with `magnetget node`'s configuration (dht.Config defaults) and
// obeys commands on stdin: "boot", "lookup HEX" (prints the first-peer latency in ns, or -1),
// "stats" (prints JSON), "quit".
func child() int {
	var boot []netip.AddrPort
	for _, s := range strings.Split(os.Getenv(childEnv), ",") {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			boot = append(boot, ap)
		}
	}
	// As `magnetget node` runs it: a 4 MiB receive buffer and the uTP socket in front, which
	// passes the DHT what is not uTP (DHTFLOOD_DIRECT=1: the node reads the UDP socket itself).
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.200.1:0")))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	_ = pc.SetReadBuffer(4 << 20)
	var conn net.PacketConn = pc
	if os.Getenv("DHTFLOOD_DIRECT") == "" {
		sock, err := utp.NewSocket(pc, utp.Config{})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		defer sock.Close()
		conn = sock.PacketConn()
	}
	n, err := dht.New(dht.Config{Conn: conn, Bootstrap: boot})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer n.Close()
	fmt.Println(n.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "boot":
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := n.Bootstrap(ctx)
			cancel()
			fmt.Println("booted", err)
		case "lookup":
			var ih [20]byte
			hex.Decode(ih[:], []byte(f[1]))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			start := time.Now()
			first := time.Duration(-1)
			n.Lookup(ctx, ih, func(dht.PeerResult) bool { first = time.Since(start); return false })
			cancel()
			fmt.Println(int64(first))
		case "stats":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b, _ := json.Marshal(struct {
				dht.Stats
				HeapInuse, Sys uint64
			}{n.Stats(), ms.HeapInuse, ms.Sys})
			fmt.Println(string(b))
		case "quit":
			return 0
		}
	}
	return 0
}

type childProc struct {
	cmd  *exec.Cmd
	in   *bufio.Writer
	out  *bufio.Scanner
	addr netip.AddrPort
}

func startChild(b *testing.B, boot []netip.AddrPort) *childProc {
	var bs []string
	for _, a := range boot {
		bs = append(bs, a.String())
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(bs, ","))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &childProc{cmd: cmd, in: bufio.NewWriter(stdin), out: bufio.NewScanner(stdout)}
	b.Cleanup(func() {
		c.call("quit")
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := c.read(b)
	ap, err := netip.ParseAddrPort(line)
	if err != nil {
		b.Fatalf("child: %s", line)
	}
	c.addr = ap
	return c
}

func (c *childProc) read(b *testing.B) string {
	if !c.out.Scan() {
		b.Fatalf("child ended: %v", c.out.Err())
	}
	return c.out.Text()
}

func (c *childProc) call(cmd string) {
	fmt.Fprintln(c.in, cmd)
	c.in.Flush()
}

// rss returns the child's current and peak resident set in bytes.
func (c *childProc) rss() (cur, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return -1, -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				cur = v << 10
			} else {
				peak = v << 10
			}
		}
	}
	return cur, peak
}

// lookups runs one lookup per infohash in the child and returns the first-peer latencies.
func (c *childProc) lookups(b *testing.B, ihs [][20]byte) (lat []time.Duration, misses int) {
	for _, ih := range ihs {
		c.call("lookup " + hex.EncodeToString(ih[:]))
		v, _ := strconv.ParseInt(c.read(b), 10, 64)
		if v < 0 {
			misses++
			continue
		}
		lat = append(lat, time.Duration(v))
	}
	return lat, misses
}

func p50(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func BenchmarkNodeFlood(b *testing.B) {
	nodes := dhttest.Network(b, 32)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Infohashes announced into the network, each by one node: lookups idle use the first
	// half, lookups during the flood the second.
	ihs := make([][20]byte, 40)
	for i := range ihs {
		copy(ihs[i][:], fmt.Sprintf("dhtflood-ih-%08d", i))
		if err := nodes[(i*7)%len(nodes)].Announce(ctx, ihs[i], 6881); err != nil {
			b.Fatalf("announce: %v", err)
		}
	}
	var boot []netip.AddrPort
	for _, nd := range nodes[:8] {
		boot = append(boot, nd.Addr())
	}
	c := startChild(b, boot)
	c.call("boot")
	b.Logf("child %v", c.read(b))
	idle, idleMiss := c.lookups(b, ihs[:20])

	// The flood: *sources sockets, one IP each, paced to *qps over all.
	srcs := make([]*net.UDPConn, *sources)
	for i := range srcs {
		ip := netip.AddrFrom4([4]byte{127, byte(100 + i/250), byte(1 + (i/250)%250), byte(1 + i%250)})
		s, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		srcs[i] = s
	}
	replies := make([]atomic.Int64, len(srcs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				s.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, _, err := s.ReadFrom(buf); err != nil {
					select {
					case <-stop:
						return
					default:
						continue
					}
				}
				replies[i].Add(1)
			}
		}()
	}
	var sent atomic.Int64
	floodStart := time.Now()
	floodEnd := floodStart.Add(*duration)
	const senders = 4
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			to := net.UDPAddrFromAddrPort(c.addr)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			k := w
			for now := range tick.C {
				if now.After(floodEnd) {
					return
				}
				// Catch up to the schedule: qps*elapsed packets by now, shared by the senders.
				due := int64(float64(*qps)*now.Sub(floodStart).Seconds()) / senders
				for sentHere := int64(0); int64(k/senders) < due && sentHere < int64(*qps/senders); sentHere++ {
					src := k % len(srcs)
					q := fmt.Appendf(nil, "d1:ad2:id20:flood-source-%07d9:info_hash20:%020de1:q9:get_peers1:t4:%04d1:y1:qe", src, k, k%10000)
					srcs[src].WriteTo(q, to)
					sent.Add(1)
					k += senders
				}
			}
		}()
	}
	time.Sleep(min(*duration/5, time.Second))
	var during []time.Duration
	duringMiss := 0
	var peakRSS int64
	for i := 20; time.Now().Before(floodEnd); i++ {
		lat, miss := c.lookups(b, [][20]byte{ihs[20+i%20]})
		during = append(during, lat...)
		duringMiss += miss
		if cur, _ := c.rss(); cur > peakRSS {
			peakRSS = cur
		}
	}
	floodSecs := time.Since(floodStart).Seconds()
	_, hwm := c.rss()
	c.call("stats")
	stats := c.read(b)
	close(stop)
	wg.Wait()

	var maxReplies, total int64
	for i := range replies {
		r := replies[i].Load()
		total += r
		maxReplies = max(maxReplies, r)
	}
	allowed := float64(dht.DefaultSourceRate)*floodSecs + 2*dht.DefaultSourceRate
	b.Logf("flood: %d queries in %.1fs (%.0f/s) from %d sources", sent.Load(), floodSecs, float64(sent.Load())/floodSecs, len(srcs))
	b.Logf("node: RSS %.1f MiB (peak %.1f MiB); %s", float64(peakRSS)/(1<<20), float64(hwm)/(1<<20), stats)
	b.Logf("replies: %d in all, max %d per source (allowed %.0f: %.0f/s + burst), node reply rate %d/s",
		total, maxReplies, allowed, float64(dht.DefaultSourceRate), dht.DefaultRate)
	b.Logf("lookup first peer p50: idle %v (%d lookups, %d missed), during flood %v (%d lookups, %d missed)",
		p50(idle), len(idle), idleMiss, p50(during), len(during), duringMiss)
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(sent.Load())/floodSecs, "flood-q/s")
	b.ReportMetric(float64(maxReplies), "max-replies/source")
	b.ReportMetric(allowed, "allowed-replies/source")
	b.ReportMetric(float64(p50(idle).Microseconds())/1000, "idle-p50-ms")
	b.ReportMetric(float64(p50(during).Microseconds())/1000, "flood-p50-ms")
	if float64(maxReplies) > allowed {
		b.Errorf("a source got %d replies, above its rate (%.0f)", maxReplies, allowed)
	}
}
