package swarm

import (
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/merkle"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/swarm/pex"
)

// FuzzPeerStream feeds a byte stream, as one peer's side of a connection after a valid
// handshake, to a real downloading Swarm over net.Pipe. Whatever the bytes, the swarm must not
// panic, must allocate no more than a small multiple of the input beyond its fixed costs, and
// must leave no goroutine behind once Run returns.
func FuzzPeerStream(f *testing.F) {
	tt := makeTorrent(f, "fuzz", 16<<10, []testFile{{"a.bin", 40 << 10}, {"b/c.bin", 30 << 10}}, 31)
	msgs := func(ms ...peerwire.Message) []byte {
		var b []byte
		for _, m := range ms {
			b = peerwire.AppendMessage(b, m)
		}
		return b
	}
	ext := peerwire.EncodeExtHandshake(peerwire.ExtHandshake{M: map[string]int{"ut_pex": 3, metadata.ExtName: 4}, Reqq: 10})
	f.Add([]byte{})
	f.Add(msgs(peerwire.Message{ID: peerwire.HaveAll}, peerwire.Message{ID: peerwire.Unchoke}))
	f.Add(msgs(peerwire.Message{ID: peerwire.Bitfield, Bitfield: []byte{0xf0}}, peerwire.Message{ID: peerwire.Unchoke},
		peerwire.Message{ID: peerwire.Piece, Index: 0, Begin: 0, Block: tt.data[0][:blockSize]}))
	f.Add(msgs(peerwire.Message{ID: peerwire.Extended, ExtID: 0, Payload: ext},
		peerwire.Message{ID: peerwire.Extended, ExtID: extPexID, Payload: pex.Encode(pex.Message{})},
		peerwire.Message{ID: peerwire.Extended, ExtID: extMetadataID, Payload: []byte("d8:msg_typei0e5:piecei0ee")}))
	f.Add(msgs(peerwire.Message{ID: peerwire.Interested}, peerwire.Message{ID: peerwire.Request, Index: 1, Length: blockSize},
		peerwire.Message{ID: peerwire.Cancel, Index: 1, Length: blockSize}, peerwire.Message{ID: peerwire.Reject, Index: 2},
		peerwire.Message{ID: peerwire.AllowedFast, Index: 3}, peerwire.Message{ID: peerwire.Have, Index: 4},
		peerwire.Message{ID: peerwire.Choke}, peerwire.Message{ID: peerwire.HaveNone}, peerwire.Message{ID: peerwire.Port, Port: 1}))
	f.Add([]byte{0, 0x10, 0, 0, peerwire.Bitfield, 1, 2, 3})             // 1 MiB announced
	f.Add([]byte{0, 0, 0x40, 9, peerwire.Piece, 0, 0, 0, 0, 0, 0, 0, 0}) // an unrequested block's head
	f.Add([]byte("\x00\x00\x00\x15\x14\x02d5:added134217000:xxe"))       // a huge pex string

	cfg := Config{InfoHash: tt.ih, Info: tt.info}
	base := runPeerStream(f, cfg, nil) // the swarm's own fixed allocations
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := runPeerStream(t, cfg, b); n > 2*base+64*uint64(len(b)) {
			t.Fatalf("a %d-byte stream cost %d bytes of allocation (an empty one %d)", len(b), n, base)
		}
	})
}

// runPeerStream runs one download Swarm with one peer that sends a handshake and then b, and
// returns the bytes allocated meanwhile.
func runPeerStream(t testing.TB, cfg Config, b []byte) uint64 {
	g0 := runtime.NumGoroutine()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	ih := cfg.InfoHash
	cfg.Dir = t.TempDir()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()

	ours, theirs := net.Pipe()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		c, err := peerwire.Accept(ctx, ours, func(h [20]byte) bool { return h == ih },
			peerwire.Options{Timeout: 5 * time.Second})
		if err == nil {
			s.AddConn(c)
		}
	}()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		io.Copy(io.Discard, theirs)
	}()
	theirs.SetWriteDeadline(time.Now().Add(5 * time.Second))
	var res [8]byte
	res[5], res[7] = 0x10, 0x04 // extensions, fast
	hs := peerwire.AppendHandshake(nil, peerwire.Handshake{Reserved: res, InfoHash: ih, PeerID: [20]byte{'-', 'F', 'Z'}})
	if _, err := theirs.Write(hs); err == nil {
		theirs.Write(b)
	}
	<-accepted
	theirs.Close()
	<-drained
	for range 200 {
		if len(s.PeerStats()) == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-errc

	runtime.ReadMemStats(&after)
	for i := 0; runtime.NumGoroutine() > g0; i++ {
		if i == 200 {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left behind:\n%s", runtime.NumGoroutine()-g0, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzPeerStreamV2 is FuzzPeerStream for a v2-only torrent whose piece layers the swarm asks
// the peer for: BEP 52 hash requests, hashes (right, wrong, unasked) and rejects in any order
// never panic, hang or allocate beyond a small multiple of the stream.
func FuzzPeerStreamV2(f *testing.F) {
	tt := makeTorrent(f, "fuzz2", 32<<10, []testFile{{"a.bin", 200 << 10}, {"b.bin", 1000}}, 32)
	tor := makeV2(f, tt, false)
	ih := truncV2(tor)
	msgs := func(ms ...peerwire.Message) []byte {
		var b []byte
		for _, m := range ms {
			b = peerwire.AppendMessage(b, m)
		}
		return b
	}
	a := tor.V2.Files[0]
	layer, _ := merkle.ParseHashes(tor.PieceLayers[a.PiecesRoot])
	r := merkle.HashRequest{BaseLayer: 1, Index: 0, Length: 8, ProofLayers: 2}
	answer := append(layer, make([]merkle.Hash, 1)...) // 7 pieces padded to 8
	answer[7] = merkle.PadHash(2)
	f.Add(msgs(peerwire.Message{ID: peerwire.HaveAll}, peerwire.Message{ID: peerwire.Unchoke},
		peerwire.Message{ID: peerwire.Hashes, Payload: merkle.AppendHashes(nil, a.PiecesRoot, r, answer)}))
	f.Add(msgs(peerwire.Message{ID: peerwire.HashReject, Payload: merkle.AppendRequest(nil, a.PiecesRoot, r)},
		peerwire.Message{ID: peerwire.HashRequest, Payload: merkle.AppendRequest(nil, a.PiecesRoot, merkle.HashRequest{Length: 4, ProofLayers: 3})}))
	f.Add(msgs(peerwire.Message{ID: peerwire.Hashes, Payload: merkle.AppendHashes(nil, a.PiecesRoot, r, make([]merkle.Hash, 8))}))
	cfg := Config{InfoHash: ih, Info: tor.Meta.InfoBytes}
	base := runPeerStream(f, cfg, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := runPeerStream(t, cfg, b); n > 2*base+64*uint64(len(b)) {
			t.Fatalf("a %d-byte stream cost %d bytes of allocation (an empty one %d)", len(b), n, base)
		}
	})
}
