package dht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// Set is the DHT nodes one process runs, one per UDP socket (IPv4 and, for BEP 32, IPv6), used
// as one node: a lookup runs on every node at once and yields each peer once, an announce goes
// out on every socket, the figures add up. Callers' callbacks are called from the caller's own
// goroutine, never concurrently and never under a lock of the Set.
type Set struct {
	nodes []*Node

	mu      sync.Mutex // guards closed and the wg.Add of background walks
	closed  bool
	stop    context.CancelFunc // ends the background walks
	ctx     context.Context
	wg      sync.WaitGroup // background walks
	closeMu sync.Once
	cerr    error
}

// NewSet makes a Set of the given nodes, which it then owns (Close closes them). It starts
// nothing: call Bootstrap or StartBootstrap.
func NewSet(nodes ...*Node) (*Set, error) {
	if len(nodes) == 0 {
		return nil, errors.New("dht: a set needs at least one node")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Set{nodes: nodes, ctx: ctx, stop: cancel}
	return s, nil
}

// Members returns the nodes of the set, IPv4 first when both were given in that order.
func (s *Set) Members() []*Node { return s.nodes }

// Addrs returns the local socket addresses.
func (s *Set) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Bootstrap runs every node's Bootstrap at once and waits for them. It returns nil when at least
// one node's walk succeeded, else the nodes' errors joined.
func (s *Set) Bootstrap(ctx context.Context) error {
	errs := make([]error, len(s.nodes))
	var wg sync.WaitGroup
	for i, n := range s.nodes {
		wg.Go(func() {
			if err := n.Bootstrap(ctx); err != nil {
				errs[i] = fmt.Errorf("%v: %w", n.Addr(), err)
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		if e == nil {
			return nil
		}
	}
	return errors.Join(errs...)
}

// StartBootstrap runs each node's Bootstrap in the background, until it ends or Close; nothing
// needs to wait for it (Lookup and Announce start at once from whatever is known). done, when
// not nil, is called once per node with its walk's outcome (nil on success), outside any lock;
// it is not called for a walk that Close ended.
func (s *Set) StartBootstrap(done func(n *Node, err error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, n := range s.nodes {
		s.wg.Go(func() {
			err := n.Bootstrap(s.ctx)
			if s.ctx.Err() == nil && done != nil {
				done(n, err)
			}
		})
	}
}

// Lookup runs a get_peers traversal on every node at once and calls fn once per distinct peer,
// from the calling goroutine, never concurrently. fn returning false stops them all. It returns
// nil when the traversals are exhausted or fn stopped them, ctx.Err() when ctx ends, and an
// error only when every node's traversal failed.
func (s *Set) Lookup(ctx context.Context, ih [20]byte, fn func(PeerResult) bool) error {
	if len(s.nodes) == 1 {
		return s.nodes[0].Lookup(ctx, ih, fn)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan PeerResult, 16)
	errs := make([]error, len(s.nodes))
	var wg sync.WaitGroup
	for i, n := range s.nodes {
		wg.Go(func() {
			errs[i] = n.Lookup(lctx, ih, func(r PeerResult) bool {
				select {
				case results <- r:
					return true
				case <-lctx.Done():
					return false
				}
			})
		})
	}
	go func() { wg.Wait(); close(results) }()
	seen := make(map[netip.AddrPort]struct{})
	stopped := false
	for r := range results {
		if stopped {
			continue // drain: the walks end on lctx
		}
		if _, dup := seen[r.Peer]; dup {
			continue
		}
		seen[r.Peer] = struct{}{}
		if !fn(r) {
			stopped = true
			cancel()
		}
	}
	if stopped {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var failed []error
	for _, e := range errs {
		if e == nil {
			return nil
		}
		failed = append(failed, e)
	}
	return errors.Join(failed...)
}

// Announce tells the DHT, on every socket at once, that we serve ih on port (see
// Node.Announce). It fails only when every node failed.
func (s *Set) Announce(ctx context.Context, ih [20]byte, port int) error {
	errs := make([]error, len(s.nodes))
	var wg sync.WaitGroup
	for i, n := range s.nodes {
		wg.Go(func() {
			if err := n.Announce(ctx, ih, port); err != nil {
				errs[i] = fmt.Errorf("via %v: %w", n.Addr(), err)
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		if e == nil {
			return nil
		}
	}
	return errors.Join(errs...)
}

// node returns the member of addr's family, or nil.
func (s *Set) node(addr netip.AddrPort) *Node {
	v6 := addr.Addr().Is6() && !addr.Addr().Is4In6()
	for _, n := range s.nodes {
		if n.isV6() == v6 {
			return n
		}
	}
	return nil
}

// AddNode hands addr to the member of its family (see Node.AddNode).
func (s *Set) AddNode(addr netip.AddrPort) {
	if n := s.node(addr); n != nil {
		n.AddNode(addr)
	}
}

// FindNode sends one find_node query to addr from the member of its family.
func (s *Set) FindNode(ctx context.Context, addr netip.AddrPort, target [20]byte) ([]netip.AddrPort, error) {
	n := s.node(addr)
	if n == nil {
		return nil, fmt.Errorf("dht: find_node %s: %w (no socket of that family)", addr, ErrNoNodes)
	}
	return n.FindNode(ctx, addr, target)
}

// SampleInfohashes sends one BEP 51 query to addr from the member of its family.
func (s *Set) SampleInfohashes(ctx context.Context, addr netip.AddrPort, target [20]byte) (Sample, error) {
	n := s.node(addr)
	if n == nil {
		return Sample{}, fmt.Errorf("dht: sample_infohashes %s: %w (no socket of that family)", addr, ErrNoNodes)
	}
	return n.SampleInfohashes(ctx, addr, target)
}

// Nodes returns the nodes every member has heard from (see Node.Nodes), member by member.
func (s *Set) Nodes() []netip.AddrPort {
	var out []netip.AddrPort
	for _, n := range s.nodes {
		out = append(out, n.Nodes()...)
	}
	return out
}

// Stats adds up the members' figures.
func (s *Set) Stats() Stats {
	t := Stats{QueriesInByType: map[string]int64{}}
	for _, n := range s.nodes {
		st := n.Stats()
		t.GoodNodes += st.GoodNodes
		t.Nodes += st.Nodes
		t.QueriesIn += st.QueriesIn
		t.QueriesOut += st.QueriesOut
		t.PeersStored += st.PeersStored
		t.Infohashes += st.Infohashes
		t.RepliesSent += st.RepliesSent
		t.RepliesDropped += st.RepliesDropped
		t.PacketsDropped += st.PacketsDropped
		for k, v := range st.QueriesInByType {
			t.QueriesInByType[k] += v
		}
	}
	return t
}

// Save writes every member's StateFile now.
func (s *Set) Save() error {
	var errs []error
	for _, n := range s.nodes {
		errs = append(errs, n.Save())
	}
	return errors.Join(errs...)
}

// Close ends the background walks, then closes every member (each saves its table). It is safe
// to call more than once.
func (s *Set) Close() error {
	s.closeMu.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.stop()
		s.wg.Wait()
		var errs []error
		for _, n := range s.nodes {
			errs = append(errs, n.Close())
		}
		s.cerr = errors.Join(errs...)
	})
	return s.cerr
}
