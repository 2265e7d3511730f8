package dht

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// forgedGetPeersReply is a get_peers answer naming peer, with transaction id tid.
func forgedGetPeersReply(id [20]byte, tid []byte, peer netip.AddrPort) []byte {
	v := compactAddr(peer)
	return fmt.Appendf(nil, "d1:rd2:id20:%s5:token4:fake6:valuesl%d:%see1:t%d:%s1:y1:re", id[:], len(v), v, len(tid), tid)
}

// A sender that forges answers to our queries is never believed: not from another address, and
// not from the queried node's own address (as an off-path host can forge it) with transaction
// ids guessed from the ids it has seen us use. Its fake peer never appears in a lookup's results,
// while the honest node's peer does.
func TestForgedAnswersNeverBelieved(t *testing.T) {
	ih := [20]byte{'f', 'o', 'r', 'g', 'e', 'd'}
	realPeer := netip.MustParseAddrPort("127.0.9.50:5050")
	fakePeer := netip.MustParseAddrPort("127.0.9.66:6666")

	honest, err := New(Config{Addr: netip.MustParseAddrPort("127.0.9.1:0"), Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer honest.Close()
	honest.peers.add(ih, realPeer)
	// The queried node that never answers (gone, or slow), and the spoofer that sends from its
	// address. Neither reads: the spoofer never sees our queries.
	silent := listenReusePort(t, "127.0.9.2:0")
	defer silent.Close()
	silentAddr := silent.LocalAddr().(*net.UDPAddr).AddrPort()
	atSilent := listenReusePort(t, silentAddr.String())
	defer atSilent.Close()
	elsewhere := newRawPeer(t, "127.0.9.4")

	a, err := New(Config{Addr: netip.MustParseAddrPort("127.0.9.3:0"), Rate: -1, ResendDelay: 300 * time.Millisecond,
		Bootstrap: []netip.AddrPort{honest.Addr(), silentAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	// Learn our current transaction id: any query from a new address earns a verification ping.
	probe := newRawPeer(t, "127.0.9.5")
	probe.send(a.Addr(), queryBytes(probe.id, "ping", "", "pp"))
	var seen []byte
	buf := make([]byte, 2048)
	for seen == nil {
		probe.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, _, err := probe.c.ReadFrom(buf)
		if err != nil {
			t.Fatal("no verification ping to learn a transaction id from")
		}
		var m krpc.Msg
		if bencode.Unmarshal(buf[:k], &m) == nil && m.Y == "q" {
			seen = []byte(m.T)
		}
	}
	counter, k := binary.Uvarint(seen)
	if k <= 0 {
		t.Fatalf("transaction id %x does not start with a varint", seen)
	}
	suffix := seen[k:] // whatever follows the counter, replayed with guessed counters
	// Guesses: the next counters alone, and with the suffix we saw.
	var guesses [][]byte
	for i := uint64(1); i <= 64; i++ {
		g := binary.AppendUvarint(nil, counter+i)
		guesses = append(guesses, g, append(g[:len(g):len(g)], suffix...))
	}
	var silentID [20]byte
	copy(silentID[:], "silent-node-id------")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var forged int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, g := range guesses {
				pkt := forgedGetPeersReply(silentID, g, fakePeer)
				if _, err := atSilent.WriteToUDPAddrPort(pkt, a.Addr()); err == nil {
					forged++
				}
				elsewhere.c.WriteToUDPAddrPort(pkt, a.Addr())
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var found []netip.AddrPort
	err = a.Lookup(ctx, ih, func(pr PeerResult) bool {
		found = append(found, pr.Peer)
		return true
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	for _, p := range found {
		if p == fakePeer {
			t.Fatalf("a forged answer was believed: the lookup found %v (after %d forged packets)", found, forged)
		}
	}
	if len(found) != 1 || found[0] != realPeer {
		t.Fatalf("lookup found %v, want only the honest node's %v", found, realPeer)
	}
	if a.Stats().AnswersDropped == 0 {
		t.Fatal("no forged answer was counted as dropped")
	}
}

// Our transaction ids go out signed and come back restored, byte for byte, to the library's own;
// anything else in the packet is left alone.
func TestTxidRoundTrip(t *testing.T) {
	x := newTxids()
	to := netip.MustParseAddrPort("127.0.9.20:6881")
	q := []byte("d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:\x01\x021:y1:qe")
	out := x.outgoing(q, to)
	m, err := decodeQuery(out)
	if err != nil || m.T == "\x01\x02" || len(m.T) != 2+txMACLen || m.T[:2] != "\x01\x02" {
		t.Fatalf("signed query %q (t %q, err %v)", out, m.T, err)
	}
	if got := x.outgoing(q, to); !bytes.Equal(got, out) {
		t.Fatalf("a resend got another id: %q vs %q", got, out)
	}
	reply := fmt.Appendf(nil, "d1:rd2:id20:bbbbbbbbbbbbbbbbbbbbe1:t%d:%s1:y1:re", len(m.T), m.T)
	n, ok := x.incoming(reply, to)
	if want := "d1:rd2:id20:bbbbbbbbbbbbbbbbbbbbe1:t2:\x01\x021:y1:re"; !ok || string(reply[:n]) != want {
		t.Fatalf("restored %q (ok %v), want %q", reply[:n], ok, want)
	}
	other := netip.MustParseAddrPort("127.0.9.21:6881")
	reply = fmt.Appendf(nil, "d1:rd2:id20:bbbbbbbbbbbbbbbbbbbbe1:t%d:%s1:y1:re", len(m.T), m.T)
	if _, ok := x.incoming(reply, other); ok {
		t.Fatal("an answer from another address was accepted")
	}
	for _, bad := range []string{"", "d", "de", "d1:t3:abce", "d1:t20:" + string(bytes.Repeat([]byte{'x'}, 20)) + "e", "l1:te", "d1:ti5ee"} {
		if _, ok := x.incoming([]byte(bad), to); ok {
			t.Fatalf("accepted %q", bad)
		}
	}
	// Replies we write ourselves are not queries: untouched.
	r := []byte("d1:rd2:id20:aaaaaaaaaaaaaaaaaaaae1:t2:xy1:y1:re")
	if got := x.outgoing(r, to); !bytes.Equal(got, r) {
		t.Fatalf("a reply was rewritten: %q", got)
	}
}

// FuzzTxids feeds arbitrary packets to both directions: no panic, incoming allocates at most a
// syntax error whatever the input's size and never grows the packet, and whatever outgoing signs, incoming restores to the very bytes the
// library wrote.
func FuzzTxids(f *testing.F) {
	for _, s := range []string{
		"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t1:\x001:y1:qe",
		"d1:rd2:id20:bbbbbbbbbbbbbbbbbbbbe1:t8:\x01\x02abcdef1:y1:re",
		"d1:eli201e4:oopse1:t7:\x05abcdef1:y1:ee",
		"d1:t0:1:y1:qe", "d1:t11:\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x011:y1:qe", "de", "",
	} {
		f.Add([]byte(s))
	}
	x := newTxids()
	to := netip.MustParseAddrPort("127.0.9.30:6881")
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		var n int
		var ok bool
		if allocs := testing.AllocsPerRun(20, func() { copy(in, b); n, ok = x.incoming(in, to) }); allocs > 1 {
			t.Fatalf("incoming allocated %v times", allocs)
		}
		if ok && n > len(b) {
			t.Fatalf("incoming grew %d bytes to %d", len(b), n)
		}
		out := x.outgoing(b, to)
		if bytes.Equal(out, b) {
			return
		}
		back := bytes.Clone(out)
		k, ok := x.incoming(back, to)
		if !ok || !bytes.Equal(back[:k], b) {
			t.Fatalf("signed %q, restored %q (ok %v), want %q", out, back[:k], ok, b)
		}
	})
}
