package swarm

import (
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/swarm/picker"
)

// TestPipelineSlowStart: a fast peer's pipeline quadruples per round trip of blocks from 1 MiB to
// its cap (so a 40 MiB/s peer at 100 ms, 256 blocks in flight, is saturated after two round
// trips), a slow peer's stays small, and after slow start the pipeline follows rate times the
// queue time, longer on long links.
func TestPipelineSlowStart(t *testing.T) {
	p := &peer{maxOut: initOutstanding, slowStart: true, reqq: 2000}
	for round := 1; round <= 2; round++ {
		n := p.maxOut // a full round trip's worth of blocks arrives
		for range n {
			p.blockArrivedLocked(100 * time.Millisecond)
		}
	}
	if bdp := 40 << 20 / 10 / blockSize; p.maxOut < bdp {
		t.Fatalf("after two round trips the pipeline is %d blocks, under the %d of 40 MiB/s x 100 ms", p.maxOut, bdp)
	}
	if p.maxOut > maxOutstanding {
		t.Fatalf("pipeline %d above maxOutstanding", p.maxOut)
	}

	// The peer advertises a small queue: never more than that.
	q := &peer{maxOut: initOutstanding, slowStart: true, reqq: 100}
	for range 500 {
		q.blockArrivedLocked(50 * time.Millisecond)
	}
	if q.maxOut != 100 || q.slowStart {
		t.Fatalf("pipeline %d (slow start %v) for a peer with reqq 100", q.maxOut, q.slowStart)
	}

	// A slow peer: 3 blocks a second. Its rate stops growing, slow start ends, and the pipeline
	// shrinks to about a second of its rate.
	s := &peer{maxOut: initOutstanding, slowStart: true, reqq: 2000}
	for sec := range 3 {
		for range 3 {
			s.blockArrivedLocked(300 * time.Millisecond)
		}
		s.downRate = 3 * blockSize
		s.resizePipelineLocked()
		if sec == 0 && !s.slowStart {
			t.Fatal("slow start ended on the first rate measurement")
		}
	}
	if s.slowStart || s.maxOut != 3+minOutstanding {
		t.Fatalf("slow peer: pipeline %d, slow start %v; want %d, ended", s.maxOut, s.slowStart, 3+minOutstanding)
	}

	// A 40 ms peer at 8 MiB/s: its blocks queue behind each other (2 ms each), so slow start
	// ends once a block waits longer than two round trips plus the slack (after 26 blocks): the
	// pipeline stops at 64 + 26 x slowStartGrowth blocks, and grows no further.
	w := &peer{maxOut: initOutstanding, slowStart: true, reqq: 2000}
	for i := range 300 {
		w.blockArrivedLocked(40*time.Millisecond + time.Duration(i)*2*time.Millisecond)
	}
	if w.slowStart || w.maxOut > initOutstanding+26*slowStartGrowth {
		t.Fatalf("queueing peer: pipeline %d, slow start %v", w.maxOut, w.slowStart)
	}

	// A long link (1.5 s round trips at 1 MiB/s): two round trips of its rate are queued.
	l := &peer{maxOut: minOutstanding, minRTT: 1500 * time.Millisecond, downRate: 1 << 20, reqq: 2000}
	l.resizePipelineLocked()
	if want := 3*64 + minOutstanding; l.maxOut != want {
		t.Fatalf("long link: pipeline %d, want %d", l.maxOut, want)
	}
}

// TestPipelineTrimsSlowPeer: a new connection is asked for a whole first pipeline (4 MiB here),
// and once its rate shows it is slow, what it could not send within its queue time is
// cancelled: it is told (cancel messages), its pieces go back to the picker for another peer,
// and the blocks it had already sent before the cancel arrived are not held against it.
func TestPipelineTrimsSlowPeer(t *testing.T) {
	tt := makeTorrent(t, "trim", 1<<20, []testFile{{"x", 16 << 20}}, 15)
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	newPeer := func() *peer { return addSeedPeerLocked(s) }
	s.mu.Lock()
	defer s.mu.Unlock()
	slow := newPeer()
	s.fillLocked(slow)
	if len(slow.outstanding) != initOutstanding {
		t.Fatalf("first pipeline: %d requests, want %d", len(slow.outstanding), initOutstanding)
	}
	// Three blocks arrive in the first second: 48 KiB/s.
	for range 3 {
		for k := range slow.outstanding {
			s.dropRequestLocked(slow, k)
			break
		}
		slow.blockArrivedLocked(300 * time.Millisecond)
	}
	slow.slowStart = false // its rate stopped growing
	slow.downBytes = 3 * blockSize
	slow.updateRate(1)
	if len(slow.outstanding) > 64 || len(slow.pieces) != 1 {
		t.Fatalf("slow peer still owes %d blocks in %d pieces after its rate showed (pipeline %d)", len(slow.outstanding), len(slow.pieces), slow.maxOut)
	}
	slow.qmu.Lock()
	cancels := 0
	for _, m := range slow.q {
		if m.ID == peerwire.Cancel {
			cancels++
		}
	}
	slow.qmu.Unlock()
	if want := initOutstanding - 3 - len(slow.outstanding); cancels != want {
		t.Fatalf("%d cancels sent, want %d", cancels, want)
	}
	if slow.wasted != -int64(cancels)*blockSize {
		t.Fatalf("wasted allowance %d, want %d", slow.wasted, -int64(cancels)*blockSize)
	}
	// Another peer now gets the released pieces as fresh ones, not as end-game duplicates.
	fast := newPeer()
	fast.peerChoking = false
	s.fillLocked(fast)
	for k := range fast.outstanding {
		if _, dup := slow.outstanding[k]; dup {
			t.Fatalf("block %v requested from both peers outside end game", k)
		}
	}
	if len(fast.outstanding) == 0 {
		t.Fatal("nothing left for a second peer")
	}
}

// addSeedPeerLocked adds to s a connectionless peer that has every piece and wants some, with
// a new connection's first pipeline; its messages stay in its queue.
func addSeedPeerLocked(s *Swarm) *peer {
	n := s.layout.NumPieces()
	p := &peer{s: s, has: picker.NewBitfield(n), outstanding: make(map[blockKey]request),
		allowedFast: make(map[int]bool), qsig: make(chan struct{}, 1), amInterested: true, slowStart: true}
	for i := range n {
		p.has.Set(i)
		s.picker.PeerHas(i)
	}
	p.maxOut = s.initialPipelineLocked()
	s.peers[p] = struct{}{}
	return p
}

// TestEndGameAsksTwoPeersAtMost: once every block is requested, peers with room duplicate
// blocks others owe us, but each block is asked of two peers at most (asking all eight made
// each link carry the whole remainder), unless the peer asking is more than twice as fast.
func TestEndGameAsksTwoPeersAtMost(t *testing.T) {
	tt := makeTorrent(t, "endgame", 64<<10, []testFile{{"x", 1 << 20}}, 16)
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []*peer
	for range 8 {
		p := addSeedPeerLocked(s)
		p.peerChoking = false
		ps = append(ps, p)
	}
	for _, p := range ps {
		s.fillLocked(p) // 64 blocks among 8 peers: the first ones take them all
	}
	// Each peer, given room, asks for duplicates.
	for _, p := range ps {
		p.maxOut = 64
		s.fillLocked(p)
	}
	total := 0
	for i, st := range s.pieces {
		if st == nil {
			continue
		}
		for b, n := range st.reqs {
			total += n
			if n > maxEndgameReqs {
				t.Fatalf("piece %d block %d requested from %d peers", i, b, n)
			}
			if n == 0 {
				t.Fatalf("piece %d block %d requested from nobody", i, b)
			}
		}
	}
	if want := maxEndgameReqs * 64; total != want {
		t.Fatalf("%d requests in end game, want every block from %d peers (%d)", total, maxEndgameReqs, want)
	}
	// A peer more than twice as fast as those owing the blocks still gets them all: slow
	// peers' duplicates must not keep the tail waiting for them.
	for _, p := range ps {
		p.downRate = 100 << 10
	}
	fast := addSeedPeerLocked(s)
	fast.peerChoking, fast.downRate, fast.maxOut = false, 10<<20, 64
	s.fillLocked(fast)
	if len(fast.outstanding) != 64 {
		t.Fatalf("a fast peer got %d of the 64 blocks slow peers owe", len(fast.outstanding))
	}
}
