// Package crawl discovers infohashes on the BitTorrent DHT and records them
// in an index (crawl/index).
//
// Vocabulary: a "node" is a DHT participant (UDP, KRPC); a "peer" is a
// BitTorrent client (TCP) holding a torrent; an "infohash" names a torrent.
//
// Two sources feed the index:
//
//   - The active walk (Run). It sends BEP 51 sample_infohashes queries to
//     node after node. Each query carries a target taken from a sequence
//     spread evenly over the 160-bit keyspace, so the nodes each reply
//     suggests (the ones closest to that target) pull the walk into every
//     region. Each node is asked at most once at a time, never again before
//     the interval it advertises; a node that holds more than it sampled
//     (num > samples) is asked again later with another target; a node
//     that errs or times out is backed off exponentially and dropped after
//     a few failures; a node without BEP 51 (error 204, or a reply without
//     samples) is sent find_node instead so it still widens the walk. All
//     queries share one token bucket (Rate).
//   - Passive harvesting (Harvest). Our own DHT node reports the infohashes
//     of get_peers and announce_peer queries it receives (dht.Config's
//     OnGetPeers and OnAnnounce); announces also name a peer.
//
// With MetadataWorkers > 0, Run also fetches the info dictionary (BEP 9) of
// every infohash whose metadata is due, using peers from a DHT lookup plus
// the peers seen announcing it. A failure is retried after an exponentially
// growing delay, recorded in the index so restarts respect it; fetched
// metadata is never fetched again.
package crawl

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2/krpc"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/metadata"
)

// How says how an infohash was seen (index.Sampled, index.GetPeers,
// index.Announce).
type How = index.How

// Ways an infohash is seen, re-exported for callers of Harvest.
const (
	Sampled  = index.Sampled
	GetPeers = index.GetPeers
	Announce = index.Announce
)

var (
	// ErrNoIndex: the Crawler has no Index.
	ErrNoIndex = errors.New("crawl: no index")
	// ErrNoNode: Run needs a DHT node.
	ErrNoNode = errors.New("crawl: no DHT node")
	// ErrNoStart: the walk has nowhere to start (no Seeds and the node
	// offers no nodes of its own).
	ErrNoStart = errors.New("crawl: no nodes to start the walk from")
)

// DHT is what the crawler needs from a DHT node; *dht.Node implements it.
// A node that also has a method Nodes() []netip.AddrPort (its routing
// table) seeds the walk besides Crawler.Seeds.
type DHT interface {
	SampleInfohashes(ctx context.Context, addr netip.AddrPort, target [20]byte) (dht.Sample, error)
	FindNode(ctx context.Context, addr netip.AddrPort, target [20]byte) ([]netip.AddrPort, error)
	Lookup(ctx context.Context, ih [20]byte, fn func(dht.PeerResult) bool) error
}

// FetchFunc fetches the bencoded info dictionary of ih from the peers sent
// on peers (closed when no more will come). metadata.Fetch wrapped by
// MetadataFetcher is the usual one.
type FetchFunc func(ctx context.Context, ih [20]byte, peers <-chan netip.AddrPort) ([]byte, error)

// Progress is a snapshot of a crawl.
type Progress struct {
	Found           int64         // infohashes this crawler recorded first (new to the index)
	Seen            int64         // sightings (samples and harvested), repeats included
	PerMinute       float64       // Found per minute of Run so far
	MetadataFetched int64         // info dictionaries fetched and stored
	MetadataFailed  int64         // fetch attempts that failed
	MetadataActive  int64         // fetches in progress (leased from the index's queue)
	NodesVisited    int64         // replies to our sample_infohashes / find_node queries
	NodesKnown      int           // nodes the walk knows and has not given up on
	Queries         int64         // queries sent
	Elapsed         time.Duration // Run's running time so far (or in all, once it returned)
	Share           [2]int        // this crawler's part of the keyspace: {rank, of crawlers}
	DB              index.Health  // the index's write side (buffer, drops, retries, latency)
}

// Crawler crawls the DHT through Node into Index. Set the fields, then call
// Run (or only Harvest, for passive harvesting without a walk). The zero
// values of the optional fields are sensible defaults.
type Crawler struct {
	Node  DHT         // required by Run; usually a *dht.Node
	Index index.Store // required; a bbolt *index.Index or a shared PostgreSQL one

	Seeds            []netip.AddrPort // where the walk starts (e.g. the bootstrap nodes or the routing table)
	Rate             float64          // walk queries/s over all nodes; 0 = 100, < 0 = unlimited
	MaxInflight      int              // concurrent walk queries; 0 = 32
	QueryTimeout     time.Duration    // per walk query; 0 = 10s
	MaxNodes         int              // nodes the walk remembers; 0 = 100000
	MinInterval      time.Duration    // floor on re-asking any node; 0 = 10s
	Revisit          time.Duration    // re-sample a node that showed all it holds; 0 = 10 min
	MetadataWorkers  int              // parallel metadata fetches; 0 = metadata off
	Fetch            FetchFunc        // nil = MetadataFetcher(metadata.Options{Logger: Logger})
	MetadataTimeout  time.Duration    // per fetch; 0 = 60s
	RetryBase        time.Duration    // first retry delay after a failed fetch; 0 = 10 min; doubles each time
	RetryMax         time.Duration    // cap on the retry delay; 0 = 24h
	Lease            time.Duration    // how long a claimed metadata fetch is ours; 0 = 2 x MetadataTimeout
	ShareInterval    time.Duration    // heartbeat to a shared index (index.Sharer); 0 = 5s
	Logger           *slog.Logger
	OnProgress       func(Progress) // called every ProgressInterval and when Run ends
	ProgressInterval time.Duration  // 0 = 10s

	start      atomic.Int64 // Run's start, unix nanos
	end        atomic.Int64 // Run's end, unix nanos; 0 while running
	seen       atomic.Int64
	fetched    atomic.Int64
	failed     atomic.Int64
	active     atomic.Int64
	share      atomic.Uint64 // rank<<32 | count; 0 = the whole keyspace
	visited    atomic.Int64
	queries    atomic.Int64
	known      atomic.Int64
	logOnce    sync.Once
	log        *slog.Logger
	harvestErr atomic.Int64 // index errors during Harvest (logged once per 1000)
}

func (c *Crawler) logger() *slog.Logger {
	c.logOnce.Do(func() {
		c.log = c.Logger
		if c.log == nil {
			c.log = slog.New(slog.DiscardHandler)
		}
	})
	return c.log
}

// Harvest records that ih was seen (how) and, when peer is valid, that
// peer announced it. dht.Config's hooks reach it through OnAnnounce and
// OnGetPeers (cfg.OnAnnounce = c.OnAnnounce); `magnetget node --harvest`
// may call it directly, without Run. It may block briefly while the index
// commits a batch.
func (c *Crawler) Harvest(ih [20]byte, peer netip.AddrPort, how How) {
	c.observe(ih, how, peer, time.Now())
}

// OnAnnounce is Harvest shaped as dht.Config.OnAnnounce.
func (c *Crawler) OnAnnounce(ih [20]byte, peer netip.AddrPort) { c.Harvest(ih, peer, Announce) }

// OnGetPeers is Harvest shaped as dht.Config.OnGetPeers. The querier is a
// node looking for peers, not a peer holding the torrent, so no peer is
// recorded.
func (c *Crawler) OnGetPeers(ih [20]byte, _ netip.AddrPort) {
	c.Harvest(ih, netip.AddrPort{}, GetPeers)
}

func (c *Crawler) observe(ih [20]byte, how How, peer netip.AddrPort, now time.Time) {
	if c.Index == nil {
		return
	}
	c.seen.Add(1)
	if err := c.Index.Observe(ih, how, peer, now); err != nil {
		if n := c.harvestErr.Add(1); n%1000 == 1 && !errors.Is(err, index.ErrClosed) {
			c.logger().Warn("crawl: recording an infohash failed", "err", err, "failures", n)
		}
	}
}

// Progress returns a snapshot.
func (c *Crawler) Progress() Progress {
	p := Progress{
		Seen:            c.seen.Load(),
		MetadataFetched: c.fetched.Load(),
		MetadataFailed:  c.failed.Load(),
		MetadataActive:  c.active.Load(),
		NodesVisited:    c.visited.Load(),
		NodesKnown:      int(c.known.Load()),
		Queries:         c.queries.Load(),
	}
	if c.Index != nil {
		p.DB = c.Index.Health()
		// New is counted when a batch commits, by the index handle: each
		// crawler process has its own.
		p.Found = p.DB.New
	}
	if sh := c.share.Load(); sh != 0 {
		p.Share = [2]int{int(sh >> 32), int(uint32(sh))}
	}
	if s := c.start.Load(); s != 0 {
		end := time.Now()
		if e := c.end.Load(); e != 0 {
			end = time.Unix(0, e)
		}
		p.Elapsed = end.Sub(time.Unix(0, s))
		if m := p.Elapsed.Minutes(); m > 0 {
			p.PerMinute = float64(p.Found) / m
		}
	}
	return p
}

// Run crawls until ctx ends, then waits for everything it started and
// returns nil (or the reason it could not start).
func (c *Crawler) Run(ctx context.Context) error {
	if c.Index == nil {
		return ErrNoIndex
	}
	if c.Node == nil {
		return ErrNoNode
	}
	fetch := c.Fetch
	if fetch == nil {
		fetch = MetadataFetcher(metadata.Options{Logger: c.Logger})
	}
	c.start.Store(time.Now().UnixNano())
	c.end.Store(0)
	log := c.logger()
	log.Info("crawl started", "seeds", len(c.Seeds), "rate", c.rate(), "metadata_workers", c.MetadataWorkers)

	// A walk that cannot start ends the whole Run.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := c.walk(ctx)
		if err != nil {
			cancel()
		}
		errc <- err
	}()
	if sh, ok := c.Index.(index.Sharer); ok {
		c.heartbeat(ctx, sh) // the first share before the walk starts
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(durOr(c.ShareInterval, 5*time.Second))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					c.heartbeat(ctx, sh)
				}
			}
		}()
	}
	if c.MetadataWorkers > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.metadataLoop(ctx, fetch)
		}()
	}
	if c.OnProgress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(durOr(c.ProgressInterval, 10*time.Second))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					c.OnProgress(c.Progress())
				}
			}
		}()
	}
	wg.Wait()
	err := <-errc
	if ferr := c.Index.Flush(); ferr != nil && !errors.Is(ferr, index.ErrClosed) {
		err = errors.Join(err, ferr)
	}
	c.end.Store(time.Now().UnixNano())
	p := c.Progress()
	if c.OnProgress != nil {
		c.OnProgress(p)
	}
	log.Info("crawl stopped", "found", p.Found, "nodes_visited", p.NodesVisited, "metadata", p.MetadataFetched)
	return err
}

// heartbeat tells a shared index this crawler is alive and takes its
// share of the keyspace. On error the last share is kept: walking a
// region twice is better than not walking.
func (c *Crawler) heartbeat(ctx context.Context, sh index.Sharer) {
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rank, count, err := sh.Share(hctx)
	if err != nil {
		if ctx.Err() == nil {
			c.logger().Debug("crawl: keyspace share heartbeat failed", "err", err)
		}
		return
	}
	if count > 0 && rank >= 0 && rank < count {
		if old := c.share.Swap(uint64(rank)<<32 | uint64(count)); old != uint64(rank)<<32|uint64(count) {
			c.logger().Info("crawl: keyspace share", "rank", rank, "crawlers", count)
		}
	}
}

func (c *Crawler) rate() float64 {
	if c.Rate == 0 {
		return 100
	}
	return c.Rate
}

func durOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func intOr(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// visitResult travels from a query goroutine back to the walk.
type visitResult struct {
	r     *remote
	o     outcome
	nodes []netip.AddrPort
}

// walk is the active crawl: one goroutine owns the frontier and the rate
// limiter; each query runs in its own goroutine, bounded by MaxInflight.
func (c *Crawler) walk(ctx context.Context) error {
	log := c.logger()
	f := newFrontier(frontierConfig{
		MaxNodes:    intOr(c.MaxNodes, 100_000),
		MinInterval: durOr(c.MinInterval, 10*time.Second),
		Revisit:     durOr(c.Revisit, 10*time.Minute),
		MaxInterval: 6 * time.Hour,
		FindNodeGap: 30 * time.Minute,
		BackoffBase: 30 * time.Second,
		BackoffMax:  30 * time.Minute,
		MaxFailures: 3,
	})
	seed := func() int {
		n := 0
		for _, a := range c.Seeds {
			if f.add(a) {
				n++
			}
		}
		if s, ok := c.Node.(interface{ Nodes() []netip.AddrPort }); ok {
			for _, a := range s.Nodes() {
				if f.add(a) {
					n++
				}
			}
		}
		return n
	}
	if seed() == 0 {
		return ErrNoStart
	}
	maxInflight := intOr(c.MaxInflight, 32)
	timeout := durOr(c.QueryTimeout, 10*time.Second)
	bucket := newTokenBucket(c.rate(), time.Now())
	results := make(chan visitResult, maxInflight) // never blocks a sender
	var wg sync.WaitGroup
	defer wg.Wait()
	inflight := 0
	var targets targetSeq
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastReseed := time.Now()

	for {
		wait := time.Duration(0)
		for inflight < maxInflight {
			now := time.Now()
			if w := bucket.wait(now); w > 0 {
				wait = w
				break
			}
			r, w := f.next(now)
			if r == nil {
				wait = w
				break
			}
			bucket.take()
			inflight++
			c.queries.Add(1)
			wg.Add(1)
			sh := c.share.Load()
			target := targets.next(int(sh>>32), int(uint32(sh)))
			go func() {
				defer wg.Done()
				results <- c.visit(ctx, r, target, timeout)
			}()
		}
		if inflight == 0 && wait == 0 {
			// Nothing in flight and nothing scheduled: every node is dead.
			// Start over from the seeds, but not in a tight loop.
			wait = time.Until(lastReseed.Add(30 * time.Second))
			if wait <= 0 {
				f.purgeDead()
				log.Debug("crawl: walk ran dry; re-seeding")
				seed()
				lastReseed = time.Now()
				continue
			}
		}
		if wait <= 0 {
			wait = time.Hour // woken by a result
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case res := <-results:
			inflight--
			if res.o.err == nil || res.o.unsupported {
				c.visited.Add(1)
			}
			for _, a := range res.nodes {
				f.add(a)
			}
			f.done(res.r, res.o, time.Now())
			c.known.Store(int64(f.alive()))
		case <-timer.C:
		}
	}
}

// visit queries one node. Samples are recorded here, in the query's own
// goroutine, so index commits do not stall the walk.
func (c *Crawler) visit(ctx context.Context, r *remote, target [20]byte, timeout time.Duration) visitResult {
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := visitResult{r: r}
	if r.noBEP51 {
		res.nodes, res.o.err = c.Node.FindNode(qctx, r.addr, target)
		return res
	}
	s, err := c.Node.SampleInfohashes(qctx, r.addr, target)
	if isUnsupported(err) {
		res.o.unsupported = true
		// Still widen the walk through this node.
		res.nodes, _ = c.Node.FindNode(qctx, r.addr, target)
		return res
	}
	if err != nil {
		res.o.err = err
		return res
	}
	res.nodes = s.Nodes
	if s.Infohashes == nil {
		// No samples field at all (an empty one decodes as non-nil): the
		// node answered as if to find_node. Keep using its nodes.
		res.o.unsupported = true
		return res
	}
	now := time.Now()
	for _, ih := range s.Infohashes {
		c.observe(ih, Sampled, netip.AddrPort{}, now)
	}
	res.o.interval, res.o.num, res.o.got = s.Interval, s.Num, len(s.Infohashes)
	return res
}

// isUnsupported reports a node that does not implement BEP 51.
func isUnsupported(err error) bool {
	if err == nil {
		return false
	}
	var ke krpc.Error
	if errors.As(err, &ke) {
		return ke.Code == krpc.ErrorCodeMethodUnknown
	}
	var kp *krpc.Error
	return errors.As(err, &kp) && kp != nil && kp.Code == krpc.ErrorCodeMethodUnknown
}

// targetSeq yields sample_infohashes targets spread over the keyspace: the
// top 16 bits walk the 65536 prefixes in bit-reversed order (so any run of
// 2^k consecutive targets covers 2^k evenly spaced regions), the rest is
// random. A crawler sharing an index with others (rank of count) maps the
// prefixes into its own slice of the keyspace, so the crawlers pull their
// walks into different regions instead of all sampling the same nodes.
type targetSeq struct{ i uint16 }

func (t *targetSeq) next(rank, count int) [20]byte {
	var x [20]byte
	rand.Read(x[:])
	p := uint32(bits.Reverse16(t.i))
	t.i++
	if count > 1 && rank >= 0 && rank < count {
		lo := uint32(rank) * 65536 / uint32(count)
		hi := uint32(rank+1) * 65536 / uint32(count)
		p = lo + p*(hi-lo)/65536
	}
	x[0], x[1] = byte(p>>8), byte(p)
	return x
}

// metadataLoop hands due infohashes to at most MetadataWorkers fetches.
func (c *Crawler) metadataLoop(ctx context.Context, fetch FetchFunc) {
	log := c.logger()
	workers := c.MetadataWorkers
	var wg sync.WaitGroup
	defer wg.Wait()
	inflight := make(map[[20]byte]bool) // owned by this goroutine
	// Buffered to the worker count: a worker finishing after this loop
	// returned never blocks.
	doneCh := make(chan [20]byte, workers)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var lastWarn time.Time
	lease := c.Lease
	if lease <= 0 {
		lease = 2 * durOr(c.MetadataTimeout, 60*time.Second)
	}
	for {
		if free := workers - len(inflight); free > 0 {
			// Claim leases the infohashes: a crawler sharing the index
			// skips them until we store a result or the lease ends.
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			due, err := c.Index.Claim(cctx, time.Now(), free, lease)
			cancel()
			if err != nil && !errors.Is(err, index.ErrClosed) && ctx.Err() == nil {
				// Every tick fails while the database is down: say it
				// once a minute, not twice a second.
				if now := time.Now(); now.Sub(lastWarn) > time.Minute {
					lastWarn = now
					log.Warn("crawl: claiming due metadata failed", "err", err)
				}
			}
			for _, e := range due {
				if inflight[e.InfoHash] {
					continue
				}
				inflight[e.InfoHash] = true
				c.active.Add(1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.active.Add(-1)
					c.fetchOne(ctx, fetch, e)
					doneCh <- e.InfoHash
				}()
			}
		}
		select {
		case <-ctx.Done():
			return
		case ih := <-doneCh:
			delete(inflight, ih)
		case <-tick.C:
		}
	}
}

// fetchOne fetches and stores one infohash's metadata, or records the
// failure with its next retry time.
func (c *Crawler) fetchOne(ctx context.Context, fetch FetchFunc, e index.Entry) {
	log := c.logger()
	ih := e.InfoHash
	fctx, cancel := context.WithTimeout(ctx, durOr(c.MetadataTimeout, 60*time.Second))
	defer cancel()
	peers := make(chan netip.AddrPort, 64)
	var lwg sync.WaitGroup
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		defer close(peers)
		sent := make(map[netip.AddrPort]bool)
		send := func(p netip.AddrPort) bool {
			if !p.IsValid() || sent[p] || len(sent) >= 1000 {
				return len(sent) < 1000
			}
			sent[p] = true
			select {
			case peers <- p:
				return true
			case <-fctx.Done():
				return false
			}
		}
		for _, p := range e.Peers {
			if !send(p) {
				return
			}
		}
		if err := c.Node.Lookup(fctx, ih, func(pr dht.PeerResult) bool { return send(pr.Peer) }); err != nil && fctx.Err() == nil {
			log.Debug("crawl: metadata peer lookup failed", "infohash", fmt.Sprintf("%x", ih), "err", err)
		}
	}()
	info, err := fetch(fctx, ih, peers)
	cancel()
	lwg.Wait()
	var (
		md index.Metadata
		h  metadata.Hashes
	)
	if err == nil {
		// A v2 or hybrid torrent is met under its truncated SHA-256 as often as under its
		// SHA-1: Identify says which it is, so both are accepted and recorded as one torrent.
		if h, err = metadata.Identify(info, ih, nil); err != nil {
			err = fmt.Errorf("%w: %w", ErrBadInfo, err)
		} else {
			md, err = ParseInfo(info)
		}
	}
	now := time.Now()
	if err == nil {
		if err := c.Index.SetFetched(ih, md, now); err != nil {
			log.Warn("crawl: storing metadata failed", "infohash", fmt.Sprintf("%x", ih), "err", err)
			return
		}
		if h.Hybrid() {
			// The other infohash names the same torrent: record it fetched too, so it is
			// never fetched again (nor counted as another torrent with metadata missing).
			other := h.V1
			if other == ih {
				other = h.TruncatedV2()
			}
			if err := c.Index.SetFetched(other, md, now); err != nil {
				log.Warn("crawl: storing metadata failed", "infohash", fmt.Sprintf("%x", other), "err", err)
			}
		}
		c.fetched.Add(1)
		log.Debug("crawl: metadata fetched", "infohash", fmt.Sprintf("%x", ih), "name", md.Name, "size", md.Size)
		return
	}
	if ctx.Err() != nil {
		return // shutting down: not the torrent's fault
	}
	c.failed.Add(1)
	attempts := e.Attempts + 1
	next := now.Add(c.retryDelay(attempts))
	log.Debug("crawl: metadata fetch failed", "infohash", fmt.Sprintf("%x", ih), "attempts", attempts, "retry_at", next, "err", err)
	if err := c.Index.SetFailed(ih, attempts, next, now); err != nil && !errors.Is(err, index.ErrClosed) {
		log.Warn("crawl: recording a metadata failure failed", "infohash", fmt.Sprintf("%x", ih), "err", err)
	}
}

// retryDelay is RetryBase doubled per earlier failure, capped at RetryMax.
func (c *Crawler) retryDelay(attempts int) time.Duration {
	base, ceiling := durOr(c.RetryBase, 10*time.Minute), durOr(c.RetryMax, 24*time.Hour)
	d := base
	for i := 1; i < attempts && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}
