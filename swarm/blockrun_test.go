package swarm

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// TestOutOfOrderBlocksVerified guards the in-memory hashing of pieces: a peer that answers each
// batch of requests last-first defeats it, so the verifier must hash from disk what was not
// hashed in order, and the download must still complete with every file intact.
func TestOutOfOrderBlocksVerified(t *testing.T) {
	tt := makeTorrent(t, "reversed", 128<<10, []testFile{{"a.bin", 1<<20 + 20000}}, 7)
	stream := tt.data[0]
	var pending []peerwire.Message
	var reversedBatches atomic.Int32
	peer := startFakePeer(t, "127.0.0.71", tt.ih, helloHaveAll, func(c *peerwire.Conn, m peerwire.Message) error {
		if m.ID == peerwire.Request {
			pending = append(pending, m)
		}
		if c.Buffered() > 0 || len(pending) == 0 {
			return nil // more requests already arrived: answer them together
		}
		if len(pending) > 1 {
			reversedBatches.Add(1)
		}
		slices.Reverse(pending)
		out := make([]peerwire.Message, 0, len(pending))
		for _, r := range pending {
			off := int(r.Index)*(128<<10) + int(r.Begin)
			out = append(out, peerwire.Message{ID: peerwire.Piece, Index: r.Index, Begin: r.Begin, Block: stream[off : off+int(r.Length)]})
		}
		pending = pending[:0]
		return c.WriteMsgs(out...)
	})
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(peer.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	if len(s.Banned()) != 0 {
		t.Errorf("banned %v for sending good blocks out of order", s.Banned())
	}
	if reversedBatches.Load() == 0 {
		t.Error("the peer never answered a batch of requests out of order; the test proves nothing")
	}
}
