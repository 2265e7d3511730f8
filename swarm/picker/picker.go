// Package picker chooses which piece a peer should download next. It is pure bookkeeping, no
// I/O and no locking: the swarm owns one Picker behind its own lock.
//
// Policy, in order: pieces we already have, do not want (their files are not selected) or that
// the peer lacks are never picked; a piece partly downloaded by a peer that left comes first;
// then, in rarest-first mode, the piece fewest connected peers have, ties broken by scanning from
// a random start so peers spread out; in sequential mode the lowest index. When every wanted
// piece is already being downloaded, end-game mode hands out pieces others are downloading too,
// the least shared first.
package picker

import (
	"math/rand/v2"
)

// Picker tracks per-piece state for picking.
type Picker struct {
	n          int
	sequential bool
	have       Bitfield
	wanted     Bitfield
	avail      []int32 // number of peers that have each piece
	active     []int32 // number of peers downloading each piece now
	partial    Bitfield
	rng        *rand.Rand
	missing    int // wanted and not have
	nhave      int // pieces in have
}

// New returns a picker for n pieces; wanted reports which pieces to download (nil: all). seed
// makes the random tie-breaking reproducible in tests.
func New(n int, wanted func(int) bool, sequential bool, seed uint64) *Picker {
	p := &Picker{
		n: n, sequential: sequential,
		have: NewBitfield(n), wanted: NewBitfield(n), partial: NewBitfield(n),
		avail: make([]int32, n), active: make([]int32, n),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	for i := range n {
		if wanted == nil || wanted(i) {
			p.wanted.Set(i)
			p.missing++
		}
	}
	return p
}

// Len returns the number of pieces.
func (p *Picker) Len() int { return p.n }

// SetHave records that piece i is verified.
func (p *Picker) SetHave(i int) {
	if i < 0 || i >= p.n || p.have.Has(i) {
		return
	}
	p.have.Set(i)
	p.nhave++
	p.partial.Clear(i)
	if p.wanted.Has(i) {
		p.missing--
	}
}

// HaveCount returns how many pieces are verified.
func (p *Picker) HaveCount() int { return p.nhave }

// Have reports whether piece i is verified.
func (p *Picker) Have(i int) bool { return p.have.Has(i) }

// HaveField returns a copy of the verified set.
func (p *Picker) HaveField() Bitfield { return p.have.Clone() }

// Wanted reports whether piece i is to be downloaded.
func (p *Picker) Wanted(i int) bool { return p.wanted.Has(i) }

// Missing returns how many wanted pieces are not verified yet; 0 means complete.
func (p *Picker) Missing() int { return p.missing }

// PeerHas records that one more peer has piece i.
func (p *Picker) PeerHas(i int) {
	if i >= 0 && i < p.n {
		p.avail[i]++
	}
}

// PeerLost records that a peer that had piece i is gone.
func (p *Picker) PeerLost(i int) {
	if i >= 0 && i < p.n && p.avail[i] > 0 {
		p.avail[i]--
	}
}

// Availability returns how many connected peers have piece i.
func (p *Picker) Availability(i int) int { return int(p.avail[i]) }

// Start records that a peer began downloading piece i.
func (p *Picker) Start(i int) { p.active[i]++ }

// Stop records that a peer stopped downloading piece i; partial says some of its blocks are
// stored, so the piece should be finished first.
func (p *Picker) Stop(i int, partial bool) {
	if p.active[i] > 0 {
		p.active[i]--
	}
	if partial && !p.have.Has(i) {
		p.partial.Set(i)
	} else {
		p.partial.Clear(i)
	}
}

// Active returns how many peers are downloading piece i.
func (p *Picker) Active(i int) int { return int(p.active[i]) }

// Pick returns the next piece for a peer, given which pieces it has and may be asked for
// (has), or ok false when there is none. endgame is true when the piece is already being
// downloaded by another peer; has must exclude pieces this peer is downloading already.
func (p *Picker) Pick(has func(int) bool) (piece int, endgame, ok bool) {
	if p.missing == 0 || p.n == 0 {
		return 0, false, false
	}
	start := 0
	if !p.sequential {
		start = p.rng.IntN(p.n)
	}
	best, bestAvail, bestPartial := -1, int32(0), false
	egBest, egActive := -1, int32(0)
	for k := range p.n {
		i := start + k
		if i >= p.n {
			i -= p.n
		}
		if !p.wanted.Has(i) || p.have.Has(i) || !has(i) {
			continue
		}
		if p.active[i] > 0 {
			if egBest < 0 || p.active[i] < egActive {
				egBest, egActive = i, p.active[i]
			}
			continue
		}
		part := p.partial.Has(i)
		if p.sequential {
			return i, false, true
		}
		if best < 0 || part && !bestPartial || part == bestPartial && p.avail[i] < bestAvail {
			best, bestAvail, bestPartial = i, p.avail[i], part
		}
	}
	if best >= 0 {
		return best, false, true
	}
	if egBest >= 0 {
		return egBest, true, true
	}
	return 0, false, false
}
