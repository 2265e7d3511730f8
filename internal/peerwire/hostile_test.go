package peerwire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// slowPeer completes a handshake without extensions and hands the raw connection to fn.
func slowPeer(t *testing.T, fn func(nc net.Conn)) *peerwire.Conn {
	t.Helper()
	addr := rawPeer(t, func(nc net.Conn) {
		io.ReadFull(nc, make([]byte, peerwire.HandshakeLen))
		nc.Write(peerwire.AppendHandshake(nil, peerwire.Handshake{InfoHash: testIH}))
		fn(nc)
	})
	c, err := peerwire.Dial(testCtx(t), addr, testIH, peerwire.Options{MessageTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func frame(n uint32, rest ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, n), rest...)
}

// TestLengthPrefixThenSilenceCostsNothing: a 1 MiB length prefix followed by a few bytes must
// not make ReadMsg allocate the megabyte before it arrives (issue 9: peerwire allocated a
// message's full length first).
func TestLengthPrefixThenSilenceCostsNothing(t *testing.T) {
	release := make(chan struct{})
	c := slowPeer(t, func(nc net.Conn) {
		nc.Write(frame(1<<20, peerwire.Bitfield, 1, 2, 3, 4))
		<-release
	})
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadMsg()
		errc <- err
	}()
	// ReadMsg is now waiting for the rest; the mid-message deadline (300 ms) ends it.
	err := <-errc
	runtime.ReadMemStats(&after)
	close(release)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadMsg: %v, want a deadline error", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Fatalf("waiting for a 1 MiB message of which 5 bytes came allocated %d bytes", n)
	}
}

// TestStopMidMessageTimesOut: a peer that sends the 13-byte head of a Piece message and goes
// quiet is cut off after MessageTimeout, although the caller's own deadline is far away (issue
// 9, row 4: such peers held shared buffers until the 3-minute idle deadline). The block buffer
// is never asked for.
func TestStopMidMessageTimesOut(t *testing.T) {
	release := make(chan struct{})
	c := slowPeer(t, func(nc net.Conn) {
		nc.Write(frame(9+16384, peerwire.Piece, 0, 0, 0, 1, 0, 0, 0, 0))
		<-release
	})
	defer close(release)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var asked atomic.Bool
	_, err := c.ReadMsgInto(func(index, begin uint32, n int) []byte {
		asked.Store(true)
		return make([]byte, n)
	})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadMsgInto: %v, want a deadline error", err)
	}
	if asked.Load() {
		t.Fatal("the block buffer was asked for before the block arrived")
	}
}

// TestBlockBufferAskedOnceArrived: the block buffer is asked for only when the whole block is
// in memory, and a message that arrives slowly but within MessageTimeout is read; an idle
// wait after it is under the caller's deadline again, not the mid-message one.
func TestBlockBufferAskedOnceArrived(t *testing.T) {
	block := bytes.Repeat([]byte{7}, 16384)
	msg := peerwire.AppendMessage(nil, peerwire.Message{ID: peerwire.Piece, Index: 1, Begin: 16384, Block: block})
	var sentAll atomic.Bool
	c := slowPeer(t, func(nc net.Conn) {
		nc.Write(msg[:100])
		time.Sleep(100 * time.Millisecond)
		sentAll.Store(true)
		nc.Write(msg[100:])
		time.Sleep(time.Second) // idle for longer than MessageTimeout
		nc.Write(frame(0))      // keepalive
		io.Copy(io.Discard, nc)
	})
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var buf []byte
	m, err := c.ReadMsgInto(func(index, begin uint32, n int) []byte {
		if !sentAll.Load() {
			t.Error("the block buffer was asked for before the block arrived")
		}
		buf = make([]byte, n)
		return buf
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Index != 1 || m.Begin != 16384 || !bytes.Equal(m.Block, block) || &m.Block[0] != &buf[0] {
		t.Fatalf("got %v", m)
	}
	if m, err := c.ReadMsg(); err != nil || !m.Keepalive {
		t.Fatalf("after an idle second: %v, %v; want the keepalive", m, err)
	}
}

// TestMsgBuffered reports a whole message in memory, and not a partial one.
func TestMsgBuffered(t *testing.T) {
	step := make(chan struct{})
	c := slowPeer(t, func(nc net.Conn) {
		nc.Write(append(frame(1, peerwire.Unchoke), frame(5, peerwire.Have, 0)...))
		<-step
		nc.Write([]byte{0, 0, 1})
		io.Copy(io.Discard, nc)
	})
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if m, err := c.ReadMsg(); err != nil || m.ID != peerwire.Unchoke {
		t.Fatalf("got %v, %v", m, err)
	}
	if c.MsgBuffered() {
		t.Fatal("MsgBuffered with 2 of 9 bytes of a Have")
	}
	close(step)
	if m, err := c.ReadMsg(); err != nil || m.ID != peerwire.Have || m.Index != 1 {
		t.Fatalf("got %v, %v", m, err)
	}
	c.Unread(peerwire.Message{ID: peerwire.Choke})
	if !c.MsgBuffered() {
		t.Fatal("MsgBuffered false with a message pushed back")
	}
}

// TestDeeplyNestedExtHandshake: a 128 KiB extended handshake of nested dicts ("dddd...") made
// the bencode decoder recurse and allocate until the process was killed. Nesting is capped
// before the decoder runs.
func TestDeeplyNestedExtHandshake(t *testing.T) {
	for _, b := range [][]byte{
		bytes.Repeat([]byte("d"), peerwire.MaxMessageLen-2),
		append([]byte("d1:m"), bytes.Repeat([]byte("l"), peerwire.MaxMessageLen-6)...),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := peerwire.DecodeExtHandshake(b)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatal("a deeply nested handshake decoded")
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Fatalf("refusing a %d-byte nested handshake allocated %d bytes", len(b), n)
		}
	}
}

// TestGrowReadBuffer: growing the read buffer between messages keeps every byte already
// buffered and the order of what follows.
func TestGrowReadBuffer(t *testing.T) {
	d, a := pair(t, peerwire.Options{}, peerwire.Options{})
	var msgs []peerwire.Message
	for i := range 40 {
		msgs = append(msgs, peerwire.Message{ID: peerwire.Piece, Index: uint32(i), Block: bytes.Repeat([]byte{byte(i)}, 16384)})
	}
	errc := make(chan error, 1)
	go func() { errc <- d.WriteMsgs(msgs...) }()
	if _, err := a.ReadMsg(); err != nil { // the extended handshake
		t.Fatal(err)
	}
	for i, want := range msgs {
		if i == 2 {
			a.GrowReadBuffer(256 << 10)
		}
		got, err := a.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if got.Index != want.Index || !bytes.Equal(got.Block, want.Block) {
			t.Fatalf("message %d: got %v", i, got)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
