package dht

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/sys/unix"

	"github.com/magnetget/magnetget/routing"
)

// Tests of what a hostile sender can do to a node (issue 9, rows 3, 10, 11, 12). Each talks to a
// running node over loopback UDP from raw sockets.

// rawPeer is a UDP socket speaking KRPC by hand.
type rawPeer struct {
	t  testing.TB
	c  *net.UDPConn
	id [20]byte
}

func newRawPeer(t testing.TB, ip string) *rawPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &rawPeer{t: t, c: c}
	copy(p.id[:], fmt.Sprintf("raw-%-16s", ip))
	return p
}

func (p *rawPeer) addr() netip.AddrPort { return p.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *rawPeer) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.c.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next packet that is not a query (the node pings sources it does not know),
// or nil after wait.
func (p *rawPeer) recv(wait time.Duration) []byte {
	buf := make([]byte, 65536)
	deadline := time.Now().Add(wait)
	for {
		p.c.SetReadDeadline(deadline)
		k, _, err := p.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		if !bytes.Contains(buf[:k], []byte("1:y1:qe")) {
			return buf[:k]
		}
	}
}

// query sends a query and returns the decoded reply (fails the test without one).
func (p *rawPeer) query(to netip.AddrPort, q string, args string) krpc.Msg {
	p.t.Helper()
	p.send(to, queryBytes(p.id, q, args, "qq"))
	for range 20 {
		b := p.recv(10 * time.Second)
		if b == nil {
			break
		}
		var m krpc.Msg
		if err := bencode.Unmarshal(b, &m); err != nil {
			p.t.Fatalf("bad reply %q: %v", b, err)
		}
		if m.T == "qq" {
			return m
		}
	}
	p.t.Fatalf("no reply to %s", q)
	return krpc.Msg{}
}

// queryBytes encodes a query; args is the bencoded inside of the "a" dict after "id", keys in
// order.
func queryBytes(id [20]byte, q, args, tx string) []byte {
	return fmt.Appendf(nil, "d1:ad2:id20:%s%se1:q%d:%s1:t%d:%s1:y1:qe", id[:], args, len(q), q, len(tx), tx)
}

func ihArg(ih [20]byte) string { return "9:info_hash20:" + string(ih[:]) }

func tokenArgs(ih [20]byte, port int, tok string) string {
	return ihArg(ih) + "4:porti" + strconv.Itoa(port) + "e5:token" + strconv.Itoa(len(tok)) + ":" + tok
}

// Row 3: packets declaring a 128 MiB string cost nothing, and pings are still answered.
func TestHugeStringPacketsDropped(t *testing.T) {
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.6.1:0"), Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	p := newRawPeer(t, "127.0.6.2")
	p.query(n.Addr(), "ping", "") // warm up
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 40 {
		p.send(n.Addr(), []byte("d1:t134217000:xx"))
		p.send(n.Addr(), []byte("d1:rd2:id20:"+string(p.id[:])+"5:nodes99999999:e1:t2:aa1:y1:re"))
	}
	// The read loop is sequential: the pong comes after every packet above was handled.
	if m := p.query(n.Addr(), "ping", ""); m.R == nil {
		t.Fatalf("ping after the flood: %+v", m)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("80 hostile packets of 16-60 bytes allocated %d MiB", got>>20)
	}
	if d := n.Stats().PacketsDropped; d < 80 {
		t.Fatalf("PacketsDropped = %d, want 80", d)
	}
}

// Row 10: one IP announcing 100 ports under one infohash keeps only a few; replies to sources
// whose address is not proven stay small; a proven source gets more but under 1 KiB.
func TestGetPeersRepliesBounded(t *testing.T) {
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.6.10:0"), Rate: -1, SourceRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ih := [20]byte{'r', 'o', 'w', '1', '0'}
	flooder := newRawPeer(t, "127.0.6.11")
	tok := *flooder.query(n.Addr(), "get_peers", ihArg(ih)).R.Token
	for port := 1000; port < 1100; port++ {
		if m := flooder.query(n.Addr(), "announce_peer", tokenArgs(ih, port, tok)); m.R == nil {
			t.Fatalf("announce port %d: %+v", port, m)
		}
	}
	if got := n.peers.get(ih, 1000); len(got) != perIPPerIH {
		t.Fatalf("one IP announcing 100 ports: %d stored, want %d", len(got), perIPPerIH)
	}
	// 100 more hosts announce one port each.
	for i := range 100 {
		h := newRawPeer(t, fmt.Sprintf("127.0.7.%d", i+1))
		tok := *h.query(n.Addr(), "get_peers", ihArg(ih)).R.Token
		h.query(n.Addr(), "announce_peer", tokenArgs(ih, 6881, tok))
	}
	q := queryBytes(flooder.id, "get_peers", ihArg(ih), "qq")
	spoofed := newRawPeer(t, "127.0.6.12")
	spoofed.send(n.Addr(), q)
	r := spoofed.recv(10 * time.Second)
	var m krpc.Msg
	if err := bencode.Unmarshal(r, &m); err != nil || m.R == nil {
		t.Fatalf("reply %q: %v", r, err)
	}
	if len(m.R.Values) != unverifiedValues4 || len(r) > 3*len(q) {
		t.Fatalf("reply to an unproven source: %d values, %d bytes for a %d-byte query", len(m.R.Values), len(r), len(q))
	}
	// A source that answered our query is proven: more values, still under 1 KiB.
	proven := newRawPeer(t, "127.0.6.13")
	go func() {
		buf := make([]byte, 2048)
		for {
			proven.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := proven.c.ReadFrom(buf)
			if err != nil {
				return
			}
			b := buf[:k]
			var pm krpc.Msg
			if bencode.Unmarshal(b, &pm) == nil && pm.Y == "q" {
				proven.send(n.Addr(), fmt.Appendf(nil, "d1:rd2:id20:%se1:t%d:%s1:y1:re", proven.id[:], len(pm.T), pm.T))
				return
			}
		}
	}()
	if _, err := n.FindNode(context.Background(), proven.addr(), proven.id); err != nil {
		t.Fatalf("FindNode to the proven source: %v", err)
	}
	proven.send(n.Addr(), queryBytes(proven.id, "get_peers", ihArg(ih), "qq"))
	r = proven.recv(10 * time.Second)
	if err := bencode.Unmarshal(r, &m); err != nil || m.R == nil {
		t.Fatalf("reply %q: %v", r, err)
	}
	if len(m.R.Values) != maxReplyValues4 || len(r) > 1024 {
		t.Fatalf("reply to a proven source: %d values, %d bytes", len(m.R.Values), len(r))
	}
}

// Row 10: each source gets at most its own rate of replies, whatever it sends.
func TestRepliesPerSourceRateLimited(t *testing.T) {
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.6.20:0"), Rate: -1, SourceRate: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	p := newRawPeer(t, "127.0.6.21")
	start := time.Now()
	for i := range 500 {
		p.send(n.Addr(), queryBytes(p.id, "ping", "", fmt.Sprintf("%04d", i)))
	}
	got := 0
	for p.recv(500*time.Millisecond) != nil {
		got++
	}
	elapsed := time.Since(start).Seconds()
	if limit := 10*sourceBurst + int(10*elapsed) + 1; got > limit || got == 0 {
		t.Fatalf("%d replies to 500 pings in %.1fs, want 1..%d", got, elapsed, limit)
	}
}

// Row 11: a token is good for one infohash only, and one IP cannot fill the store with
// infohashes; another host can still announce after it tried.
func TestOneIPCannotFillStore(t *testing.T) {
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.6.30:0"), Rate: -1, SourceRate: -1, MaxPeers: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	p := newRawPeer(t, "127.0.6.31")
	ihAt := func(i int) (ih [20]byte) {
		binary.BigEndian.PutUint32(ih[:], uint32(i))
		return ih
	}
	tok := *p.query(n.Addr(), "get_peers", ihArg(ihAt(0))).R.Token
	for i := 1; i <= 50; i++ {
		if m := p.query(n.Addr(), "announce_peer", tokenArgs(ihAt(i), 6881, tok)); m.E == nil {
			t.Fatalf("token for infohash 0 accepted for infohash %d", i)
		}
	}
	for i := range 1100 {
		tok := *p.query(n.Addr(), "get_peers", ihArg(ihAt(i))).R.Token
		p.query(n.Addr(), "announce_peer", tokenArgs(ihAt(i), 6881, tok))
	}
	if peers, ihs := n.peers.counts(); ihs != DefaultMaxInfohashesPerIP || peers != DefaultMaxInfohashesPerIP {
		t.Fatalf("one IP announcing 1,100 infohashes: %d peers under %d infohashes stored, want %d", peers, ihs, DefaultMaxInfohashesPerIP)
	}
	other := newRawPeer(t, "127.0.6.32")
	ih := ihAt(5000)
	tok = *other.query(n.Addr(), "get_peers", ihArg(ih)).R.Token
	other.query(n.Addr(), "announce_peer", tokenArgs(ih, 7000, tok))
	if got := n.peers.get(ih, 10); len(got) != 1 {
		t.Fatalf("another host's announce after the flood: stored %v", got)
	}
}

// listenReusePort binds a UDP socket that another socket may share (SO_REUSEPORT), so a test can
// send from a real node's own address.
func listenReusePort(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	return pc.(*net.UDPConn)
}

// Row 12: queries that claim a known node's address with another id change nothing: not the id
// we hold for it, not our answers, not the routing table, not routing.db.
func TestSpoofedQueriesKeepNodeID(t *testing.T) {
	state := filepath.Join(t.TempDir(), "routing.db")
	a, err := New(Config{Addr: netip.MustParseAddrPort("127.0.6.40:0"), Rate: -1, SourceRate: -1, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bConn := listenReusePort(t, "127.0.6.41:0")
	bID := [20]byte{'r', 'e', 'a', 'l'}
	b, err := New(Config{Conn: bConn, NodeID: bID, Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.FindNode(context.Background(), b.Addr(), bID); err != nil {
		t.Fatalf("a FindNode b: %v", err)
	}
	spoofer := listenReusePort(t, b.Addr().String())
	defer spoofer.Close()
	fakeID := [20]byte{'f', 'a', 'k', 'e'}
	for i, q := range []struct{ q, args string }{
		{"ping", ""}, {"find_node", "6:target20:" + string(fakeID[:])},
		{"get_peers", ihArg(fakeID)}, {"ping", ""},
	} {
		if _, err := spoofer.WriteToUDPAddrPort(queryBytes(fakeID, q.q, q.args, fmt.Sprint(i)), a.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	// A third party's query is answered after the spoofed ones (one read loop, in order).
	asker := newRawPeer(t, "127.0.6.42")
	m := asker.query(a.Addr(), "find_node", "6:target20:"+string(fakeID[:]))
	var listed []krpc.NodeInfo
	m.R.ForAllNodes(func(ni krpc.NodeInfo) { listed = append(listed, ni) })
	if len(listed) != 1 || listed[0].ID != bID {
		t.Fatalf("a lists %v, want only b with its real id", listed)
	}
	for _, ni := range a.srv.Nodes() {
		if ni.ID == fakeID {
			t.Fatalf("routing table holds the spoofed id: %v", ni)
		}
	}
	if err := a.Save(); err != nil {
		t.Fatal(err)
	}
	st, err := routing.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range st.Nodes {
		if sn.Addr == b.Addr() && sn.ID != bID {
			t.Fatalf("routing.db holds b under id %x", sn.ID)
		}
		if sn.ID == fakeID {
			t.Fatalf("routing.db holds the spoofed id at %v", sn.Addr)
		}
	}
}

// FuzzNodePackets sends each input as a UDP packet to a running node, then a ping: the ping must
// still be answered, the packet must cost a bounded number of bytes per input byte, and no
// goroutine may be left behind.
func FuzzNodePackets(f *testing.F) {
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.6.50:0"), Rate: -1, SourceRate: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	p := newRawPeer(f, "127.0.6.51")
	id := p.id
	for _, s := range []string{
		"d1:t134217000:xx",
		"d1:rd2:id20:abcdefghij01234567895:nodes99999999:e1:t2:aa1:y1:re",
		"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:xxxxxxxxe1:q13:announce_peer1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q17:sample_infohashes1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567891:v" + strings.Repeat("l", 40) + strings.Repeat("e", 40) + "e1:q3:put1:t2:aa1:y1:qe",
		"d1:eli201e5:oopse1:t2:aa1:y1:ee",
		"d1:q9:get_peers1:t0:1:y1:qe",
	} {
		f.Add([]byte(s))
	}
	ping := queryBytes(id, "ping", "", "sync")
	sync := func(t *testing.T) {
		if _, err := p.c.WriteToUDPAddrPort(ping, n.Addr()); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			b := p.recv(10 * time.Second)
			if b == nil {
				break
			}
			if bytes.Contains(b, []byte("1:t4:sync")) {
				return
			}
		}
		t.Fatal("ping unanswered after the input")
	}
	baseline := runtime.NumGoroutine()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 65000 {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := p.c.WriteToUDPAddrPort(b, n.Addr()); err != nil {
			return // empty or oversized datagram
		}
		sync(t)
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 256<<10+64*uint64(len(b)) {
			t.Fatalf("a %d-byte packet cost %d bytes", len(b), got)
		}
		if g := runtime.NumGoroutine(); g > baseline+8 {
			t.Fatalf("%d goroutines, %d at the start", g, baseline)
		}
	})
}

// A node that queries us is pinged, and known only once it answers the ping: a query alone (which
// may be spoofed) adds nobody.
func TestQueriersVerifiedByPing(t *testing.T) {
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.6.60:0"), Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	silent, live := newRawPeer(t, "127.0.6.61"), newRawPeer(t, "127.0.6.62")
	silent.query(n.Addr(), "ping", "")
	live.send(n.Addr(), queryBytes(live.id, "ping", "", "qq"))
	buf := make([]byte, 2048)
	for !n.nodes.answered(live.addr()) {
		live.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, _, err := live.c.ReadFrom(buf)
		if err != nil {
			t.Fatal("the node never pinged a querier")
		}
		var m krpc.Msg
		if bencode.Unmarshal(buf[:k], &m) == nil && m.Y == "q" && m.Q == "ping" {
			live.send(n.Addr(), fmt.Appendf(nil, "d1:rd2:id20:%se1:t%d:%s1:y1:re", live.id[:], len(m.T), m.T))
			// The answer is recorded by the pinging goroutine: poll, bounded.
			for i := 0; i < 500 && !n.nodes.answered(live.addr()); i++ {
				time.Sleep(10 * time.Millisecond)
			}
			break
		}
	}
	if !n.nodes.answered(live.addr()) {
		t.Fatal("a querier that answered our ping is not known")
	}
	if n.nodes.answered(silent.addr()) {
		t.Fatal("a querier that never answered is known")
	}
	for _, ni := range n.srv.Nodes() {
		if ni.ID == silent.id {
			t.Fatal("a querier that never answered is in the routing table")
		}
	}
}
