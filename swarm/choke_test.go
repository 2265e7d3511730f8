package swarm

import (
	"testing"

	"github.com/magnetget/magnetget/internal/peerwire"
)

func TestRechokeTitForTat(t *testing.T) {
	tt := makeTorrent(t, "choke", 16<<10, []testFile{{"x", 100 << 10}}, 14)
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*peer
	for i := range 7 {
		p := &peer{s: s, amChoking: true, peerInterested: i < 6, downRate: float64(100 * (i + 1)), qsig: make(chan struct{}, 1)}
		s.peers[p] = struct{}{}
		ps = append(ps, p)
	}
	s.rechoke(true)
	// Interested peers 2..5 give us the most: regular slots. One of 0 and 1 gets the optimistic
	// unchoke. Peer 6 is not interested: choked, whatever its rate.
	for i := 2; i < 6; i++ {
		if ps[i].amChoking || ps[i].optimistic {
			t.Errorf("peer %d (rate %v): choked %v optimistic %v, want a regular slot", i, ps[i].downRate, ps[i].amChoking, ps[i].optimistic)
		}
	}
	if ps[0].amChoking == ps[1].amChoking || !(ps[0].optimistic || ps[1].optimistic) {
		t.Errorf("want exactly one of peers 0 and 1 optimistically unchoked: %v/%v", ps[0].amChoking, ps[1].amChoking)
	}
	if !ps[6].amChoking {
		t.Error("uninterested peer unchoked")
	}
	// A newly unchoked peer is told so.
	ps[5].qmu.Lock()
	q := ps[5].q
	ps[5].qmu.Unlock()
	if len(q) != 1 || q[0].ID != peerwire.Unchoke {
		t.Errorf("peer 5 queue %v, want one unchoke", q)
	}
	// The optimistic slot stays put until the next 30 s rotation.
	opt := ps[0]
	if ps[1].optimistic {
		opt = ps[1]
	}
	s.rechoke(false)
	if !opt.optimistic || opt.amChoking {
		t.Error("optimistic unchoke rotated early")
	}
}
