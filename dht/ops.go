package dht

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	anadht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"

	"github.com/magnetget/magnetget/routing"
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
// nodes first, from the bootstrap list when those are empty or none of them answered. Nothing
// needs to wait for it: Lookup and Announce start at once from whatever is known, and take up
// the nodes a Bootstrap running beside them learns.
func (n *Node) Bootstrap(ctx context.Context) error {
	res, err := n.walk(ctx, n.id, bootAlpha, bootK, n.findNodeQuery(n.id), nil, nil)
	if err != nil {
		return fmt.Errorf("dht: bootstrap: %w", err)
	}
	n.log.Debug("dht: bootstrapped", "tried", res.tried, "responses", res.responded, "table", n.srv.NumNodes())
	return nil
}

// Lookup walks toward ih with get_peers and calls fn for each distinct peer as it is found. It
// starts at once, without waiting for Bootstrap: from the table, the saved nodes and, while fewer
// than k nodes have ever answered us, the bootstrap list. A node silent for a short while (a
// fifth of ResendDelay, at most 400 ms) stops holding up the walk: the next candidate is asked
// beside it, and its late answer still counts. fn is never called concurrently. It returns nil when the traversal is exhausted or fn returns false, ctx.Err()
// when ctx ends, and an error wrapping ErrNoResponses when no node answered.
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
	if err != nil && !errors.Is(err, errStopped) {
		return fmt.Errorf("dht: lookup %x: %w", ih, err)
	}
	return nil
}

// Announce walks toward ih with get_peers and then sends announce_peer with port to the closest
// nodes that gave a token. port <= 0 asks them to use our UDP source port (implied_port).
func (n *Node) Announce(ctx context.Context, ih [20]byte, port int) error {
	res, err := n.walk(ctx, ih, lookupAlpha, lookupK, n.getPeersQuery(ih, nil), func(data any) bool {
		tok, ok := data.(string)
		return ok && tok != ""
	}, nil)
	if err != nil {
		return fmt.Errorf("dht: announce %x: %w", ih, err)
	}
	targets := res.closest
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
			res := n.srv.Query(actx, anadht.NewAddr(net.UDPAddrFromAddrPort(e.addr)), "announce_peer", anadht.QueryInput{
				MsgArgs:  krpc.MsgArgs{InfoHash: ih, Port: &p, ImpliedPort: implied, Token: e.data.(string)},
				NumTries: 2,
			})
			if res.ToError() == nil {
				ok.Add(1)
				n.noteReply(e.addr, res)
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

// errStopped reports that the sink asked the walk to stop.
var errStopped = errors.New("stopped by the caller")

// softTimeout is how long a traversal query holds one of alpha's slots before the next
// candidate is queried beside it: a fifth of the resend delay, within 20-400 ms (a few
// round trips on the real network).
func (n *Node) softTimeout() time.Duration {
	return min(max(n.cfg.ResendDelay/5, 20*time.Millisecond), 400*time.Millisecond)
}

// walk runs one iterative traversal toward target until no candidate can bring it closer, ctx
// ends, the node closes, or sink asks to stop (errStopped). It starts at once from whatever is
// known: the table and the tracked nodes nearest target, plus the bootstrap list while fewer than
// k of those have ever answered. When it runs out of candidates it takes up nodes learned
// meanwhile (a bootstrap walk may be running beside it), and the bootstrap list if nothing
// answered (the library never falls back once its table holds dead nodes).
func (n *Node) walk(ctx context.Context, target [20]byte, alpha, k int, q travQuery, want func(any) bool, sink *lookupSink) (travResult, error) {
	if err := n.opErr(ctx); err != nil {
		return travResult{}, err
	}
	wctx, cancel := mergeCtx(ctx, n.ctx)
	defer cancel()
	self := n.addr
	v6 := n.isV6()
	seeds, known := n.seeds(target)
	usedBootstrap := known < k
	if usedBootstrap {
		seeds = append(seeds, n.bootstrapSeeds()...)
	}
	if len(seeds) == 0 {
		return travResult{}, ErrNoNodes
	}
	tr := &trav{
		target:  target,
		k:       k,
		alpha:   alpha,
		soft:    n.softTimeout(),
		maxSlow: 4 * alpha,
		query: func(ctx context.Context, ap netip.AddrPort) travReply {
			if !n.nodes.mayQuery(ap) {
				return travReply{} // a bad node that another lookup just tried
			}
			return q(ctx, ap)
		},
		want: want,
		keep: func(ap netip.AddrPort) bool {
			ap = normAddrPort(ap)
			return ap != self && ap.Port() != 0 && ap.Addr().Is4() != v6 && !ap.Addr().IsUnspecified() &&
				!n.nodes.shunned(ap) // other nodes still hand out nodes we found dead
		},
		more: func(responded int) []travNode {
			more, _ := n.seeds(target)
			if responded == 0 && !usedBootstrap {
				usedBootstrap = true
				n.log.Debug("dht: no saved or table node answered; trying bootstrap nodes", "target", fmt.Sprintf("%x", target))
				more = append(more, n.bootstrapSeeds()...)
			}
			return more
		},
	}
	stopped := false
	if sink != nil {
		tr.event = sink.results
		tr.handle = func(batch []PeerResult) bool {
			if !sink.consume(batch) {
				stopped = true
				return false
			}
			return true
		}
	}
	res := tr.run(wctx, seeds)
	switch {
	case stopped:
		return res, errStopped
	case n.opErr(ctx) != nil:
		return res, n.opErr(ctx)
	case res.responded == 0:
		return res, fmt.Errorf("%w (%d queried)", ErrNoResponses, res.tried)
	}
	return res, nil
}

// seeds returns the routing table plus the tracked (answered, or saved) nodes nearest target,
// none of them bad, and how many of them have answered us at some time.
func (n *Node) seeds(target [20]byte) (out []travNode, answered int) {
	table := n.srv.Nodes()
	good := n.srv.Stats().GoodNodes
	v6 := n.isV6()
	tracked := n.nodes.closest(target, seedClosest, func(ap netip.AddrPort) bool { return ap.Addr().Is4() != v6 })
	return mergeSeeds(table, good, tracked, n.nodes.shunned)
}

// mergeSeeds joins a snapshot of the library's table, its count of good nodes and the tracked
// nodes into traversal seeds, and counts those that have answered us. The table's list and its
// count are two snapshots: a bootstrap walk running beside fills the table between them, so the
// count may cover nodes the list lacks. It is capped at the list's length: counted uncapped, an
// empty list with 8 good nodes counted a moment later skipped the bootstrap list and left the
// walk nothing to start from (ErrNoNodes at once, ~1 lookup in 600 started beside a bootstrap
// under load).
func mergeSeeds(table []krpc.NodeInfo, tableGood int, tracked []routing.Node, bad func(netip.AddrPort) bool) (out []travNode, answered int) {
	nTable := 0
	for _, ni := range table {
		// The library's table keeps nodes that stopped answering us; the tracker knows.
		if ap, ok := toAddrPort(ni.Addr); ok && !bad(ap) {
			out = append(out, travNode{addr: ap, id: ni.ID, hasID: true})
			nTable++
		}
	}
	for _, tn := range tracked {
		out = append(out, travNode{addr: tn.Addr, id: tn.ID, hasID: true})
	}
	return out, max(len(tracked), min(tableGood, nTable))
}

func (n *Node) bootstrapSeeds() []travNode {
	var out []travNode
	for _, ap := range n.cfg.Bootstrap {
		ap = normAddrPort(ap)
		if ap.Addr().Is4() == n.isV6() {
			continue
		}
		out = append(out, travNode{addr: ap})
	}
	return out
}

// noteTravReply is noteReply for a traversal's query: one the traversal cut short after its soft
// timeout (it ended while the node was still silent) also marks the node stalled.
func (n *Node) noteTravReply(ap netip.AddrPort, res anadht.QueryResult, start time.Time) {
	n.noteReply(ap, res)
	if res.Err != nil && n.ctx.Err() == nil && (errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, context.DeadlineExceeded)) &&
		time.Since(start) >= n.softTimeout() {
		n.nodes.stall(ap)
	}
}

// travReplyOf converts a library query result.
func travReplyOf(res anadht.QueryResult) travReply {
	r := res.Reply.R
	if res.Err != nil || r == nil {
		return travReply{}
	}
	tr := travReply{ok: true, id: r.ID}
	r.ForAllNodes(func(ni krpc.NodeInfo) {
		if ap, ok := toAddrPort(ni.Addr); ok {
			tr.nodes = append(tr.nodes, travNode{addr: ap, id: ni.ID, hasID: true})
		}
	})
	if r.Token != nil {
		tr.data = *r.Token
	}
	return tr
}

func (n *Node) findNodeQuery(target [20]byte) travQuery {
	return func(ctx context.Context, ap netip.AddrPort) travReply {
		// Sent twice, like get_peers: an answer lost in a full socket buffer (a query flood)
		// must not end a bootstrap whose few seeds were each asked once.
		start := time.Now()
		res := n.srv.Query(ctx, anadht.NewAddr(net.UDPAddrFromAddrPort(ap)), "find_node", anadht.QueryInput{
			MsgArgs:  krpc.MsgArgs{Target: target, Want: n.want()},
			NumTries: 2,
		})
		n.noteTravReply(ap, res, start)
		return travReplyOf(res)
	}
}

// getPeersQuery queries one node; peers in its answer go to results (when not nil).
func (n *Node) getPeersQuery(ih [20]byte, results chan<- []PeerResult) travQuery {
	return func(ctx context.Context, ap netip.AddrPort) travReply {
		// Sent twice (after ResendDelay) when unanswered: a lost datagram on
		// a busy socket must not cost the lookup the peers that node holds.
		start := time.Now()
		res := n.srv.Query(ctx, anadht.NewAddr(net.UDPAddrFromAddrPort(ap)), "get_peers", anadht.QueryInput{
			MsgArgs:  krpc.MsgArgs{InfoHash: ih, Want: n.want()},
			NumTries: 2,
		})
		n.noteTravReply(ap, res, start)
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
		return travReplyOf(res)
	}
}
