package peerwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/magnetget/magnetget/internal/merkle"
)

// A hashes message answering the largest request libtorrent accepts (8192 base hashes) with the
// most uncles is read whole; one byte more is refused before anything is allocated for it.
func TestHashesMessageBound(t *testing.T) {
	r := merkle.HashRequest{BaseLayer: 0, Index: 0, Length: 8192, ProofLayers: 0}
	hashes := make([]merkle.Hash, 8192+64)
	big := AppendMessage(nil, Message{ID: Hashes, Payload: merkle.AppendHashes(nil, merkle.Hash{7}, r, hashes)})
	if n := binary.BigEndian.Uint32(big); n != MaxHashesLen {
		t.Fatalf("largest hashes message is %d bytes, MaxHashesLen %d", n, MaxHashesLen)
	}
	c := newConn(streamConn{r: bytes.NewReader(big)}, Options{})
	m, err := c.ReadMsg()
	if err != nil {
		t.Fatalf("reading the largest hashes message: %v", err)
	}
	root, got, hs, err := merkle.ParseHashesMsg(m.Payload)
	if err != nil || root != (merkle.Hash{7}) || got != r || len(hs) != len(hashes) {
		t.Fatalf("parsed %x %+v %d hashes, %v", root[:1], got, len(hs), err)
	}

	tooBig := AppendMessage(nil, Message{ID: Hashes, Payload: append(merkle.AppendHashes(nil, merkle.Hash{7}, r, hashes), make([]byte, 32)...)})
	c = newConn(streamConn{r: bytes.NewReader(tooBig[:10])}, Options{})
	if _, err := c.ReadMsg(); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("a hashes message past MaxHashesLen: %v, want ErrMessageTooLarge", err)
	}
	if err := (Message{ID: Hashes, Payload: tooBig[5:]}).checkSendable(); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("sending one: %v", err)
	}
	// Other messages keep the old bound.
	if _, err := DecodeMessage(append([]byte{HashRequest}, make([]byte, MaxMessageLen+10)...)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("a huge hash request: %v", err)
	}
}

func TestHashMessageLengths(t *testing.T) {
	for _, tc := range []struct {
		id byte
		n  int
		ok bool
	}{
		{HashRequest, 48, true}, {HashRequest, 47, false}, {HashRequest, 80, false},
		{HashReject, 48, true}, {HashReject, 0, false},
		{Hashes, 48, true}, {Hashes, 48 + 64, true}, {Hashes, 48 + 33, false}, {Hashes, 40, false},
	} {
		_, err := DecodeMessage(append([]byte{tc.id}, make([]byte, tc.n)...))
		if (err == nil) != tc.ok {
			t.Errorf("id %d with %d payload bytes: err %v, want ok=%v", tc.id, tc.n, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadMessage) {
			t.Errorf("id %d: %v wraps no sentinel", tc.id, err)
		}
	}
}

// The v2 bit (byte 7, 0x10) is sent when Options.V2 is set and read from the peer's handshake.
func TestV2ReservedBit(t *testing.T) {
	r := Options{V2: true}.reserved()
	if r[7]&0x10 == 0 || !(Handshake{Reserved: r}).SupportsV2() {
		t.Fatalf("reserved %x lacks the v2 bit", r)
	}
	if (Handshake{Reserved: Options{}.reserved()}).SupportsV2() {
		t.Fatal("v2 bit set without Options.V2")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var ih [20]byte
	ih[0] = 1
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		c, err := Accept(t.Context(), nc, func(h [20]byte) bool { return h == ih }, Options{V2: true})
		ch <- res{c, err}
	}()
	c, err := Dial(t.Context(), netip.MustParseAddrPort(ln.Addr().String()), ih, Options{V2: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r2 := <-ch
	if r2.err != nil {
		t.Fatal(r2.err)
	}
	defer r2.c.Close()
	if !c.SupportsV2() || !r2.c.SupportsV2() {
		t.Fatalf("both sides set the v2 bit, SupportsV2 %v %v", c.SupportsV2(), r2.c.SupportsV2())
	}
}

// FuzzHashMessages feeds BEP 52 message bodies through DecodeMessage and the merkle codec as the
// swarm does: nothing panics and allocation stays within a small multiple of the input.
func FuzzHashMessages(f *testing.F) {
	root := merkle.Hash{1}
	f.Add(append([]byte{HashRequest}, merkle.AppendRequest(nil, root, merkle.HashRequest{BaseLayer: 2, Length: 512, ProofLayers: 9})...))
	f.Add(append([]byte{Hashes}, merkle.AppendHashes(nil, root, merkle.HashRequest{Length: 2, ProofLayers: 1}, []merkle.Hash{{1}, {2}, {3}})...))
	f.Add(append([]byte{HashReject}, merkle.AppendRequest(nil, root, merkle.HashRequest{Index: 4, Length: 4})...))
	f.Add([]byte{Hashes, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		allocBound(t, len(b), 1024, 2, func() {
			m, err := DecodeMessage(b)
			if err != nil {
				return
			}
			switch m.ID {
			case HashRequest, HashReject:
				_, r, err := merkle.ParseRequest(m.Payload)
				if err == nil {
					_, _ = r.Check(1 << 40)
				}
			case Hashes:
				_, r, hs, err := merkle.ParseHashesMsg(m.Payload)
				if err == nil {
					_ = merkle.VerifyHashes(root, 1<<40, r, hs, nil)
				}
			}
		})
	})
}
