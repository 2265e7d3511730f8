package dht

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	anadht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/int160"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
	"github.com/anacrolix/dht/v2/types"
	"github.com/anacrolix/generics"
)

// Traversal shape. A wider alpha than the library's 3 costs little (answers are small) and cuts
// lookup latency, which is what a magnet download waits on.
const (
	lookupAlpha = 8
	lookupK     = 8
	bootAlpha   = 8
	bootK       = 16
	// seedClosest is how many tracked nodes nearest the target seed a traversal besides the
	// table; the traversal itself only queries those that could improve its closest set.
	seedClosest = 64
)

// Bootstrap fills the routing table by walking toward our own id: from the table and the saved
// nodes first, from the bootstrap list when those are empty or none of them answered.
func (n *Node) Bootstrap(ctx context.Context) error {
	op, err := n.walk(ctx, n.id, bootAlpha, bootK, n.findNodeQuery(n.id), nil, nil)
	if err != nil {
		return fmt.Errorf("dht: bootstrap: %w", err)
	}
	n.log.Debug("dht: bootstrapped", "tried", op.Stats().NumAddrsTried, "responses", op.Stats().NumResponses, "table", n.srv.NumNodes())
	return nil
}

// Lookup walks toward ih with get_peers and calls fn for each distinct peer as it is found. It
// returns nil when the traversal is exhausted or fn returns false, ctx.Err() when ctx ends, and
// an error wrapping ErrNoResponses when no node answered.
func (n *Node) Lookup(ctx context.Context, ih [20]byte, fn func(PeerResult) bool) error {
	results := make(chan []PeerResult, lookupAlpha)
	seen := make(map[netip.AddrPort]struct{})
	consume := func(batch []PeerResult) bool {
		for _, pr := range batch {
			if _, ok := seen[pr.Peer]; ok {
				continue
			}
			seen[pr.Peer] = struct{}{}
			if !fn(pr) {
				return false
			}
		}
		return true
	}
	_, err := n.walk(ctx, ih, lookupAlpha, lookupK, n.getPeersQuery(ih, results), nil, &lookupSink{results, consume})
	if err != nil {
		return fmt.Errorf("dht: lookup %x: %w", ih, err)
	}
	return nil
}

// Announce walks toward ih with get_peers and then sends announce_peer with port to the closest
// nodes that gave a token. port <= 0 asks them to use our UDP source port (implied_port).
func (n *Node) Announce(ctx context.Context, ih [20]byte, port int) error {
	op, err := n.walk(ctx, ih, lookupAlpha, lookupK, n.getPeersQuery(ih, nil), func(data any) bool {
		tok, ok := data.(string)
		return ok && tok != ""
	}, nil)
	if err != nil {
		return fmt.Errorf("dht: announce %x: %w", ih, err)
	}
	var targets []k_nearest_nodes.Elem
	op.Closest().Range(func(e k_nearest_nodes.Elem) { targets = append(targets, e) })
	if len(targets) == 0 {
		return fmt.Errorf("dht: announce %x: %w (no node gave a token)", ih, ErrNoResponses)
	}
	actx, cancel := mergeCtx(ctx, n.ctx)
	defer cancel()
	var ok atomic.Int32
	var wg sync.WaitGroup
	for _, e := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := port
			implied := port <= 0
			if implied {
				p = int(n.addr.Port())
			}
			res := n.srv.Query(actx, anadht.NewAddr(e.Addr.UDP()), "announce_peer", anadht.QueryInput{
				MsgArgs:  krpc.MsgArgs{InfoHash: ih, Port: &p, ImpliedPort: implied, Token: e.Data.(string)},
				NumTries: 2,
			})
			if res.ToError() == nil {
				ok.Add(1)
				n.noteReply(e.Addr.AddrPort, res)
			}
		}()
	}
	wg.Wait()
	if err := n.opErr(ctx); err != nil {
		return fmt.Errorf("dht: announce %x: %w", ih, err)
	}
	if ok.Load() == 0 {
		return fmt.Errorf("dht: announce %x: %w (announce_peer got no answer)", ih, ErrNoResponses)
	}
	return nil
}

// FindNode sends one find_node query to addr and returns the nodes it names.
func (n *Node) FindNode(ctx context.Context, addr netip.AddrPort, target [20]byte) ([]netip.AddrPort, error) {
	res, err := n.query(ctx, addr, "find_node", krpc.MsgArgs{Target: target, Want: n.want()})
	if err != nil {
		return nil, fmt.Errorf("dht: find_node %s: %w", addr, err)
	}
	var out []netip.AddrPort
	res.Reply.R.ForAllNodes(func(ni krpc.NodeInfo) {
		if ap, ok := toAddrPort(ni.Addr); ok {
			out = append(out, ap)
		}
	})
	return out, nil
}

// SampleInfohashes sends one BEP 51 sample_infohashes query to addr.
func (n *Node) SampleInfohashes(ctx context.Context, addr netip.AddrPort, target [20]byte) (Sample, error) {
	res, err := n.query(ctx, addr, "sample_infohashes", krpc.MsgArgs{Target: target, Want: n.want()})
	if err != nil {
		return Sample{}, fmt.Errorf("dht: sample_infohashes %s: %w", addr, err)
	}
	return sampleFromReturn(res.Reply.R), nil
}

// query sends one query (with one resend) and returns an answer that has an "r" dict.
func (n *Node) query(ctx context.Context, addr netip.AddrPort, q string, args krpc.MsgArgs) (anadht.QueryResult, error) {
	if err := n.opErr(ctx); err != nil {
		return anadht.QueryResult{}, err
	}
	qctx, cancel := mergeCtx(ctx, n.ctx)
	defer cancel()
	res := n.srv.Query(qctx, anadht.NewAddr(net.UDPAddrFromAddrPort(addr)), q, anadht.QueryInput{MsgArgs: args, NumTries: 2})
	if err := n.opErr(ctx); err != nil {
		return res, err
	}
	if err := res.ToError(); err != nil {
		return res, err
	}
	if res.Reply.R == nil {
		return res, errors.New("reply has no r dict")
	}
	n.noteReply(addr, res)
	return res, nil
}

func (n *Node) want() []krpc.Want {
	if n.isV6() {
		return []krpc.Want{krpc.WantNodes6}
	}
	return []krpc.Want{krpc.WantNodes}
}

func (n *Node) isV6() bool { return n.addr.Addr().Is6() && !n.addr.Addr().Is4In6() }

// opErr is the error an operation reports once ctx or the node ends: ctx's own error first.
func (n *Node) opErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	return nil
}

// mergeCtx returns a context ended by either parent.
func mergeCtx(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

type lookupSink struct {
	results chan []PeerResult
	consume func([]PeerResult) bool // false: stop
}

type doQuery func(ctx context.Context, addr netip.AddrPort) traversal.QueryResult

// walk runs one iterative traversal toward target until it is exhausted, ctx ends, the node
// closes, or sink asks to stop. It seeds from the table and the tracked nodes nearest target,
// and adds the bootstrap list when there is nothing else or nothing answered (the library never
// falls back once its table holds dead nodes). The returned operation is stopped: its Closest
// set may be read.
func (n *Node) walk(ctx context.Context, target [20]byte, alpha, k int, q doQuery, dataFilter func(any) bool, sink *lookupSink) (*traversal.Operation, error) {
	if err := n.opErr(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := mergeCtx(ctx, n.ctx)
	defer cancel()
	self := n.addr
	op := traversal.Start(traversal.OperationInput{
		Target: target,
		Alpha:  alpha,
		K:      k,
		DoQuery: func(tctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			ap, ok := toAddrPort(addr)
			if !ok {
				return traversal.QueryResult{}
			}
			qctx, qcancel := mergeCtx(tctx, wctx)
			defer qcancel()
			return q(qctx, ap)
		},
		NodeFilter: func(am types.AddrMaybeId) bool {
			ap := normAddrPort(am.Addr.AddrPort)
			if ap == self || ap.Port() == 0 || ap.Addr().Unmap().Is4() == n.isV6() {
				return false
			}
			return n.srv.TraversalNodeFilter(am)
		},
		DataFilter: dataFilter,
	})
	stopOp := func() {
		op.Stop()
		cancel()
		<-op.Stopped()
	}
	seeds := n.seeds(target)
	usedBootstrap := len(seeds) == 0
	if usedBootstrap {
		seeds = n.bootstrapSeeds()
	}
	if len(seeds) == 0 {
		stopOp()
		return op, ErrNoNodes
	}
	op.AddNodes(seeds)
	var results chan []PeerResult
	if sink != nil {
		results = sink.results
	}
	for {
		select {
		case batch := <-results:
			if !sink.consume(batch) {
				stopOp()
				return op, nil
			}
			continue
		case <-wctx.Done():
			stopOp()
			return op, n.opErr(ctx)
		case <-op.Stalled():
		}
		if atomic.LoadUint32(&op.Stats().NumResponses) == 0 && !usedBootstrap {
			usedBootstrap = true
			if bs := n.bootstrapSeeds(); len(bs) > 0 {
				n.log.Debug("dht: no saved or table node answered; trying bootstrap nodes", "target", fmt.Sprintf("%x", target))
				op.AddNodes(bs)
				continue
			}
		}
		break
	}
	stopOp()
	// Batches sent before the traversal stalled are still buffered: deliver them.
	if sink != nil {
		for done := false; !done; {
			select {
			case batch := <-results:
				if !sink.consume(batch) {
					done = true
				}
			default:
				done = true
			}
		}
	}
	if atomic.LoadUint32(&op.Stats().NumResponses) == 0 {
		return op, fmt.Errorf("%w (%d queried)", ErrNoResponses, atomic.LoadUint32(&op.Stats().NumAddrsTried))
	}
	return op, nil
}

// seeds returns the routing table plus the tracked (answered, or saved) nodes nearest target.
func (n *Node) seeds(target [20]byte) []types.AddrMaybeId {
	var out []types.AddrMaybeId
	for _, ni := range n.srv.Nodes() {
		var am types.AddrMaybeId
		am.FromNodeInfo(ni)
		out = append(out, am)
	}
	v6 := n.isV6()
	for _, tn := range n.nodes.closest(target, seedClosest, func(ap netip.AddrPort) bool { return ap.Addr().Is4() != v6 }) {
		out = append(out, types.AddrMaybeId{
			Addr: krpc.NodeAddrPort{AddrPort: tn.Addr},
			Id:   generics.Some(int160.FromByteArray(tn.ID)),
		})
	}
	return out
}

func (n *Node) bootstrapSeeds() []types.AddrMaybeId {
	var out []types.AddrMaybeId
	for _, ap := range n.cfg.Bootstrap {
		ap = normAddrPort(ap)
		if ap.Addr().Is4() == n.isV6() {
			continue
		}
		out = append(out, types.AddrMaybeId{Addr: krpc.NodeAddrPort{AddrPort: ap}})
	}
	return out
}

func (n *Node) findNodeQuery(target [20]byte) doQuery {
	return func(ctx context.Context, ap netip.AddrPort) traversal.QueryResult {
		res := n.srv.Query(ctx, anadht.NewAddr(net.UDPAddrFromAddrPort(ap)), "find_node", anadht.QueryInput{
			MsgArgs: krpc.MsgArgs{Target: target, Want: n.want()},
		})
		n.noteReply(ap, res)
		return res.TraversalQueryResult(nodeAddr(ap))
	}
}

// getPeersQuery queries one node; peers in its answer go to results (when not nil).
func (n *Node) getPeersQuery(ih [20]byte, results chan<- []PeerResult) doQuery {
	return func(ctx context.Context, ap netip.AddrPort) traversal.QueryResult {
		// Sent twice (after ResendDelay) when unanswered: a lost datagram on
		// a busy socket must not cost the lookup the peers that node holds.
		res := n.srv.Query(ctx, anadht.NewAddr(net.UDPAddrFromAddrPort(ap)), "get_peers", anadht.QueryInput{
			MsgArgs:  krpc.MsgArgs{InfoHash: ih, Want: n.want()},
			NumTries: 2,
		})
		n.noteReply(ap, res)
		if r := res.Reply.R; r != nil && results != nil && len(r.Values) > 0 {
			batch := make([]PeerResult, 0, min(len(r.Values), maxValues))
			for _, v := range r.Values[:min(len(r.Values), 4*maxValues)] {
				if p, ok := toAddrPort(v); ok && p.Addr().IsValid() && !p.Addr().IsUnspecified() {
					batch = append(batch, PeerResult{Peer: p, From: ap})
				}
			}
			select {
			case results <- batch:
			case <-ctx.Done():
			}
		}
		return res.TraversalQueryResult(nodeAddr(ap))
	}
}
