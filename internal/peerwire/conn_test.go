package peerwire_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

var (
	testIH   = [20]byte{'t', 'e', 's', 't', 'i', 'h'}
	dialerID = [20]byte{'-', 'D', 'D', '0', '0', '0', '1', '-'}
	accID    = [20]byte{'-', 'A', 'A', '0', '0', '0', '1', '-'}
)

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func addrOf(ln net.Listener) netip.AddrPort { return ln.Addr().(*net.TCPAddr).AddrPort() }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pair returns the two ends of a handshaken loopback connection.
func pair(t testing.TB, od, oa peerwire.Options) (dialer, acceptor *peerwire.Conn) {
	t.Helper()
	ln := listen(t)
	type res struct {
		c   *peerwire.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		c, err := peerwire.Accept(testCtx(t), nc, func(ih [20]byte) bool { return ih == testIH }, oa)
		ch <- res{c, err}
	}()
	d, err := peerwire.Dial(testCtx(t), addrOf(ln), testIH, od)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	a := <-ch
	if a.err != nil {
		t.Fatalf("Accept: %v", a.err)
	}
	t.Cleanup(func() { d.Close(); a.c.Close() })
	return d, a.c
}

// rawPeer accepts one connection and hands it to fn, which plays a hand-written peer.
func rawPeer(t *testing.T, fn func(nc net.Conn)) netip.AddrPort {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		fn(nc)
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return addrOf(ln)
}

func TestHandshakeAndExtendedHandshake(t *testing.T) {
	extD := peerwire.ExtHandshake{M: map[string]int{"ut_metadata": 3}, V: "dialer/1", Reqq: 250}
	extA := peerwire.ExtHandshake{M: map[string]int{"ut_metadata": 2, "ut_pex": 1}, MetadataSize: 1234, V: "acceptor/1", Port: 6881}
	d, a := pair(t, peerwire.Options{PeerID: dialerID, ExtHandshake: extD, DHT: true}, peerwire.Options{PeerID: accID, ExtHandshake: extA})
	if d.PeerID() != accID || a.PeerID() != dialerID {
		t.Errorf("peer ids: dialer sees %q, acceptor sees %q", d.PeerID(), a.PeerID())
	}
	if d.InfoHash() != testIH || a.InfoHash() != testIH {
		t.Errorf("infohashes %x %x", d.InfoHash(), a.InfoHash())
	}
	if !d.SupportsExtensions() || !a.SupportsExtensions() || !d.SupportsFast() || !a.SupportsFast() {
		t.Errorf("extension bits not negotiated")
	}
	if !a.SupportsDHT() || d.SupportsDHT() {
		t.Errorf("DHT bit: acceptor sees %v (want true), dialer sees %v (want false)", a.SupportsDHT(), d.SupportsDHT())
	}
	if d.RemoteAddr().Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("RemoteAddr %v", d.RemoteAddr())
	}
	for _, side := range []struct {
		c    *peerwire.Conn
		want peerwire.ExtHandshake
	}{{d, extA}, {a, extD}} {
		if side.c.PeerExt().M != nil {
			t.Errorf("PeerExt filled in before it was read")
		}
		m, err := side.c.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != peerwire.Extended || m.ExtID != 0 {
			t.Fatalf("first message %v, want the extended handshake", m)
		}
		got := side.c.PeerExt()
		side.want.YourIP = []byte{127, 0, 0, 1} // filled in by the sender
		if !reflect.DeepEqual(got, side.want) {
			t.Errorf("PeerExt = %+v, want %+v", got, side.want)
		}
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	d, a := pair(t, peerwire.Options{}, peerwire.Options{})
	msgs := []peerwire.Message{
		{Keepalive: true}, {ID: peerwire.Choke}, {ID: peerwire.Unchoke}, {ID: peerwire.Interested},
		{ID: peerwire.NotInterested}, {ID: peerwire.Have, Index: 42}, {ID: peerwire.Bitfield, Bitfield: []byte{0xaa, 0x55, 0x80}},
		{ID: peerwire.Request, Index: 1, Begin: 16384, Length: 16384}, {ID: peerwire.Piece, Index: 1, Begin: 16384, Block: bytes.Repeat([]byte{7}, 16384)},
		{ID: peerwire.Cancel, Index: 1, Begin: 16384, Length: 16384}, {ID: peerwire.Port, Port: 51413},
		{ID: peerwire.Suggest, Index: 5}, {ID: peerwire.HaveAll}, {ID: peerwire.HaveNone},
		{ID: peerwire.Reject, Index: 3, Begin: 0, Length: 16384}, {ID: peerwire.AllowedFast, Index: 9},
		{ID: peerwire.Extended, ExtID: 2, Payload: []byte("d8:msg_typei0e5:piecei0ee")},
		{ID: peerwire.Bitfield, Bitfield: make([]byte, peerwire.MaxBitfieldLen)}, // larger than MaxMessageLen: allowed for bitfields
		{ID: 200, Payload: []byte("unknown")},
	}
	errc := make(chan error, 1)
	go func() { errc <- d.WriteMsgs(msgs...) }()
	if _, err := a.ReadMsg(); err != nil { // the extended handshake
		t.Fatal(err)
	}
	for _, want := range msgs {
		got, err := a.ReadMsg()
		if err != nil {
			t.Fatalf("reading %v: %v", want, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func normalize(m peerwire.Message) peerwire.Message {
	for _, b := range []*[]byte{&m.Block, &m.Bitfield, &m.Payload} {
		if len(*b) == 0 {
			*b = nil
		}
	}
	return m
}

func TestWriteRefusesOversizedMessage(t *testing.T) {
	d, _ := pair(t, peerwire.Options{}, peerwire.Options{})
	err := d.WriteMsg(peerwire.Message{ID: peerwire.Piece, Block: make([]byte, peerwire.MaxMessageLen)})
	if !errors.Is(err, peerwire.ErrMessageTooLarge) {
		t.Fatalf("WriteMsg of an oversized piece: %v", err)
	}
}

func TestAcceptUnknownInfoHash(t *testing.T) {
	ln := listen(t)
	errc := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		_, err = peerwire.Accept(testCtx(t), nc, func([20]byte) bool { return false }, peerwire.Options{})
		errc <- err
	}()
	if _, err := peerwire.Dial(testCtx(t), addrOf(ln), testIH, peerwire.Options{}); err == nil {
		t.Error("Dial succeeded against a peer that does not serve the torrent")
	}
	if err := <-errc; !errors.Is(err, peerwire.ErrInfoHashMismatch) {
		t.Fatalf("Accept: %v, want ErrInfoHashMismatch", err)
	}
}

func TestDialPeerAnswersOtherInfoHash(t *testing.T) {
	addr := rawPeer(t, func(nc net.Conn) {
		io.ReadFull(nc, make([]byte, peerwire.HandshakeLen))
		nc.Write(peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: [20]byte{'o', 't', 'h', 'e', 'r'}}))
		io.Copy(io.Discard, nc)
	})
	_, err := peerwire.Dial(testCtx(t), addr, testIH, peerwire.Options{})
	if !errors.Is(err, peerwire.ErrInfoHashMismatch) {
		t.Fatalf("Dial: %v, want ErrInfoHashMismatch", err)
	}
}

func TestAcceptBadHandshake(t *testing.T) {
	ln := listen(t)
	errc := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		_, err = peerwire.Accept(testCtx(t), nc, func([20]byte) bool { return true }, peerwire.Options{})
		errc <- err
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("GET /announce?info_hash=abc HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
	if err := <-errc; !errors.Is(err, peerwire.ErrBadHandshake) {
		t.Fatalf("Accept of an HTTP request: %v, want ErrBadHandshake", err)
	}
}

// A peer that accepts TCP and then says nothing: cancelling the context must unblock Dial.
func TestDialCancelUnblocks(t *testing.T) {
	accepted := make(chan struct{})
	addr := rawPeer(t, func(nc net.Conn) {
		close(accepted)
		io.Copy(io.Discard, nc)
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-accepted
		cancel()
	}()
	_, err := peerwire.Dial(ctx, addr, testIH, peerwire.Options{Timeout: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial after cancel: %v, want context.Canceled", err)
	}
}

func TestDialHandshakeTimeout(t *testing.T) {
	addr := rawPeer(t, func(nc net.Conn) { io.Copy(io.Discard, nc) })
	_, err := peerwire.Dial(testCtx(t), addr, testIH, peerwire.Options{Timeout: 100 * time.Millisecond})
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Dial to a silent peer: %v, want a timeout", err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is not a deadline error", err)
	}
}

func TestAcceptCancelUnblocks(t *testing.T) {
	ln := listen(t)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = peerwire.Accept(ctx, sc, func([20]byte) bool { return true }, peerwire.Options{Timeout: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Accept with a cancelled context: %v", err)
	}
}

// handshakeThen is a raw peer that completes the handshake without extensions, then writes b.
func handshakeThen(t *testing.T, b []byte) netip.AddrPort {
	return rawPeer(t, func(nc net.Conn) {
		io.ReadFull(nc, make([]byte, peerwire.HandshakeLen))
		nc.Write(peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: testIH}))
		nc.Write(b)
		io.Copy(io.Discard, nc)
	})
}

func TestReadMsgLengthLimits(t *testing.T) {
	frame := func(n uint32, rest ...byte) []byte { return append(binary.BigEndian.AppendUint32(nil, n), rest...) }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"4 GiB prefix", frame(0xffffffff), peerwire.ErrMessageTooLarge},
		{"piece above the cap", frame(peerwire.MaxMessageLen+1, peerwire.Piece), peerwire.ErrMessageTooLarge},
		{"bitfield above its cap", frame(peerwire.MaxBitfieldLen+2, peerwire.Bitfield), peerwire.ErrMessageTooLarge},
		{"have of 3 bytes", frame(4, peerwire.Have, 0, 0, 1), peerwire.ErrBadMessage},
		{"request of 14 bytes", frame(14, append([]byte{peerwire.Request}, make([]byte, 13)...)...), peerwire.ErrBadMessage},
		{"choke with payload", frame(2, peerwire.Choke, 0), peerwire.ErrBadMessage},
		{"empty extended", frame(1, peerwire.Extended), peerwire.ErrBadMessage},
		{"extended handshake not a dict", frame(4, peerwire.Extended, 0, 'i', 'e'), peerwire.ErrBadExtHandshake},
		{"truncated", frame(100, peerwire.Piece, 1), io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			if tc.want == io.ErrUnexpectedEOF {
				b = append([]byte(nil), b...)
			}
			addr := rawPeer(t, func(nc net.Conn) {
				io.ReadFull(nc, make([]byte, peerwire.HandshakeLen))
				nc.Write(peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: testIH}))
				nc.Write(b)
				if tc.want != io.ErrUnexpectedEOF {
					io.Copy(io.Discard, nc)
				}
			})
			c, err := peerwire.Dial(testCtx(t), addr, testIH, peerwire.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if c.SupportsExtensions() {
				t.Error("SupportsExtensions with a peer that did not set the bit")
			}
			m, err := c.ReadMsg()
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadMsg: %v, %v; want %v", m, err, tc.want)
			}
		})
	}
}

// Without BEP 10 on the other side we must not send an extended handshake.
func TestNoExtendedHandshakeWithoutBit(t *testing.T) {
	got := make(chan []byte, 1)
	addr := rawPeer(t, func(nc net.Conn) {
		io.ReadFull(nc, make([]byte, peerwire.HandshakeLen))
		nc.Write(peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: testIH}))
		b := make([]byte, 5)
		io.ReadFull(nc, b)
		got <- b
	})
	c, err := peerwire.Dial(testCtx(t), addr, testIH, peerwire.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMsg(peerwire.Message{ID: peerwire.Interested}); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, []byte{0, 0, 0, 1, peerwire.Interested}) {
		t.Fatalf("first message on the wire %x, want Interested", b)
	}
}

func TestUnreadOrder(t *testing.T) {
	d, a := pair(t, peerwire.Options{}, peerwire.Options{})
	if err := d.WriteMsg(peerwire.Message{ID: peerwire.Have, Index: 99}); err != nil {
		t.Fatal(err)
	}
	a.Unread(peerwire.Message{ID: peerwire.Have, Index: 3})
	a.Unread(peerwire.Message{ID: peerwire.Have, Index: 1}, peerwire.Message{ID: peerwire.Have, Index: 2})
	var got []uint32
	for len(got) < 4 {
		m, err := a.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if m.ID == peerwire.Have {
			got = append(got, m.Index)
		}
	}
	if !reflect.DeepEqual(got, []uint32{1, 2, 3, 99}) {
		t.Fatalf("order %v, want pushed-back messages first, then the wire", got)
	}
}

// One reader and two writers per side, both directions at once: run with -race.
func TestConcurrentReadWrite(t *testing.T) {
	d, a := pair(t, peerwire.Options{}, peerwire.Options{})
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	block := bytes.Repeat([]byte{1}, 16384)
	for _, c := range []*peerwire.Conn{d, a} {
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					if err := c.WriteMsg(peerwire.Message{ID: peerwire.Piece, Index: uint32(w), Begin: uint32(i), Block: block}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := [2]uint32{}
			for next[0] < n || next[1] < n {
				m, err := c.ReadMsg()
				if err != nil {
					errs <- err
					return
				}
				if m.ID != peerwire.Piece {
					continue
				}
				if m.Index > 1 || m.Begin != next[m.Index] || !bytes.Equal(m.Block, block) {
					errs <- errors.New("messages interleaved or reordered: " + m.String())
					return
				}
				next[m.Index]++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestReadMsgIntoUsesCallerBuffers checks that blocks land in the buffers the caller chooses,
// that other messages are unaffected, and that a refused block (nil or a wrong length) is
// skipped: it comes back with its length and no bytes.
func TestReadMsgIntoUsesCallerBuffers(t *testing.T) {
	d, a := pair(t, peerwire.Options{}, peerwire.Options{})
	block := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	msgs := []peerwire.Message{
		{ID: peerwire.Piece, Index: 0, Begin: 0, Block: block(1, 16384)},
		{ID: peerwire.Have, Index: 7},
		{ID: peerwire.Piece, Index: 0, Begin: 16384, Block: block(2, 16384)},
		{ID: peerwire.Piece, Index: 5, Begin: 0, Block: block(3, 100)},   // caller returns nil
		{ID: peerwire.Piece, Index: 6, Begin: 0, Block: block(4, 16384)}, // caller returns a wrong length
		{ID: peerwire.Extended, ExtID: 3, Payload: block(5, 9000)},
	}
	errc := make(chan error, 1)
	go func() { errc <- d.WriteMsgs(msgs...) }()
	if _, err := a.ReadMsg(); err != nil { // the extended handshake
		t.Fatal(err)
	}
	run := make([]byte, 2*16384)
	dst := func(index, begin uint32, n int) []byte {
		switch index {
		case 0:
			return run[begin : int(begin)+n]
		case 6:
			return run[:1]
		}
		return nil
	}
	for _, want := range msgs {
		got, err := a.ReadMsgInto(dst)
		if err != nil {
			t.Fatalf("reading %v: %v", want, err)
		}
		if want.ID == peerwire.Piece && (want.Index == 5 || want.Index == 6) {
			want = peerwire.Message{ID: peerwire.Piece, Index: want.Index, Begin: want.Begin, Length: uint32(len(want.Block))}
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Fatalf("got %v, want %v", got, want)
		}
		if want.ID == peerwire.Piece && want.Index == 0 && &got.Block[0] != &run[want.Begin] {
			t.Fatalf("block %v was not read into the caller's buffer", want)
		}
	}
	if !bytes.Equal(run, append(block(1, 16384), block(2, 16384)...)) {
		t.Fatal("caller's buffer does not hold both blocks")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := a.Buffered(); n != 0 {
		t.Fatalf("Buffered = %d after reading everything sent", n)
	}
}
