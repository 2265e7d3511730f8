package crawl

import (
	"container/heap"
	"net/netip"
	"time"
)

// frontier is the walk's state about remote nodes: who is known, who has
// never been visited, and when each visited node may be asked again. It is
// pure policy (no I/O, time passed in) and is owned by the walk goroutine.
type frontier struct {
	cfg   frontierConfig
	nodes map[netip.AddrPort]*remote
	fresh []*remote // never visited, oldest first
	later remoteHeap
	dead  int // nodes in nodes with dead set
}

type frontierConfig struct {
	MaxNodes    int           // nodes remembered; new ones beyond are ignored
	MinInterval time.Duration // floor on any re-visit delay (guards interval 0)
	Revisit     time.Duration // re-sample a node that gave us everything it holds
	MaxInterval time.Duration // ceiling on a node's advertised interval
	FindNodeGap time.Duration // re-visit of a node without BEP 51 (find_node only)
	BackoffBase time.Duration // first delay after an error or timeout
	BackoffMax  time.Duration
	MaxFailures int // consecutive failures after which a node is dropped
}

// remote is one DHT node the walk knows.
type remote struct {
	addr     netip.AddrPort
	nextAt   time.Time
	inflight bool
	visited  bool
	noBEP51  bool // answered sample_infohashes with 204 or without samples
	failures int
	dead     bool // dropped after MaxFailures; kept so it is not re-added at once
	idx      int  // position in later; -1 when not there
}

// outcome is what a visit produced.
type outcome struct {
	err         error
	unsupported bool          // the node does not speak BEP 51
	interval    time.Duration // advertised BEP 51 interval
	num         int           // infohashes the node says it holds
	got         int           // samples in the reply
}

func newFrontier(cfg frontierConfig) *frontier {
	return &frontier{cfg: cfg, nodes: make(map[netip.AddrPort]*remote)}
}

// add learns addr; it reports whether the node is new.
func (f *frontier) add(addr netip.AddrPort) bool {
	if !addr.IsValid() || addr.Port() == 0 {
		return false
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if _, ok := f.nodes[addr]; ok {
		return false
	}
	if len(f.nodes) >= f.cfg.MaxNodes && f.dead > f.cfg.MaxNodes/8 {
		// Full, largely of dropped nodes: forget those (an O(n) sweep
		// that frees at least an eighth of the map, so it is rare).
		f.purgeDead()
	}
	if len(f.nodes) >= f.cfg.MaxNodes {
		return false
	}
	r := &remote{addr: addr, idx: -1}
	f.nodes[addr] = r
	f.fresh = append(f.fresh, r)
	return true
}

// next picks the node to visit now: unvisited nodes first (they widen the
// walk), then the node whose re-visit is most overdue. With nothing ready
// it returns nil and how long until something is (0: nothing scheduled).
func (f *frontier) next(now time.Time) (*remote, time.Duration) {
	if len(f.fresh) > 0 {
		r := f.fresh[0]
		f.fresh[0] = nil
		f.fresh = f.fresh[1:]
		r.inflight = true
		return r, 0
	}
	if len(f.later) == 0 {
		return nil, 0
	}
	r := f.later[0]
	if d := r.nextAt.Sub(now); d > 0 {
		return nil, d
	}
	heap.Pop(&f.later)
	r.inflight = true
	return r, 0
}

// done records the outcome of a visit to r and schedules the next one.
func (f *frontier) done(r *remote, o outcome, now time.Time) {
	r.inflight = false
	r.visited = true
	var delay time.Duration
	switch {
	case o.unsupported:
		r.noBEP51, r.failures = true, 0
		delay = f.cfg.FindNodeGap
	case o.err != nil:
		r.failures++
		if r.failures >= f.cfg.MaxFailures {
			r.dead = true
			f.dead++
			return // not rescheduled; stays in nodes so it is not re-added at once
		}
		delay = min(f.cfg.BackoffBase<<(r.failures-1), f.cfg.BackoffMax)
	case r.noBEP51:
		r.failures = 0
		delay = f.cfg.FindNodeGap
	default:
		r.failures = 0
		delay = min(max(o.interval, 0), f.cfg.MaxInterval)
		if o.num <= o.got {
			// We have seen all it holds: come back only for new ones.
			delay = max(delay, f.cfg.Revisit)
		}
	}
	r.nextAt = now.Add(max(delay, f.cfg.MinInterval))
	heap.Push(&f.later, r)
}

// alive counts nodes that are not dead.
func (f *frontier) alive() int { return len(f.nodes) - f.dead }

// purgeDead forgets dropped nodes, so they may be learned afresh.
func (f *frontier) purgeDead() {
	for a, r := range f.nodes {
		if r.dead {
			delete(f.nodes, a)
		}
	}
	f.dead = 0
}

type remoteHeap []*remote

func (h remoteHeap) Len() int           { return len(h) }
func (h remoteHeap) Less(i, j int) bool { return h[i].nextAt.Before(h[j].nextAt) }
func (h remoteHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *remoteHeap) Push(x any) {
	r := x.(*remote)
	r.idx = len(*h)
	*h = append(*h, r)
}
func (h *remoteHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	r.idx = -1
	*h = old[:len(old)-1]
	return r
}
