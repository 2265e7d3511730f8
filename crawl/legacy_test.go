package crawl

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
)

// legacyNode is a DHT node from before BEP 51 on a real UDP socket: it
// answers sample_infohashes with error 204 and find_node with a fixed
// list of nodes. It counts the queries it gets by method.
type legacyNode struct {
	pc    net.PacketConn
	id    [20]byte
	nodes []*dht.Node
	mu    sync.Mutex
	count map[string]int
	done  chan struct{}
}

func newLegacyNode(t *testing.T, addr string, nodes []*dht.Node) *legacyNode {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	l := &legacyNode{pc: pc, id: [20]byte{0xee, 1}, nodes: nodes, count: map[string]int{}, done: make(chan struct{})}
	go l.serve()
	t.Cleanup(func() { pc.Close(); <-l.done })
	return l
}

func (l *legacyNode) serve() {
	defer close(l.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := l.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var m krpc.Msg
		if bencode.Unmarshal(buf[:n], &m) != nil || m.Y != "q" {
			continue
		}
		l.mu.Lock()
		l.count[m.Q]++
		l.mu.Unlock()
		var reply map[string]any
		switch m.Q {
		case "find_node":
			var compact []byte
			for _, nd := range l.nodes {
				id, a := nd.ID(), nd.Addr()
				ip := a.Addr().As4()
				compact = append(compact, id[:]...)
				compact = append(compact, ip[:]...)
				compact = append(compact, byte(a.Port()>>8), byte(a.Port()))
			}
			reply = map[string]any{"t": m.T, "y": "r", "r": map[string]any{"id": string(l.id[:]), "nodes": string(compact)}}
		case "ping":
			reply = map[string]any{"t": m.T, "y": "r", "r": map[string]any{"id": string(l.id[:])}}
		default:
			reply = map[string]any{"t": m.T, "y": "e", "e": []any{204, "Method Unknown"}}
		}
		b, _ := bencode.Marshal(reply)
		l.pc.WriteTo(b, from)
	}
}

func (l *legacyNode) queries(method string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[method]
}

// TestCrawlThroughNodeWithoutBEP51 starts the walk at a node that answers
// sample_infohashes with error 204: the crawler must ask it find_node
// instead, reach the network behind it, and not ask it for samples again.
func TestCrawlThroughNodeWithoutBEP51(t *testing.T) {
	nodes := dhttest.Network(t, 16)
	ihs := make([][20]byte, 20)
	for i := range ihs {
		ihs[i] = testIH(2000 + i)
	}
	ihs = announceAll(t, nodes, ihs)
	legacy := newLegacyNode(t, "127.0.0.3:0", nodes)

	x, err := index.Open(filepath.Join(t.TempDir(), "crawl.db"), index.Options{FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	cfg := dhttest.Config()
	cfg.Addr = netip.MustParseAddrPort("127.0.0.4:0")
	node, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	var last Progress
	var pmu sync.Mutex
	c := &Crawler{Index: x, Node: node, Rate: -1, Seeds: []netip.AddrPort{legacy.pc.LocalAddr().(*net.UDPAddr).AddrPort()},
		OnProgress: func(p Progress) { pmu.Lock(); last = p; pmu.Unlock() }}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	got := waitFound(wctx, x, ihs, index.Sampled, len(ihs))
	wcancel()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkNoGoroutines(t, "crawl.(*Crawler)")
	if got != len(ihs) {
		t.Fatalf("sampled %d of %d infohashes behind the legacy node", got, len(ihs))
	}
	pmu.Lock()
	p := last
	pmu.Unlock()
	if p.Found < int64(len(ihs)) || p.NodesVisited < 2 || p.Queries < p.NodesVisited {
		t.Errorf("final progress report = %+v", p)
	}
	if n := legacy.queries("sample_infohashes"); n != 1 {
		t.Errorf("legacy node got %d sample_infohashes queries, want 1 (then find_node only)", n)
	}
	if n := legacy.queries("find_node"); n < 1 {
		t.Errorf("legacy node got no find_node query")
	}
}

// checkNoGoroutines fails if, after a bounded wait for goroutines that
// were told to stop, some goroutine still runs a function matching frame.
func checkNoGoroutines(t *testing.T, frame string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, frame) {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("%d goroutines of %s still running after Run returned:\n%s", len(left), frame, strings.Join(left, "\n\n"))
	}
}
