package peerwire_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/mse"

	"github.com/magnetget/magnetget/internal/peerwire"
)

var otherIH = [20]byte{'o', 't', 'h', 'e', 'r'}

// mseOpts serves testIH (and otherIH, so the skey search has more than one candidate) to
// encrypted peers.
func mseOpts() peerwire.Options {
	return peerwire.Options{
		PeerID:       accID,
		ExtHandshake: peerwire.ExtHandshake{M: map[string]int{"ut_metadata": 3}, V: "acceptor"},
		InfoHashes:   func() [][20]byte { return [][20]byte{otherIH, testIH} },
	}
}

type acceptResult struct {
	c   *peerwire.Conn
	err error
}

// acceptOne accepts one connection on ln with peerwire.Accept serving testIH and otherIH.
func acceptOne(t *testing.T, ln net.Listener, ctx context.Context, o peerwire.Options) <-chan acceptResult {
	t.Helper()
	ch := make(chan acceptResult, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			ch <- acceptResult{nil, err}
			return
		}
		c, err := peerwire.Accept(ctx, nc, func(ih [20]byte) bool { return ih == testIH || ih == otherIH }, o)
		ch <- acceptResult{c, err}
	}()
	return ch
}

func dialRaw(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second)) // a bug must fail the test, not hang it
	return nc
}

// readWireMsg reads one length-prefixed message from r, as a client would.
func readWireMsg(r io.Reader) (peerwire.Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return peerwire.Message{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > peerwire.MaxMessageLen {
		return peerwire.Message{}, fmt.Errorf("length %d", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return peerwire.Message{}, err
	}
	return peerwire.DecodeMessage(b)
}

// TestAcceptMSE: a client that opens with the MSE initiator handshake (as libtorrent and aria2
// do) reaches Accept, completes the BT and extended handshakes over the negotiated stream, and
// blocks travel both ways through it (including the batched writev path for blocks we send).
func TestAcceptMSE(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provides mse.CryptoMethod
		inIA     bool // send the BT handshake as MSE initial payload (libtorrent does)
		want     peerwire.Crypto
	}{
		{"rc4", mse.CryptoMethodRC4, false, peerwire.CryptoMSERC4},
		{"rc4-handshake-in-IA", mse.CryptoMethodRC4, true, peerwire.CryptoMSERC4},
		{"plaintext", mse.CryptoMethodPlaintext, false, peerwire.CryptoMSEPlaintext},
		{"both-offered-plaintext-chosen", mse.AllSupportedCrypto, true, peerwire.CryptoMSEPlaintext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := listen(t)
			ch := acceptOne(t, ln, testCtx(t), mseOpts())
			nc := dialRaw(t, ln)

			var res [8]byte
			res[5] |= 0x10 // BEP 10
			hs := peerwire.AppendHandshake(nil, peerwire.Handshake{Reserved: res, InfoHash: testIH, PeerID: dialerID})
			var ia []byte
			if tc.inIA {
				ia = hs
			}
			rw, method, err := mse.InitiateHandshake(nc, testIH[:], ia, tc.provides)
			if err != nil {
				t.Fatalf("MSE initiate: %v", err)
			}
			if tc.provides != mse.AllSupportedCrypto && method != tc.provides {
				t.Fatalf("negotiated %v, want %v", method, tc.provides)
			}
			if !tc.inIA {
				if _, err := rw.Write(hs); err != nil {
					t.Fatal(err)
				}
			}
			var got [peerwire.HandshakeLen]byte
			if _, err := io.ReadFull(rw, got[:]); err != nil {
				t.Fatalf("reading acceptor's handshake: %v", err)
			}
			h, err := peerwire.ParseHandshake(got[:])
			if err != nil || h.InfoHash != testIH || h.PeerID != accID {
				t.Fatalf("acceptor's handshake %+v, %v", h, err)
			}
			m, err := readWireMsg(rw)
			if err != nil || m.ID != peerwire.Extended || m.ExtID != 0 {
				t.Fatalf("want extended handshake, got %+v, %v", m, err)
			}
			if eh, err := peerwire.DecodeExtHandshake(m.Payload); err != nil || eh.V != "acceptor" {
				t.Fatalf("extended handshake %+v, %v", eh, err)
			}

			r := <-ch
			if r.err != nil {
				t.Fatalf("Accept: %v", r.err)
			}
			c := r.c
			defer c.Close()
			if c.Crypto() != tc.want || c.InfoHash() != testIH || c.PeerID() != dialerID {
				t.Fatalf("Conn: crypto %v infohash %x peer %q, want %v", c.Crypto(), c.InfoHash(), c.PeerID(), tc.want)
			}

			// Client -> us: extended handshake then a block, read into a caller buffer.
			block := bytes.Repeat([]byte("0123456789abcdef"), 1024)
			var out []byte
			out = peerwire.AppendMessage(out, peerwire.Message{ID: peerwire.Extended, Payload: peerwire.EncodeExtHandshake(peerwire.ExtHandshake{V: "initiator"})})
			out = peerwire.AppendMessage(out, peerwire.Message{ID: peerwire.Piece, Index: 7, Begin: 16384, Block: block})
			if _, err := rw.Write(out); err != nil {
				t.Fatal(err)
			}
			if m, err := c.ReadMsg(); err != nil || m.ID != peerwire.Extended || c.PeerExt().V != "initiator" {
				t.Fatalf("ReadMsg: %+v, %v; PeerExt %+v", m, err, c.PeerExt())
			}
			buf := make([]byte, len(block))
			m, err = c.ReadMsgInto(func(index, begin uint32, n int) []byte { return buf[:n] })
			if err != nil || m.ID != peerwire.Piece || m.Index != 7 || m.Begin != 16384 || !bytes.Equal(m.Block, block) || &m.Block[0] != &buf[0] {
				t.Fatalf("ReadMsgInto: index %d begin %d %d bytes, %v", m.Index, m.Begin, len(m.Block), err)
			}

			// Us -> client: two blocks and a Have in one batch (the writev path on plain sockets).
			b2 := bytes.Repeat([]byte{0xa5}, 16384)
			if err := c.WriteMsgs(
				peerwire.Message{ID: peerwire.Piece, Index: 1, Begin: 0, Block: block},
				peerwire.Message{ID: peerwire.Have, Index: 9},
				peerwire.Message{ID: peerwire.Piece, Index: 1, Begin: 16384, Block: b2},
			); err != nil {
				t.Fatal(err)
			}
			for i, want := range []peerwire.Message{
				{ID: peerwire.Piece, Index: 1, Begin: 0, Block: block},
				{ID: peerwire.Have, Index: 9},
				{ID: peerwire.Piece, Index: 1, Begin: 16384, Block: b2},
			} {
				m, err := readWireMsg(rw)
				if err != nil || m.ID != want.ID || m.Index != want.Index || m.Begin != want.Begin || !bytes.Equal(m.Block, want.Block) {
					t.Fatalf("client message %d: %v (%d-byte block), %v; want %v", i, m.ID, len(m.Block), err, want.ID)
				}
			}
		})
	}
}

// TestAcceptMSEPlainStillWorks: serving encrypted peers does not stop plain ones.
func TestAcceptMSEPlainStillWorks(t *testing.T) {
	d, a := pair(t, peerwire.Options{PeerID: dialerID}, mseOpts())
	if a.Crypto() != peerwire.CryptoNone || d.Crypto() != peerwire.CryptoNone {
		t.Fatalf("crypto %v/%v, want plain", d.Crypto(), a.Crypto())
	}
	if err := d.WriteMsg(peerwire.Message{ID: peerwire.Have, Index: 3}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := a.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if m.ID == peerwire.Have {
			if m.Index != 3 {
				t.Fatalf("Have %d", m.Index)
			}
			return
		}
	}
}

// TestAcceptMSEUnknownInfoHash: an initiator whose secret key is a torrent we do not serve is
// refused with ErrInfoHashMismatch.
func TestAcceptMSEUnknownInfoHash(t *testing.T) {
	ln := listen(t)
	ch := acceptOne(t, ln, testCtx(t), mseOpts())
	nc := dialRaw(t, ln)
	unknown := [20]byte{'n', 'o', 'p', 'e'}
	go mse.InitiateHandshake(nc, unknown[:], nil, mse.AllSupportedCrypto)
	r := <-ch
	if !errors.Is(r.err, peerwire.ErrInfoHashMismatch) || !errors.Is(r.err, peerwire.ErrEncryptedHandshake) {
		t.Fatalf("Accept: %v, want ErrEncryptedHandshake and ErrInfoHashMismatch", r.err)
	}
}

// TestAcceptMSEHandshakeNamesOtherTorrent: the BT handshake inside the stream must name the
// torrent the initiator encrypted for, even if we serve the other one too.
func TestAcceptMSEHandshakeNamesOtherTorrent(t *testing.T) {
	ln := listen(t)
	ch := acceptOne(t, ln, testCtx(t), mseOpts())
	nc := dialRaw(t, ln)
	hs := peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: otherIH, PeerID: dialerID})
	if _, _, err := mse.InitiateHandshake(nc, testIH[:], hs, mse.CryptoMethodRC4); err != nil {
		t.Fatalf("MSE initiate: %v", err)
	}
	r := <-ch
	if !errors.Is(r.err, peerwire.ErrInfoHashMismatch) {
		t.Fatalf("Accept: %v, want ErrInfoHashMismatch", r.err)
	}
}

// TestAcceptGarbage: a prefix that is neither a BT nor an MSE handshake is refused with a clear
// error and never hangs Accept beyond its Timeout.
func TestAcceptGarbage(t *testing.T) {
	t.Run("plain-only refuses at the first wrong byte", func(t *testing.T) {
		// The peer sends 3 bytes and waits: Accept must not wait for a full handshake (the test
		// context, not Timeout, would end a hang).
		ln := listen(t)
		ch := acceptOne(t, ln, testCtx(t), peerwire.Options{Timeout: time.Hour})
		nc := dialRaw(t, ln)
		nc.Write([]byte("\x13Bx"))
		r := <-ch
		if !errors.Is(r.err, peerwire.ErrBadHandshake) {
			t.Fatalf("Accept: %v, want ErrBadHandshake", r.err)
		}
	})
	t.Run("mse cannot synchronise", func(t *testing.T) {
		ln := listen(t)
		ch := acceptOne(t, ln, testCtx(t), mseOpts())
		nc := dialRaw(t, ln)
		// 96 bytes of "public key" and more than the allowed 512 bytes of padding with no
		// HASH('req1', S) in it.
		go nc.Write(bytes.Repeat([]byte("garbage!"), 100))
		r := <-ch
		if !errors.Is(r.err, peerwire.ErrEncryptedHandshake) {
			t.Fatalf("Accept: %v, want ErrEncryptedHandshake", r.err)
		}
	})
	t.Run("mse short prefix times out", func(t *testing.T) {
		ln := listen(t)
		o := mseOpts()
		o.Timeout = 200 * time.Millisecond
		ch := acceptOne(t, ln, testCtx(t), o)
		nc := dialRaw(t, ln)
		nc.Write([]byte("hello"))
		r := <-ch
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("Accept: %v, want a timeout", r.err)
		}
	})
}

// TestAcceptMSECancelUnblocks: cancelling ctx in the middle of an MSE handshake returns ctx.Err().
func TestAcceptMSECancelUnblocks(t *testing.T) {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := acceptOne(t, ln, ctx, mseOpts())
	nc := dialRaw(t, ln)
	nc.Write(bytes.Repeat([]byte{7}, 96)) // a public key, then silence
	// Accept has read the key once it answers with its own 96 bytes.
	if _, err := io.ReadFull(nc, make([]byte, 96)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if r := <-ch; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Accept: %v, want context.Canceled", r.err)
	}
}

// mseClient completes an MSE (RC4) + BT handshake against Accept and returns the client's
// stream and the accepted Conn, with the acceptor's extended handshake already read.
func mseClient(t *testing.T) (io.ReadWriter, *peerwire.Conn) {
	t.Helper()
	ln := listen(t)
	ch := acceptOne(t, ln, testCtx(t), mseOpts())
	nc := dialRaw(t, ln)
	hs := peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: testIH, PeerID: dialerID})
	rw, _, err := mse.InitiateHandshake(nc, testIH[:], hs, mse.CryptoMethodRC4)
	if err != nil {
		t.Fatalf("MSE initiate: %v", err)
	}
	if _, err := io.ReadFull(rw, make([]byte, peerwire.HandshakeLen)); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return rw, r.c
}

// TestMSEConcurrentReadWrite: on an RC4 Conn, two writer goroutines and the reader run at once
// (as in swarm: uploads while downloading) without corrupting either key stream.
func TestMSEConcurrentReadWrite(t *testing.T) {
	rw, c := mseClient(t)
	const n = 100
	block := bytes.Repeat([]byte{3}, 16384)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 2 {
		wg.Add(1)
		go func() { // us -> client
			defer wg.Done()
			for i := range n {
				if err := c.WriteMsg(peerwire.Message{ID: peerwire.Piece, Index: uint32(w), Begin: uint32(i), Block: block}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(2)
	go func() { // client -> us
		defer wg.Done()
		for i := range n {
			if _, err := rw.Write(peerwire.AppendMessage(nil, peerwire.Message{ID: peerwire.Piece, Index: 5, Begin: uint32(i), Block: block})); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // client reads ours
		defer wg.Done()
		next := [2]uint32{}
		for next[0] < n || next[1] < n {
			m, err := readWireMsg(rw)
			if err != nil {
				errs <- err
				return
			}
			if m.ID != peerwire.Piece || m.Index > 1 || m.Begin != next[m.Index] || !bytes.Equal(m.Block, block) {
				errs <- errors.New("client got a corrupt or reordered message: " + m.String())
				return
			}
			next[m.Index]++
		}
	}()
	for i := uint32(0); i < n; {
		m, err := c.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != peerwire.Piece {
			continue
		}
		if m.Index != 5 || m.Begin != i || !bytes.Equal(m.Block, block) {
			t.Fatalf("we got a corrupt or reordered message: %v", m)
		}
		i++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// requireEncryptionPeer listens like a client set to require encryption: it hangs up on a
// plaintext handshake and answers an MSE one (choosing with sel), then exchanges BT handshakes
// and sends a Have. It reports how many connections it saw.
func requireEncryptionPeer(t *testing.T, sel mse.CryptoSelector) (net.Listener, <-chan int, <-chan error) {
	t.Helper()
	return requireEncryptionOn(t, listen(t), sel)
}

// requireEncryptionOn is requireEncryptionPeer on a listener of the caller's (uTP, say).
func requireEncryptionOn(t *testing.T, ln net.Listener, sel mse.CryptoSelector) (net.Listener, <-chan int, <-chan error) {
	t.Helper()
	conns := make(chan int, 1)
	errc := make(chan error, 1)
	go func() {
		n := 0
		defer func() { conns <- n }()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n++
			nc.SetDeadline(time.Now().Add(20 * time.Second))
			first := make([]byte, 20)
			if _, err := io.ReadFull(nc, first); err != nil || bytes.Equal(first, []byte("\x13BitTorrent protocol")) {
				nc.Close()
				continue
			}
			rw, _, err := mse.ReceiveHandshake(struct {
				io.Reader
				io.Writer
			}{io.MultiReader(bytes.NewReader(first), nc), nc}, func(yield func([]byte) bool) { yield(testIH[:]) }, sel)
			if err != nil {
				errc <- err
				nc.Close()
				return
			}
			hs := make([]byte, peerwire.HandshakeLen)
			if _, err := io.ReadFull(rw, hs); err != nil {
				errc <- err
				return
			}
			out := peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: testIH, PeerID: accID})
			out = peerwire.AppendMessage(out, peerwire.Message{ID: peerwire.Have, Index: 42})
			if _, err := rw.Write(out); err != nil {
				errc <- err
				return
			}
			// Keep the connection until the test closes the listener's side.
			t.Cleanup(func() { nc.Close() })
		}
	}()
	return ln, conns, errc
}

// checkRetried checks what a requireEncryptionOn peer did for c: it sent its Have, and saw two
// connections (plaintext, refused; then MSE) and no error. It closes ln.
func checkRetried(t *testing.T, c *peerwire.Conn, ln net.Listener, conns <-chan int, errc <-chan error) {
	t.Helper()
	m, err := c.ReadMsg()
	if err != nil || m.ID != peerwire.Have || m.Index != 42 {
		t.Fatalf("ReadMsg: %v, %v", m, err)
	}
	ln.Close()
	if n := <-conns; n != 2 {
		t.Fatalf("peer saw %d connections, want 2 (plaintext, then MSE)", n)
	}
	select {
	case err := <-errc:
		t.Fatalf("peer: %v", err)
	default:
	}
}

// TestDialEncryptedRetry: with EncryptedRetry, Dial reaches a peer that refuses plaintext by
// redialling with MSE, whichever method the peer picks; without it, Dial fails.
func TestDialEncryptedRetry(t *testing.T) {
	for _, tc := range []struct {
		name string
		sel  mse.CryptoSelector
		want peerwire.Crypto
	}{
		{"rc4", func(mse.CryptoMethod) mse.CryptoMethod { return mse.CryptoMethodRC4 }, peerwire.CryptoMSERC4},
		{"plaintext", func(mse.CryptoMethod) mse.CryptoMethod { return mse.CryptoMethodPlaintext }, peerwire.CryptoMSEPlaintext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, conns, errc := requireEncryptionPeer(t, tc.sel)
			c, err := peerwire.Dial(testCtx(t), addrOf(ln), testIH, peerwire.Options{PeerID: dialerID, EncryptedRetry: true})
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if c.Crypto() != tc.want || c.PeerID() != accID {
				t.Fatalf("crypto %v peer %q, want %v", c.Crypto(), c.PeerID(), tc.want)
			}
			checkRetried(t, c, ln, conns, errc)
		})
	}
	t.Run("off", func(t *testing.T) {
		ln, conns, _ := requireEncryptionPeer(t, mse.DefaultCryptoSelector)
		if _, err := peerwire.Dial(testCtx(t), addrOf(ln), testIH, peerwire.Options{}); err == nil {
			t.Fatal("Dial succeeded in plaintext against a peer that hangs up on it")
		}
		ln.Close()
		if n := <-conns; n != 1 {
			t.Fatalf("peer saw %d connections, want 1", n)
		}
	})
}
