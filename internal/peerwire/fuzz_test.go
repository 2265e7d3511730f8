package peerwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
)

// allocBound fails t when fn allocates more than fixed + perByte*n bytes: parsers of network
// bytes must never allocate much more than they were sent. The fuzzing engine allocates
// beside fn now and then, so one excess is measured again before it counts.
func allocBound(t *testing.T, n int, fixed, perByte uint64, fn func()) {
	t.Helper()
	limit := fixed + perByte*uint64(n)
	var got uint64
	for range 2 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
		if got = after.TotalAlloc - before.TotalAlloc; got <= limit {
			return
		}
	}
	t.Fatalf("%d input bytes allocated %d bytes (bound %d + %d per byte)", n, got, fixed, perByte)
}

func FuzzParseHandshake(f *testing.F) {
	var ih, id [20]byte
	copy(ih[:], "infohash-infohash-ih")
	copy(id[:], "-qB4650-abcdefghijkl")
	f.Add(AppendHandshake(nil, Handshake{Reserved: Options{DHT: true}.reserved(), InfoHash: ih, PeerID: id}))
	f.Add(AppendHandshake(nil, Handshake{}))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n-----------------------------------------"))
	f.Add([]byte{19})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Handshake
		var err error
		allocBound(t, len(b), 1024, 0, func() { h, err = ParseHandshake(b) })
		if err != nil {
			if !errors.Is(err, ErrBadHandshake) {
				t.Fatalf("error %v does not wrap ErrBadHandshake", err)
			}
			return
		}
		if out := AppendHandshake(nil, h); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded handshake differs:\n%x\n%x", b, out)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(AppendMessage(nil, m)[4:])
	}
	f.Add([]byte{})
	f.Add([]byte{Have, 1, 2})
	f.Add([]byte{Extended})
	f.Add([]byte{200, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		var err error
		allocBound(t, len(b), 1024, 0, func() { m, err = DecodeMessage(b) }) // slices alias b
		if err != nil {
			if !errors.Is(err, ErrBadMessage) && !errors.Is(err, ErrMessageTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		enc := AppendMessage(nil, m)
		if n := binary.BigEndian.Uint32(enc); int(n) != len(b) || !bytes.Equal(enc[4:], b) {
			t.Fatalf("re-encoded %v differs:\n%x\n%x", m, b, enc)
		}
		m2, err := DecodeMessage(enc[4:])
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("decode(encode(m)) = %+v, want %+v", m2, m)
		}
	})
}

func FuzzDecodeExtHandshake(f *testing.F) {
	f.Add(EncodeExtHandshake(ExtHandshake{M: map[string]int{"ut_metadata": 2, "ut_pex": 1}, MetadataSize: 31235, V: "qBittorrent/4.6.5", Port: 6881, Reqq: 500, YourIP: []byte{127, 0, 0, 1}}))
	// libtorrent 2.0 style, with keys we ignore.
	f.Add([]byte("d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei5e1:pi6881e4:reqqi500e11:upload_onlyi1e1:v17:libtorrent/2.0.8.06:yourip4:\x7f\x00\x00\x01e"))
	f.Add([]byte("d1:md11:ut_metadatai-1ee1:vi3ee"))
	f.Add([]byte("de"))
	f.Add([]byte("d1:m"))
	f.Add([]byte("li1ee"))
	f.Add([]byte("d1:v134217000:xxe")) // a huge string announced
	f.Add([]byte("dddddddddddddddddddddddddddddddd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h ExtHandshake
		var err error
		allocBound(t, len(b), 16<<10, 64, func() { h, err = DecodeExtHandshake(b) })
		if err != nil {
			if !errors.Is(err, ErrBadExtHandshake) {
				t.Fatalf("error %v does not wrap ErrBadExtHandshake", err)
			}
			return
		}
		h2, err := DecodeExtHandshake(EncodeExtHandshake(h))
		if err != nil {
			t.Fatalf("re-encoded handshake does not decode: %v", err)
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("decode(encode(h)) = %+v, want %+v", h2, h)
		}
	})
}

func sampleMessages() []Message {
	return []Message{
		{Keepalive: true},
		{ID: Choke}, {ID: Unchoke}, {ID: Interested}, {ID: NotInterested},
		{ID: HaveAll}, {ID: HaveNone},
		{ID: Have, Index: 7}, {ID: Suggest, Index: 1 << 30}, {ID: AllowedFast, Index: 3},
		{ID: Request, Index: 1, Begin: 16384, Length: 16384},
		{ID: Cancel, Index: 1, Begin: 0, Length: 16384},
		{ID: Reject, Index: 9, Begin: 32768, Length: 100},
		{ID: Piece, Index: 2, Begin: 16384, Block: bytes.Repeat([]byte("x"), 16384)},
		{ID: Piece, Index: 2, Begin: 0, Block: []byte{}},
		{ID: Bitfield, Bitfield: []byte{0xff, 0x80}},
		{ID: Port, Port: 6881},
		{ID: Extended, ExtID: 0, Payload: EncodeExtHandshake(ExtHandshake{M: map[string]int{"ut_metadata": 3}})},
		{ID: Extended, ExtID: 3, Payload: []byte("d8:msg_typei0e5:piecei0ee")},
		{ID: HashRequest, Payload: merkle.AppendRequest(nil, merkle.Hash{1}, merkle.HashRequest{BaseLayer: 2, Index: 0, Length: 4, ProofLayers: 3})},
		{ID: Hashes, Payload: merkle.AppendHashes(nil, merkle.Hash{1}, merkle.HashRequest{BaseLayer: 0, Index: 2, Length: 2, ProofLayers: 0}, []merkle.Hash{{2}, {3}})},
		{ID: HashReject, Payload: merkle.AppendRequest(nil, merkle.Hash{1}, merkle.HashRequest{BaseLayer: 0, Index: 0, Length: 2, ProofLayers: 0})},
		{ID: 200, Payload: []byte("unknown")},
	}
}

// streamConn is a net.Conn that reads a fixed byte stream, for feeding ReadMsg without sockets.
type streamConn struct {
	net.Conn
	r io.Reader
}

func (c streamConn) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c streamConn) RemoteAddr() net.Addr       { return nil }

func (c streamConn) SetReadDeadline(time.Time) error { return nil }

// FuzzReadMsgInto checks that reading blocks into caller buffers parses a byte stream exactly
// as ReadMsg does, message for message, up to the same failure (a block the caller refuses
// comes back as its length alone), and that neither allocates more than a small multiple of
// the stream: nothing is allocated for bytes that never arrive.
func FuzzReadMsgInto(f *testing.F) {
	var stream []byte
	for _, m := range sampleMessages() {
		stream = AppendMessage(stream, m)
	}
	f.Add(stream)
	f.Add(AppendMessage(nil, Message{ID: Piece, Index: 3, Begin: 1 << 14, Block: bytes.Repeat([]byte{9}, 100)}))
	f.Add([]byte{0, 0, 0, 9, Piece, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{0, 0, 0, 20, Piece, 0, 0, 0, 1, 0, 0, 0, 2, 1, 2})
	f.Add([]byte{0, 0x10, 0, 0, Bitfield, 1, 2, 3, 4})       // 1 MiB announced, 5 bytes sent
	f.Add([]byte{0, 1, 0, 9, Piece, 0, 0, 0, 1, 0, 0, 0, 2}) // 64 KiB block announced
	f.Fuzz(func(t *testing.T, b []byte) {
		plain := newConn(streamConn{r: bytes.NewReader(b)}, Options{})
		into := newConn(streamConn{r: bytes.NewReader(b)}, Options{})
		// Each conn's buffers (96 KiB) are allocated above, the grown one (256 KiB) below; reading
		// may add about the stream's size per copy of it (one for ReadMsg, one for ReadMsgInto,
		// plus slack for growth).
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		defer func() {
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > 320<<10+8*uint64(len(b)) {
				t.Fatalf("reading a %d-byte stream allocated %d bytes", len(b), n)
			}
		}()
		var scratch []byte
		dst := func(index, begin uint32, n int) []byte {
			if begin%2 == 1 {
				return nil // falls back to a fresh buffer
			}
			if cap(scratch) < n {
				scratch = make([]byte, n)
			}
			return scratch[:n]
		}
		for i := 0; ; i++ {
			m1, err1 := plain.ReadMsg()
			if i == 1 {
				into.GrowReadBuffer(256 << 10) // between messages, as a downloader does
			}
			m2, err2 := into.ReadMsgInto(dst)
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("message %d: ReadMsg error %v, ReadMsgInto error %v", i, err1, err2)
			}
			if err1 != nil {
				return
			}
			if m1.ID == Piece && !m1.Keepalive && m2.Block == nil && m2.Length == uint32(len(m1.Block)) && len(m1.Block) > 0 {
				m1.Block, m1.Length = nil, m2.Length // refused by dst: skipped
			}
			if !reflect.DeepEqual(normalizeMsg(m1), normalizeMsg(m2)) {
				t.Fatalf("message %d: ReadMsg %+v, ReadMsgInto %+v", i, m1, m2)
			}
		}
	})
}

func normalizeMsg(m Message) Message {
	for _, b := range []*[]byte{&m.Block, &m.Bitfield, &m.Payload} {
		if len(*b) == 0 {
			*b = nil
		}
	}
	return m
}
