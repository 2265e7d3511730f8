package dht

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

func TestTokens(t *testing.T) {
	tk := newTokens()
	now := time.Unix(1_700_000_000, 0)
	tk.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("127.10.0.1"), netip.MustParseAddr("127.10.0.2")
	ih, other := [20]byte{1}, [20]byte{2}
	tok := tk.issue(a, ih)
	if !tk.valid(tok, a, ih) || !tk.valid(tok, netip.MustParseAddr("::ffff:127.10.0.1"), ih) {
		t.Fatal("fresh token rejected")
	}
	if tk.valid(tok, b, ih) || tk.valid("", a, ih) || tk.valid(tok[:4], a, ih) {
		t.Fatal("token accepted for another IP or truncated")
	}
	if tk.valid(tok, a, other) {
		t.Fatal("token accepted for another infohash")
	}
	now = now.Add(tokenEpoch)
	if !tk.valid(tok, a, ih) {
		t.Fatal("token rejected one epoch later")
	}
	now = now.Add(2 * tokenEpoch)
	if tk.valid(tok, a, ih) {
		t.Fatal("token accepted three epochs later")
	}
}

// FuzzHandleQuery feeds arbitrary packets to the node's packet filter and query handler, as the
// socket would: it must never panic, whatever the arguments.
func FuzzHandleQuery(f *testing.F) {
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.5.1:0"), Rate: -1, SourceRate: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 5, 2)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sink.Close() })
	from := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, s := range []string{
		"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:xxxxxxxxe1:q13:announce_peer1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567894:porti-1e5:token0:e1:q13:announce_peer1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q17:sample_infohashes1:t2:aa1:y1:qe",
		"d1:q9:get_peers1:t0:1:y1:qe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n.inbound(b, from)
	})
}

// announce_peer is accepted only with a token this node issued to the same IP in get_peers.
func TestAnnounceNeedsToken(t *testing.T) {
	n, err := New(Config{Addr: netip.MustParseAddrPort("127.0.5.3:0"), Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 5, 4)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := net.UDPAddrFromAddrPort(n.Addr())
	ih := "mnopqrstuvwxyz123456"
	roundTrip := func(q string) krpc.Msg {
		t.Helper()
		if _, err := c.WriteTo([]byte(q), to); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no reply to %q: %v", q, err)
			}
			var m krpc.Msg
			if err := bencode.Unmarshal(buf[:k], &m); err != nil {
				t.Fatalf("bad reply %q: %v", buf[:k], err)
			}
			if m.Y != "q" { // the node pings sources it does not know yet
				return m
			}
		}
	}
	announce := func(tok string) krpc.Msg {
		return roundTrip("d1:ad2:id20:abcdefghij01234567899:info_hash20:" + ih + "4:porti7777e5:token" +
			strconv.Itoa(len(tok)) + ":" + tok + "e1:q13:announce_peer1:t2:bb1:y1:qe")
	}
	if m := announce("forged!!"); m.Y != "e" || m.E == nil || m.E.Code != krpc.ErrorCodeProtocolError {
		t.Fatalf("forged token: reply %+v, want a protocol error", m)
	}
	if p, _ := n.peers.counts(); p != 0 {
		t.Fatal("peer stored with a forged token")
	}
	gp := roundTrip("d1:ad2:id20:abcdefghij01234567899:info_hash20:" + ih + "e1:q9:get_peers1:t2:aa1:y1:qe")
	if gp.R == nil || gp.R.Token == nil {
		t.Fatalf("get_peers reply without token: %+v", gp)
	}
	if m := announce(*gp.R.Token); m.Y != "r" {
		t.Fatalf("announce with issued token: %+v", m)
	}
	var key [20]byte
	copy(key[:], ih)
	if got := n.peers.get(key, 10); len(got) != 1 || got[0] != netip.MustParseAddrPort("127.0.5.4:7777") {
		t.Fatalf("stored peers %v, want [127.0.5.4:7777]", got)
	}
	// The stored peer comes back in get_peers values, port in network byte order.
	gp = roundTrip("d1:ad2:id20:abcdefghij01234567899:info_hash20:" + ih + "e1:q9:get_peers1:t2:cc1:y1:qe")
	if len(gp.R.Values) != 1 || gp.R.Values[0].Port != 7777 {
		t.Fatalf("get_peers values %v, want 127.0.5.4:7777", gp.R.Values)
	}
	// BEP 42: the reply tells the querier its address as we see it, and
	// names our client.
	me := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if !gp.IP.IP.Equal(net.IPv4(127, 0, 5, 4)) || gp.IP.Port != int(me.Port()) {
		t.Errorf("reply ip %v, want %v", gp.IP, me)
	}
	if gp.ClientId != ClientVersion {
		t.Errorf("reply v %q, want %q", gp.ClientId, ClientVersion)
	}
}

// Issue 10's stuck aria2: a client whose only contact is our node (its DHT entry point) asks us
// for peers of a torrent that someone, since gone, announced to us. The answer must name nodes
// beside that dead peer, or the client can never walk on to the nodes that know the live seed
// (aria2 asked again every 5 s for two minutes and got the dead peer alone each time).
func TestGetPeersWithValuesLeadsOn(t *testing.T) {
	ih := [20]byte{'e', 'n', 't', 'r', 'y'}
	seed := netip.MustParseAddrPort("127.0.10.50:5050")
	holder, err := New(Config{Addr: netip.MustParseAddrPort("127.0.10.1:0"), Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	holder.peers.add(ih, seed)
	entry, err := New(Config{Addr: netip.MustParseAddrPort("127.0.10.2:0"), Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer entry.Close()
	if _, err := entry.FindNode(context.Background(), holder.Addr(), holder.ID()); err != nil {
		t.Fatalf("entry never reached the holder: %v", err)
	}
	// A peer announces itself to the entry node with a real token, and goes away.
	gone := newRawPeer(t, "127.0.10.9")
	tok := *gone.query(entry.Addr(), "get_peers", ihArg(ih)).R.Token
	if m := gone.query(entry.Addr(), "announce_peer", tokenArgs(ih, 1, tok)); m.R == nil {
		t.Fatalf("announce: %+v", m)
	}
	gone.c.Close()

	for _, verified := range []bool{false, true} {
		client, err := New(Config{Addr: netip.MustParseAddrPort("127.0.10.3:0"), Rate: -1, ResendDelay: 300 * time.Millisecond, Bootstrap: []netip.AddrPort{entry.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		if verified {
			// As aria2's first query (a ping) gets it verified before its first get_peers.
			if _, err := entry.FindNode(context.Background(), client.Addr(), client.ID()); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var found []netip.AddrPort
		err = client.Lookup(ctx, ih, func(pr PeerResult) bool {
			found = append(found, pr.Peer)
			return true
		})
		cancel()
		client.Close()
		if err != nil {
			t.Fatalf("verified %v: lookup: %v", verified, err)
		}
		if !slices.Contains(found, seed) {
			t.Fatalf("verified %v: a client entering through our node found %v, never the live seed %v", verified, found, seed)
		}
	}
}
