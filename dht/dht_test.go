package dht_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/routing"
)

func randomID(t testing.TB) (id [20]byte) {
	t.Helper()
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newNode starts a node on loopback address index i (see dhttest.Addr) and closes it at cleanup.
func newNode(t testing.TB, i int, cfg dht.Config) *dht.Node {
	t.Helper()
	base := dhttest.Config()
	if cfg.Rate == 0 {
		cfg.Rate = base.Rate
	}
	if cfg.ResendDelay == 0 {
		cfg.ResendDelay = base.ResendDelay
	}
	if !cfg.Addr.IsValid() && cfg.Conn == nil {
		cfg.Addr = netip.AddrPortFrom(dhttest.Addr(i), 0)
	}
	n, err := dht.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// lookupAll collects every peer a Lookup reports, failing on duplicates.
func lookupAll(t testing.TB, ctx context.Context, n *dht.Node, ih [20]byte) []netip.AddrPort {
	t.Helper()
	var got []netip.AddrPort
	err := n.Lookup(ctx, ih, func(pr dht.PeerResult) bool {
		if slices.Contains(got, pr.Peer) {
			t.Errorf("Lookup reported %v twice", pr.Peer)
		}
		if !pr.From.IsValid() {
			t.Errorf("PeerResult without From: %+v", pr)
		}
		got = append(got, pr.Peer)
		return true
	})
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return got
}

// A peer announced at one node of a 64-node network is found by a newcomer that knows only one
// bootstrap node.
func TestLookupFindsPeerAnnouncedElsewhere(t *testing.T) {
	nodes := dhttest.Network(t, 64)
	ctx := testCtx(t)
	ih := randomID(t)
	announcer := nodes[17]
	if err := announcer.Announce(ctx, ih, 6881); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	stored := 0
	for _, nd := range nodes {
		stored += nd.Stats().PeersStored
	}
	if stored == 0 {
		t.Fatal("announce_peer stored the peer nowhere")
	}

	newcomer := newNode(t, 240, dht.Config{Bootstrap: []netip.AddrPort{nodes[3].Addr()}})
	if err := newcomer.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	want := netip.AddrPortFrom(announcer.Addr().Addr(), 6881)
	got := lookupAll(t, ctx, newcomer, ih)
	if !slices.Contains(got, want) {
		t.Fatalf("Lookup found %v, want it to include %v", got, want)
	}

	// Stopping early: fn returning false ends the lookup at once, without error.
	calls := 0
	err := newcomer.Lookup(ctx, ih, func(dht.PeerResult) bool { calls++; return false })
	if err != nil || calls != 1 {
		t.Fatalf("Lookup stopped by fn: err=%v calls=%d, want nil and 1", err, calls)
	}
	// A cancelled context ends the lookup with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := newcomer.Lookup(cctx, ih, func(dht.PeerResult) bool { return true }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lookup with cancelled ctx: %v, want context.Canceled", err)
	}
}

// A restarted node keeps its id and reaches the network from its saved table alone.
func TestRestartUsesSavedTable(t *testing.T) {
	nodes := dhttest.Network(t, 24)
	ctx := testCtx(t)
	state := filepath.Join(t.TempDir(), "routing.db")

	first, err := dht.New(dht.Config{
		Addr: netip.AddrPortFrom(dhttest.Addr(230), 0), Rate: -1, ResendDelay: 250 * time.Millisecond,
		StateFile: state, Bootstrap: []netip.AddrPort{nodes[0].Addr()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	id := first.ID()
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st, err := routing.Load(state)
	if err != nil {
		t.Fatalf("routing.Load: %v", err)
	}
	if st.NodeID != id || len(st.Nodes) < 8 {
		t.Fatalf("saved state: id %x (want %x), %d nodes (want >= 8)", st.NodeID, id, len(st.Nodes))
	}

	ih := randomID(t)
	if err := nodes[9].Announce(ctx, ih, 7000); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	// No bootstrap nodes at all: only the saved table can get this node anywhere.
	second := newNode(t, 231, dht.Config{StateFile: state})
	if second.ID() != id {
		t.Fatalf("restarted id %x, want %x", second.ID(), id)
	}
	if err := second.Bootstrap(ctx); err != nil {
		t.Fatalf("warm Bootstrap: %v", err)
	}
	want := netip.AddrPortFrom(nodes[9].Addr().Addr(), 7000)
	if got := lookupAll(t, ctx, second, ih); !slices.Contains(got, want) {
		t.Fatalf("warm Lookup found %v, want %v among them", got, want)
	}
}

// A node with nothing to start from says so rather than hanging.
func TestBootstrapWithoutNodes(t *testing.T) {
	n := newNode(t, 232, dht.Config{})
	if err := n.Bootstrap(testCtx(t)); !errors.Is(err, dht.ErrNoNodes) {
		t.Fatalf("Bootstrap: %v, want ErrNoNodes", err)
	}
}

// A saved table of dead nodes falls back to the bootstrap list.
func TestBootstrapFallsBackWhenSavedNodesAreDead(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	state := filepath.Join(t.TempDir(), "routing.db")
	var dead []routing.Node
	for i := range 20 {
		// Ports on an address nobody listens on: queries go unanswered.
		dead = append(dead, routing.Node{ID: randomID(t), Addr: netip.AddrPortFrom(dhttest.Addr(233), uint16(40000+i)), LastResponse: time.Now()})
	}
	if err := routing.Save(state, routing.State{NodeID: randomID(t), Nodes: dead}, 100); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, 234, dht.Config{StateFile: state, Bootstrap: []netip.AddrPort{nodes[0].Addr()}, ResendDelay: 300 * time.Millisecond})
	if err := n.Bootstrap(testCtx(t)); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if s := n.Stats(); s.GoodNodes == 0 {
		t.Fatalf("no good nodes after fallback: %+v", s)
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A corrupt routing.db is moved aside with a warning naming the new path, and the node starts.
func TestCorruptStateFileMovedAside(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "routing.db")
	garbage := bytes.Repeat([]byte("not a bbolt file\n"), 1000)
	if err := os.WriteFile(state, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	n := newNode(t, 235, dht.Config{StateFile: state, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if n.ID() == ([20]byte{}) {
		t.Fatal("zero node id")
	}
	aside, _ := filepath.Glob(state + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt file not moved aside: %v", aside)
	}
	if b, err := os.ReadFile(aside[0]); err != nil || !bytes.Equal(b, garbage) {
		t.Fatalf("moved-aside file content changed (err %v)", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), aside[0]) {
		t.Fatalf("warning does not name %s: %q", aside[0], logs.String())
	}
	// The node saves a fresh, loadable file at the original path.
	if err := n.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if st, err := routing.Load(state); err != nil || st.NodeID != n.ID() {
		t.Fatalf("Load after Save: id %x err %v", st.NodeID, err)
	}
}

// Two nodes: B announces infohashes to A, then A's BEP 51 samples list them.
func TestSampleInfohashes(t *testing.T) {
	ctx := testCtx(t)
	a := newNode(t, 236, dht.Config{})
	b := newNode(t, 237, dht.Config{Bootstrap: []netip.AddrPort{a.Addr()}})
	if err := b.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	// Empty store: the reply still carries samples (empty) and num 0.
	s, err := b.SampleInfohashes(ctx, a.Addr(), randomID(t))
	if err != nil {
		t.Fatalf("SampleInfohashes (empty): %v", err)
	}
	if len(s.Infohashes) != 0 || s.Num != 0 || s.Interval <= 0 {
		t.Fatalf("empty sample: %+v", s)
	}

	var ihs [][20]byte
	for range 3 {
		ih := randomID(t)
		ihs = append(ihs, ih)
		if err := b.Announce(ctx, ih, 51413); err != nil {
			t.Fatalf("Announce: %v", err)
		}
	}
	s, err = b.SampleInfohashes(ctx, a.Addr(), randomID(t))
	if err != nil {
		t.Fatalf("SampleInfohashes: %v", err)
	}
	if s.Num != 3 || len(s.Infohashes) != 3 {
		t.Fatalf("sample: num %d, %d infohashes; want 3 and 3", s.Num, len(s.Infohashes))
	}
	for _, ih := range ihs {
		if !slices.Contains(s.Infohashes, ih) {
			t.Fatalf("sample %x lacks announced %x", s.Infohashes, ih)
		}
	}
	if !slices.Contains(s.Nodes, b.Addr()) && len(s.Nodes) != 0 {
		t.Logf("sample nodes: %v", s.Nodes)
	}

	// More infohashes than fit: a bounded, distinct subset, and the true count.
	for range 27 {
		ih := randomID(t)
		ihs = append(ihs, ih)
		if err := b.Announce(ctx, ih, 51413); err != nil {
			t.Fatalf("Announce: %v", err)
		}
	}
	s, err = b.SampleInfohashes(ctx, a.Addr(), randomID(t))
	if err != nil {
		t.Fatalf("SampleInfohashes: %v", err)
	}
	if s.Num != 30 || len(s.Infohashes) != 20 {
		t.Fatalf("sample: num %d, %d infohashes; want 30 and 20", s.Num, len(s.Infohashes))
	}
	seen := map[[20]byte]bool{}
	for _, ih := range s.Infohashes {
		if seen[ih] || !slices.Contains(ihs, ih) {
			t.Fatalf("sample has duplicate or unknown infohash %x", ih)
		}
		seen[ih] = true
	}
}

// The harvesting hooks see announces and get_peers queries that reach the node.
func TestHarvestCallbacks(t *testing.T) {
	ctx := testCtx(t)
	type seen struct {
		ih   [20]byte
		addr netip.AddrPort
	}
	announces := make(chan seen, 16)
	getPeers := make(chan seen, 16)
	a := newNode(t, 238, dht.Config{
		OnAnnounce: func(ih [20]byte, p netip.AddrPort) { announces <- seen{ih, p} },
		OnGetPeers: func(ih [20]byte, p netip.AddrPort) { getPeers <- seen{ih, p} },
	})
	b := newNode(t, 239, dht.Config{Bootstrap: []netip.AddrPort{a.Addr()}})
	ih := randomID(t)
	if err := b.Announce(ctx, ih, 6000); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	select {
	case g := <-getPeers:
		if g.ih != ih || g.addr != b.Addr() {
			t.Fatalf("OnGetPeers(%x, %v), want (%x, %v)", g.ih, g.addr, ih, b.Addr())
		}
	case <-ctx.Done():
		t.Fatal("OnGetPeers not called")
	}
	select {
	case g := <-announces:
		want := netip.AddrPortFrom(b.Addr().Addr(), 6000)
		if g.ih != ih || g.addr != want {
			t.Fatalf("OnAnnounce(%x, %v), want (%x, %v)", g.ih, g.addr, ih, want)
		}
	case <-ctx.Done():
		t.Fatal("OnAnnounce not called")
	}
	st := a.Stats()
	if st.QueriesInByType["get_peers"] == 0 || st.QueriesInByType["announce_peer"] != 1 || st.PeersStored != 1 || st.Infohashes != 1 {
		t.Fatalf("stats after one announce: %+v", st)
	}
}

// FindNode asks one node directly.
func TestFindNode(t *testing.T) {
	nodes := dhttest.Network(t, 12)
	got, err := nodes[0].FindNode(testCtx(t), nodes[1].Addr(), randomID(t))
	if err != nil {
		t.Fatalf("FindNode: %v", err)
	}
	if len(got) == 0 {
		t.Fatal("FindNode returned no nodes from a bootstrapped node")
	}
	// An address where nobody listens: an error, not a hang.
	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	silent := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	defer pc.Close()
	if _, err := nodes[0].FindNode(ctx, silent, randomID(t)); err == nil {
		t.Fatal("FindNode to a silent socket succeeded")
	}
}

// Operations on a closed node fail with ErrClosed; Close is idempotent.
func TestUseAfterClose(t *testing.T) {
	n := newNode(t, 241, dht.Config{})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := n.Lookup(testCtx(t), randomID(t), func(dht.PeerResult) bool { return true }); !errors.Is(err, dht.ErrClosed) {
		t.Fatalf("Lookup after Close: %v, want ErrClosed", err)
	}
}

func addrFor(i int) netip.AddrPort { return netip.AddrPortFrom(dhttest.Addr(i), 0) }

// AddNode pings an address; once it answers, the node can bootstrap from it with no bootstrap
// list.
func TestAddNode(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	n := newNode(t, 243, dht.Config{})
	n.AddNode(nodes[0].Addr())
	deadline := time.Now().Add(10 * time.Second)
	for n.Stats().Nodes == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.Bootstrap(testCtx(t)); err != nil {
		t.Fatalf("Bootstrap after AddNode: %v", err)
	}
	if s := n.Stats(); s.GoodNodes < 4 {
		t.Fatalf("only %d good nodes after bootstrapping into 8", s.GoodNodes)
	}
}

func TestNodesListsTheNetwork(t *testing.T) {
	nodes := dhttest.Network(t, 16)
	got := nodes[0].Nodes()
	if len(got) < 4 {
		t.Fatalf("a bootstrapped node knows %d nodes, want several", len(got))
	}
	all := map[netip.AddrPort]bool{}
	for _, n := range nodes {
		all[n.Addr()] = true
	}
	for _, a := range got {
		if !all[a] {
			t.Errorf("Nodes() returned %v, which is no node of the network", a)
		}
	}
}
