package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/swarm"
	"github.com/magnetget/magnetget/torrentfile"
)

// countingListener counts the connections it accepts, by remote IP.
type countingListener struct {
	*net.TCPListener
	mu sync.Mutex
	by map[netip.Addr]int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err == nil {
		ip := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		l.mu.Lock()
		l.by[ip]++
		l.mu.Unlock()
	}
	return c, err
}

func (l *countingListener) counts() map[netip.Addr]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[netip.Addr]int{}
	for k, v := range l.by {
		out[k] = v
	}
	return out
}

// payload writes size random bytes to dir/name and makes its torrent.
func payload(t *testing.T, dir, name string, size int, o torrentfile.Options) (*metainfo.MetaInfo, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if o.PieceLength == 0 {
		o.PieceLength = 16 << 10
	}
	mi, err := torrentfile.Create(context.Background(), p, o)
	if err != nil {
		t.Fatal(err)
	}
	return mi, data
}

// runSwarm runs a swarm until the test ends; listen "" runs it without a listener.
func runSwarm(t *testing.T, cfg swarm.Config, listen string) (*swarm.Swarm, *countingListener) {
	t.Helper()
	var cl *countingListener
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		cl = &countingListener{TCPListener: ln.(*net.TCPListener), by: map[netip.Addr]int{}}
		cfg.Listener = cl
		t.Cleanup(func() { ln.Close() })
	}
	sw, err := swarm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sw.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return sw, cl
}

// recordingTracker is an HTTP tracker that records each announce's event and source address and
// answers with the given peers.
type recordingTracker struct {
	mu     sync.Mutex
	events []string
	hashes [][20]byte // info_hash of each announce
	left   []string   // left of each announce
	port   []string   // port of each announce
	from   []netip.Addr
	peers  []netip.AddrPort
	srv    *httptest.Server
}

func newRecordingTracker(t *testing.T, peers ...netip.AddrPort) *recordingTracker {
	rt := &recordingTracker{peers: peers}
	rt.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		rt.mu.Lock()
		rt.events = append(rt.events, r.URL.Query().Get("event"))
		rt.hashes = append(rt.hashes, [20]byte([]byte(r.URL.Query().Get("info_hash") + strings.Repeat("\x00", 20))[:20]))
		rt.left = append(rt.left, r.URL.Query().Get("left"))
		rt.port = append(rt.port, r.URL.Query().Get("port"))
		rt.from = append(rt.from, ap.Addr().Unmap())
		rt.mu.Unlock()
		var compact []byte
		for _, p := range rt.peers {
			a := p.Addr().As4()
			compact = append(compact, a[:]...)
			compact = binary.BigEndian.AppendUint16(compact, p.Port())
		}
		fmt.Fprintf(w, "d8:intervali1800e5:peers%d:%se", len(compact), compact)
	}))
	t.Cleanup(rt.srv.Close)
	return rt
}

func (rt *recordingTracker) count(event string) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	n := 0
	for _, e := range rt.events {
		if e == event {
			n++
		}
	}
	return n
}

// TestNoAddressDialledTwice: a magnet with x.pe peers and a tracker that names the same peers
// (and one more): the metadata fetch and the download that follows dial each seeder at most
// once (the connections that fetched the metadata go on to the swarm; before, get dialled every
// x.pe peer again, and the seeder closed the second connection as a duplicate), the tracker
// hears one "started" and one "stopped", and every dial and announce leaves from the --listen
// address.
func TestNoAddressDialledTwice(t *testing.T) {
	src := t.TempDir()
	mi, data := payload(t, src, "p.bin", 256<<10, torrentfile.Options{})
	ih := mi.HashInfoBytes()
	var seeders []*countingListener
	var addrs []netip.AddrPort
	for i := range 3 {
		_, cl := runSwarm(t, swarm.Config{InfoHash: ih, Info: mi.InfoBytes, Dir: src, Seed: true, ReadOnly: true},
			"127.0.210."+strconv.Itoa(i+1)+":0")
		seeders = append(seeders, cl)
		addrs = append(addrs, cl.Addr().(*net.TCPAddr).AddrPort())
	}
	rt := newRecordingTracker(t, addrs...)
	uri := "magnet:?xt=urn:btih:" + hex.EncodeToString(ih[:]) + "&tr=" + rt.srv.URL + "/announce" +
		"&x.pe=" + addrs[0].String() + "&x.pe=" + addrs[1].String()
	out := t.TempDir()
	const client = "127.0.210.9"
	r := runIn(t, 60*time.Second, args("get", uri, "-o", out, "--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(),
		"--listen", "/ip4/"+client+"/udp/0")...)
	if r.code != 0 {
		t.Fatalf("get: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(out, "p.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
	seederIPs := map[netip.Addr]bool{}
	for _, a := range addrs {
		seederIPs[a.Addr()] = true
	}
	for i, cl := range seeders {
		for ip, n := range cl.counts() {
			if seederIPs[ip] {
				continue // seeders meeting each other through PEX
			}
			if ip != netip.MustParseAddr(client) {
				t.Errorf("seeder %d: %d connections from %v, want them all from the --listen address %s", i, n, ip, client)
			}
			if n > 1 {
				t.Errorf("seeder %d was dialled %d times from %v for one torrent, want at most once", i, n, ip)
			}
		}
	}
	if n := rt.count("started"); n != 1 {
		t.Errorf("tracker got %d started announces, want 1 (events %v)", n, rt.events)
	}
	if n := rt.count("stopped"); n != 1 {
		t.Errorf("tracker got %d stopped announces, want 1 (events %v)", n, rt.events)
	}
	rt.mu.Lock()
	for _, ip := range rt.from {
		if ip != netip.MustParseAddr(client) {
			t.Errorf("tracker announce came from %v, want the --listen address %s", ip, client)
		}
	}
	rt.mu.Unlock()
}

// TestSeedDialsLeecher: a leecher that never dials (Transmission never dials a 127/8 peer; here a
// swarm given no peers) and that the tracker names is reached by `magnetget seed`, which dials
// it, and gets the whole file. Before, a seed only waited for connections.
func TestSeedDialsLeecher(t *testing.T) {
	src := t.TempDir()
	rt := newRecordingTracker(t)
	mi, data := payload(t, src, "p.bin", 192<<10, torrentfile.Options{Trackers: []string{rt.srv.URL + "/announce"}})
	tf := writeTorrentFile(t, mi, "p.torrent")
	ih := mi.HashInfoBytes()
	out := t.TempDir()
	complete := make(chan struct{})
	var once sync.Once
	_, cl := runSwarm(t, swarm.Config{InfoHash: ih, Info: mi.InfoBytes, Dir: out, OnProgress: func(p swarm.Progress) {
		if p.Complete {
			once.Do(func() { close(complete) })
		}
	}}, "127.0.211.2:0")
	rt.mu.Lock()
	rt.peers = []netip.AddrPort{cl.Addr().(*net.TCPAddr).AddrPort()}
	rt.mu.Unlock()

	p := startIn(t, args("seed", "--torrent", tf, src, "--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(),
		"--listen", "/ip4/127.0.211.1/udp/0")...)
	select {
	case <-complete:
	case <-time.After(30 * time.Second):
		t.Fatalf("the leecher got nothing within 30s; seed stderr:\n%s", p.stderr.String())
	}
	if got, err := os.ReadFile(filepath.Join(out, "p.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("leecher's file differs (err %v)", err)
	}
	if n := cl.counts()[netip.MustParseAddr("127.0.211.1")]; n != 1 {
		t.Errorf("seed dialled the leecher %d times, want once", n)
	}
}

// TestShortLivedCommandsAreReadOnly: meta (and lookup, and get without --seed) join as BEP 43
// read-only nodes, so the nodes they query do not take them into their tables, where they would
// soon be dead entries. Before, a meta run that searched for a few seconds was verified and kept
// by the nodes it asked.
func TestShortLivedCommandsAreReadOnly(t *testing.T) {
	nodes := dhttest.Network(t, 16)
	const client = "127.0.212.1"
	ih := randomIH(t)
	r := runIn(t, 60*time.Second, "meta", hex.EncodeToString(ih[:]), "--timeout", "3s", "-o", filepath.Join(t.TempDir(), "x.torrent"),
		"--listen", "/ip4/"+client+"/udp/0", "--bootstrap", bootFlag(nodes[0]), "--data-dir", t.TempDir())
	if r.code != 1 {
		t.Fatalf("meta of an unknown infohash: exit %d, want 1\nstderr:\n%s", r.code, r.stderr)
	}
	queried := 0
	for i, n := range nodes {
		if n.Stats().QueriesIn > 0 {
			queried++
		}
		for _, a := range n.Nodes() {
			if a.Addr() == netip.MustParseAddr(client) {
				t.Errorf("node %d keeps the meta run's node %v in its table", i, a)
			}
		}
	}
	if queried < 4 {
		t.Fatalf("only %d nodes were queried: the test shows nothing", queried)
	}
}

// fakeNode is a scripted DHT node: it holds back the replies to some queries until a condition,
// and records which methods it was asked.
type fakeNode struct {
	pc  *net.UDPConn
	id  krpc.ID
	mu  sync.Mutex
	got map[string]int
}

func newFakeNode(t *testing.T, ip string) *fakeNode {
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	f := &fakeNode{pc: pc, got: map[string]int{}}
	rand.Read(f.id[:])
	return f
}

func (f *fakeNode) addr() netip.AddrPort { return f.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *fakeNode) asked(q string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[q]
}

func (f *fakeNode) info() krpc.NodeInfo {
	a := f.addr()
	return krpc.NodeInfo{ID: f.id, Addr: krpc.NodeAddr{IP: a.Addr().AsSlice(), Port: int(a.Port())}}
}

type heldQuery struct {
	m    krpc.Msg
	from *net.UDPAddr
}

// serve answers queries until the socket closes: reply(q) makes the answer; hold(q) reports
// whether to hold it back, and release(held) whether the held ones may go now (asked after each
// query). Bounded by the test's lifetime and the socket.
func (f *fakeNode) serve(t *testing.T, reply func(krpc.Msg) krpc.Return, hold func(krpc.Msg) bool, release func() bool) {
	done := make(chan struct{})
	t.Cleanup(func() { f.pc.Close(); <-done })
	go func() {
		defer close(done)
		var held []heldQuery
		send := func(h heldQuery) {
			r := reply(h.m)
			r.ID = f.id
			b, err := bencode.Marshal(krpc.Msg{T: h.m.T, Y: "r", R: &r})
			if err == nil {
				f.pc.WriteToUDP(b, h.from)
			}
		}
		buf := make([]byte, 2048)
		for {
			n, from, err := f.pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var m krpc.Msg
			if bencode.Unmarshal(buf[:n], &m) != nil || m.Y != "q" {
				continue
			}
			f.mu.Lock()
			f.got[m.Q]++
			f.mu.Unlock()
			if hold(m) {
				held = append(held, heldQuery{m, from})
			} else {
				send(heldQuery{m, from})
			}
			if len(held) > 0 && release() {
				for _, h := range held {
					send(h)
				}
				held = nil
			}
		}
	}()
}

// TestColdStartDoesNotWaitForTheWalk: with an empty table, the lookup starts at once beside the
// bootstrap walk. The only bootstrap node holds back its answer to the walk's find_node until
// the lookup's get_peers reaches it; its answer names a second node, which holds back its
// get_peers answer until the walk asks it find_node. So the lookup finishes only if its first
// query went out while the walk was still waiting for its first answer. Before, a cold start
// waited for the walk (which gave up on the silent node after its timeout) and the walk never
// reached the second node.
func TestColdStartDoesNotWaitForTheWalk(t *testing.T) {
	a, b := newFakeNode(t, "127.0.213.1"), newFakeNode(t, "127.0.213.2")
	peer := krpc.NodeAddr{IP: net.IPv4(127, 0, 213, 9), Port: 6881}
	tok := "tok"
	a.serve(t, func(m krpc.Msg) krpc.Return {
		r := krpc.Return{Nodes: krpc.CompactIPv4NodeInfo{b.info()}}
		if m.Q == "get_peers" {
			r.Values, r.Token = []krpc.NodeAddr{peer}, &tok
		}
		return r
	}, func(m krpc.Msg) bool { return m.Q == "find_node" }, func() bool { return a.asked("get_peers") > 0 })
	b.serve(t, func(m krpc.Msg) krpc.Return {
		r := krpc.Return{}
		if m.Q == "get_peers" {
			r.Token = &tok
		}
		return r
	}, func(m krpc.Msg) bool { return m.Q == "get_peers" }, func() bool { return b.asked("find_node") > 0 })

	ih := randomIH(t)
	r := runIn(t, 60*time.Second, "lookup", hex.EncodeToString(ih[:]), "--timeout", "30s",
		"--listen", "/ip4/127.0.213.5/udp/0", "--bootstrap", a.addr().String(), "--data-dir", t.TempDir())
	if r.code != 0 || !strings.Contains(r.stdout, "/ip4/127.0.213.9/tcp/6881") {
		t.Fatalf("lookup: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if b.asked("find_node") == 0 {
		t.Fatalf("the bootstrap walk never reached the second node: it had ended before the lookup began\nstderr:\n%s", r.stderr)
	}
}

// TestWebSeedWiring: a .torrent whose url-list names an HTTP server is downloaded from it with
// no peer at all, and --json counts those bytes apart (web_seed_down); --no-web-seeds leaves
// the web seed alone.
func TestWebSeedWiring(t *testing.T) {
	src := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(src)))
	t.Cleanup(srv.Close)
	mi, data := payload(t, src, "w.bin", 160<<10, torrentfile.Options{WebSeeds: []string{srv.URL + "/"}})
	tf := writeTorrentFile(t, mi, "w.torrent")

	out := t.TempDir()
	r := runIn(t, 60*time.Second, args("get", tf, "--json", "-o", out, offline(t))...)
	if r.code != 0 {
		t.Fatalf("get from a web seed: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(out, "w.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
	ls := lines(r.stdout)
	var done struct {
		Event       string `json:"event"`
		OK          bool   `json:"ok"`
		Down        int64  `json:"down"`
		WebSeedDown int64  `json:"web_seed_down"`
	}
	if err := json.Unmarshal([]byte(ls[len(ls)-1]), &done); err != nil || !done.OK || done.WebSeedDown != int64(len(data)) || done.Down != done.WebSeedDown {
		t.Fatalf("done event %q: want ok, down and web_seed_down %d", ls[len(ls)-1], len(data))
	}
	if !strings.Contains(r.stdout, `"web_seeds":1`) {
		t.Errorf("no progress event counts the web seed:\n%s", r.stdout)
	}

	r = runIn(t, 60*time.Second, args("get", tf, "--no-web-seeds", "--timeout", "1s", "-o", t.TempDir(), offline(t))...)
	if r.code != 1 {
		t.Fatalf("--no-web-seeds without peers: exit %d, want 1 (nothing to download from)\nstderr:\n%s", r.code, r.stderr)
	}
}

// TestSeedDialsTransmission: Transmission never dials a 127/8 peer, so the only way it gets a
// torrent here is a seeder that dials it. `magnetget seed`, told of it by the tracker, does.
// Transmission reacts to a new peer on its 10 s pulse: this takes 10-15 s.
func TestSeedDialsTransmission(t *testing.T) {
	rctest.Require(t, realclient.TransmissionAvailable)
	t.Parallel()
	src := t.TempDir()
	rt := newRecordingTracker(t)
	mi, data := payload(t, src, "tr.bin", 300<<10, torrentfile.Options{Trackers: []string{rt.srv.URL + "/announce"}})
	tf := writeTorrentFile(t, mi, "tr.torrent")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	tr, err := realclient.StartTransmission(ctx, realclient.TransmissionConfig{URI: tf, Dir: dir, MaxLifetime: time.Minute, Logger: rctest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rt.mu.Lock()
	rt.peers = []netip.AddrPort{tr.Addr()}
	rt.mu.Unlock()
	p := startIn(t, args("seed", "--torrent", tf, src, "--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(),
		"--listen", "/ip4/127.0.214.1/udp/0")...)
	if err := tr.WaitDone(ctx); err != nil {
		t.Fatalf("%v\nseed stderr:\n%s", err, p.stderr.String())
	}
	if got, err := os.ReadFile(filepath.Join(dir, "tr.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Transmission's file differs (err %v)", err)
	}
}

// writeTorrentFile writes mi as name in a fresh temporary directory and returns its path.
func writeTorrentFile(t *testing.T, mi *metainfo.MetaInfo, name string) string {
	t.Helper()
	tf := filepath.Join(t.TempDir(), name)
	f, err := os.Create(tf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := torrentfile.Write(f, mi); err != nil {
		t.Fatal(err)
	}
	return tf
}
