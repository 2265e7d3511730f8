// Package pgindex is the crawl index (index.Store) in PostgreSQL, shared by
// any number of crawler processes on any number of machines.
//
//   - Sightings are buffered in memory and written in batches: COPY into a
//     temporary staging table, then one INSERT ... ON CONFLICT DO UPDATE in
//     infohash order (a fixed lock order, so concurrent crawlers never
//     deadlock). Two crawlers that see one infohash record it once, their
//     sightings merged (how OR-ed, first/last widened, counts summed).
//   - While the database is unreachable the buffer keeps what was seen and
//     the writer retries with back-off (Health().Retrying). Past MaxBuffer
//     distinct infohashes the oldest sightings are dropped and counted
//     (Health().Dropped).
//   - Get sees what is still buffered (merged with the row), so a
//     just-seen infohash is found at once; Search commits the buffer first.
//   - Metadata fetching is a shared work queue: Claim leases due rows with
//     FOR UPDATE SKIP LOCKED and a lease deadline on the database's clock
//     (now()), so crawlers whose clocks disagree can neither steal nor keep
//     leases; a crawler that dies leaves leases that simply expire.
//     Attempts and the next retry live in the row, so back-off is shared,
//     and every due time in the row is on the database's clock too: each
//     crawler measures how far its clock is from the database's (clockSkew)
//     and translates the times it writes, asks with and reads, so crawlers
//     whose clocks disagree agree on when a torrent is due.
//   - Announced peers are bounded: each batch keeps the MaxPeers most
//     recent per infohash it touched, and a pruner deletes peers not
//     announced for PeerRetention every PruneInterval, PruneBatch rows per
//     transaction, walking the index on peers.seen (SKIP LOCKED: it never
//     waits for a writer).
//   - Share registers a crawler with a heartbeat in the crawlers table; a
//     crawler's share of the keyspace is its rank among the live ones.
//   - Search is full-text (a tsvector of the name and file-path words with
//     a GIN index); ForEach streams through a server-side cursor.
//
// The schema is versioned (schema.go); migrations run on Open and a binary
// refuses a database newer than it knows. An index added to an existing
// table is built concurrently in the background (writes go on meanwhile).
package pgindex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/magnetget/magnetget/crawl/index"
)

// Options tunes an index. The zero value works.
type Options struct {
	BatchSize     int              // distinct infohashes per commit; 0 = 5000
	FlushInterval time.Duration    // longest a sighting waits in the buffer when the database is up; 0 = 250ms
	MaxBuffer     int              // distinct infohashes buffered while the database is unreachable; 0 = 1,000,000
	MaxPeers      int              // announced peers kept per infohash (the most recent); 0 = 32
	PeerRetention time.Duration    // peers not announced for this long are deleted; 0 = 7 days, < 0 = never
	PruneInterval time.Duration    // how often expired peers are pruned; 0 = 1 minute
	PruneBatch    int              // peers deleted per pruning transaction; 0 = 1000
	Now           func() time.Time // this crawler's clock (the one it passes to Claim and SetFailed, and peer retention's); nil = time.Now
	CrawlerTTL    time.Duration    // a crawler without a heartbeat for this long has left; 0 = 30s
	RetryMax      time.Duration    // longest back-off between write retries; 0 = 5s
	ID            string           // this crawler's id in the crawlers table; "" = host-pid-random
	Logger        *slog.Logger
}

// Index is an open PostgreSQL crawl index. Its methods are safe for
// concurrent use.
type Index struct {
	pool  *pgxpool.Pool
	where string // the URL without its password
	opts  Options
	log   *slog.Logger

	flushMu sync.Mutex // serialises batch writes

	mu      sync.Mutex // guards the fields below
	pending map[[20]byte]*sighting
	order   [][20]byte // pending's keys, oldest first (for dropping)
	metaQ   []metaUpdate
	// The batch being written, for Get: an infohash in it is neither
	// surely in the database nor in the buffer until the write ends
	// (flyDone closed). flyGen counts batches taken.
	flying     map[[20]byte]bool
	flyDone    chan struct{}
	flyGen     uint64
	health     index.Health
	closed     bool
	registered bool

	skewMu    sync.Mutex    // guards the fields below
	skew      time.Duration // our clock (opts.Now) minus the database's
	skewAt    time.Time     // when skew was last measured (monotonic)
	skewKnown bool

	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	// The background build of the indexes migrate left (schema.go):
	// ready is set once the schema is at SchemaVersion; Close cancels and
	// waits for the build.
	ready       atomic.Bool
	buildCancel context.CancelFunc
	buildDone   chan struct{}
}

// Due times on the database's clock. A crawler's due times (first sightings,
// the retry times of failed fetches, the now of Claim) are on its own clock,
// and two crawlers' clocks may disagree by minutes: compared in one column,
// a crawler whose clock runs ahead would retry a failed torrent early and one
// running behind would wait for a torrent the other just saw. So next_retry
// holds database time: each handle measures its clock's offset from the
// database's (skew), subtracts it from the times it writes and from Claim's
// now, and adds it back to the times it reads, so Entry.NextRetry is on the
// reader's clock. The offset is re-measured at most once a skewRecheck, and
// kept unless it moved by more than skewSlack: a stable offset reads back
// exactly what was written, and measurement noise (half a round trip) is
// far below back-off times.
const (
	skewRecheck = time.Minute
	skewSlack   = time.Second
)

// clockSkew returns our clock minus the database's, measuring it when it is
// unknown or due for a recheck. A failed recheck keeps the last value.
func (x *Index) clockSkew(ctx context.Context) (time.Duration, error) {
	x.skewMu.Lock()
	skew, known, fresh := x.skew, x.skewKnown, time.Since(x.skewAt) < skewRecheck
	x.skewMu.Unlock()
	if known && fresh {
		return skew, nil
	}
	var db time.Time
	before := x.opts.Now()
	err := x.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&db)
	after := x.opts.Now()
	if err != nil {
		if known {
			return skew, nil
		}
		return 0, fmt.Errorf("reading the database's clock: %w", err)
	}
	m := (before.Add(after.Sub(before) / 2)).Sub(db).Round(time.Millisecond)
	x.skewMu.Lock()
	defer x.skewMu.Unlock()
	if !x.skewKnown || (m-x.skew).Abs() > skewSlack {
		x.skew, x.skewKnown = m, true
	}
	x.skewAt = time.Now()
	return x.skew, nil
}

// localTimes moves the due times of entries read from the database to our
// clock.
func localTimes(es []index.Entry, skew time.Duration) {
	for i := range es {
		if !es[i].NextRetry.IsZero() {
			es[i].NextRetry = es[i].NextRetry.Add(skew)
		}
	}
}

var _ index.Store = (*Index)(nil)
var _ index.Sharer = (*Index)(nil)

// sighting is what the buffer holds for one infohash.
type sighting struct {
	how         index.How
	first, last time.Time
	n           int64
	peers       map[netip.AddrPort]time.Time
}

// metaUpdate is a buffered SetFetched or SetFailed.
type metaUpdate struct {
	ih       [20]byte
	at       time.Time
	fetched  bool
	md       index.Metadata
	attempts int
	next     time.Time
}

// Open connects to the database at url (postgres://...), applies schema
// migrations and starts the background writer.
func Open(ctx context.Context, dbURL string, o Options) (*Index, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 250 * time.Millisecond
	}
	if o.MaxBuffer <= 0 {
		o.MaxBuffer = 1_000_000
	}
	if o.MaxPeers <= 0 {
		o.MaxPeers = 32
	}
	if o.CrawlerTTL <= 0 {
		o.CrawlerTTL = 30 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Second
	}
	if o.PeerRetention == 0 {
		o.PeerRetention = index.DefaultPeerRetention
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = index.DefaultPruneInterval
	}
	if o.PruneBatch <= 0 {
		o.PruneBatch = index.DefaultPruneBatch
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		var r [4]byte
		rand.Read(r[:])
		o.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	where := redact(dbURL)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("crawl index %s: %w", where, err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "magnetget crawl"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("crawl index %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("crawl index %s: %w", where, err)
	}
	reached, err := migrate(ctx, pool, where)
	if err != nil {
		pool.Close()
		if errors.Is(err, index.ErrNewerSchema) {
			return nil, err
		}
		return nil, fmt.Errorf("crawl index %s: schema: %w", where, err)
	}
	x := &Index{
		pool:    pool,
		where:   where,
		opts:    o,
		log:     log,
		pending: make(map[[20]byte]*sighting),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),

		buildCancel: func() {},
		buildDone:   make(chan struct{}),
	}
	if _, err := x.clockSkew(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("crawl index %s: %w", where, err)
	}
	if reached == SchemaVersion {
		x.ready.Store(true)
		close(x.buildDone)
	} else {
		bctx, cancel := context.WithCancel(context.Background())
		x.buildCancel = cancel
		go x.finishMigrations(bctx)
	}
	go x.writer()
	return x, nil
}

// redact hides the password of a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

// String is the database URL without its password.
func (x *Index) String() string { return x.where }

// Observe buffers a sighting. It never waits for the database: while the
// database is unreachable the buffer grows up to MaxBuffer infohashes,
// then the oldest are dropped and counted.
func (x *Index) Observe(ih [20]byte, how index.How, peer netip.AddrPort, at time.Time) error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return index.ErrClosed
	}
	s := x.pending[ih]
	if s == nil {
		s = &sighting{}
		x.pending[ih] = s
		x.order = append(x.order, ih)
	}
	s.merge(how, at, at, 1)
	if peer.IsValid() {
		s.addPeer(netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()), at, x.opts.MaxPeers)
	}
	x.dropOverLocked()
	full := len(x.pending) >= x.opts.BatchSize
	x.mu.Unlock()
	if full {
		select {
		case x.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *sighting) merge(how index.How, first, last time.Time, n int64) {
	s.how |= how
	if s.first.IsZero() || first.Before(s.first) {
		s.first = first
	}
	if last.After(s.last) {
		s.last = last
	}
	s.n += n
}

func (s *sighting) addPeer(p netip.AddrPort, at time.Time, limit int) {
	if s.peers == nil {
		s.peers = make(map[netip.AddrPort]time.Time)
	}
	if old, ok := s.peers[p]; !ok || at.After(old) {
		s.peers[p] = at
	}
	if len(s.peers) > limit {
		// Forget the peer announced longest ago.
		var oldest netip.AddrPort
		var ot time.Time
		for q, t := range s.peers {
			if ot.IsZero() || t.Before(ot) {
				oldest, ot = q, t
			}
		}
		delete(s.peers, oldest)
	}
}

// dropOverLocked drops the oldest buffered sightings beyond MaxBuffer.
func (x *Index) dropOverLocked() {
	for len(x.pending) > x.opts.MaxBuffer && len(x.order) > 0 {
		ih := x.order[0]
		x.order = x.order[1:]
		if s, ok := x.pending[ih]; ok {
			x.health.Dropped += s.n
			delete(x.pending, ih)
		}
	}
	// Re-slicing from the front leaks the array's head; copy now and then.
	if cap(x.order) > 4*len(x.order)+1024 {
		x.order = slices.Clone(x.order)
	}
}

// SetFetched queues ih's metadata for the next batch.
func (x *Index) SetFetched(ih [20]byte, md index.Metadata, at time.Time) error {
	return x.queueMeta(metaUpdate{ih: ih, at: at, fetched: true, md: md})
}

// SetFailed queues a failed fetch for the next batch.
func (x *Index) SetFailed(ih [20]byte, attempts int, next, at time.Time) error {
	return x.queueMeta(metaUpdate{ih: ih, at: at, attempts: attempts, next: next})
}

func (x *Index) queueMeta(m metaUpdate) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return index.ErrClosed
	}
	x.metaQ = append(x.metaQ, m)
	return nil
}

// Health reports the write side.
func (x *Index) Health() index.Health {
	x.mu.Lock()
	defer x.mu.Unlock()
	h := x.health
	h.Pending = len(x.pending)
	return h
}

// writeTimeout bounds one background write, so a database that stops
// answering (rather than refusing) is retried like one that is down.
const writeTimeout = time.Minute

// writer commits the buffer every FlushInterval (or when a batch is full),
// retrying with back-off while the database is unreachable, and prunes
// expired peers every PruneInterval.
func (x *Index) writer() {
	defer close(x.done)
	t := time.NewTicker(x.opts.FlushInterval)
	defer t.Stop()
	pt := time.NewTicker(x.opts.PruneInterval)
	defer pt.Stop()
	backoff := time.Duration(0)
	for {
		wait := t.C
		var retry <-chan time.Time
		if backoff > 0 {
			retry = time.After(backoff)
			wait = nil
		}
		select {
		case <-x.stop:
			return
		case <-pt.C:
			// Not before peers_seen is built: without it each batch
			// would sort the whole peers table.
			if backoff == 0 && x.ready.Load() {
				x.prune()
			}
			continue
		case <-wait:
		case <-retry:
		case <-x.wake:
			if backoff > 0 {
				continue // keep backing off
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := x.flushAll(ctx)
		cancel()
		if err != nil {
			backoff = min(max(2*backoff, 250*time.Millisecond), x.opts.RetryMax)
			x.log.Warn("crawl index: write failed; buffering and retrying", "err", err, "retry_in", backoff, "pending", x.Health().Pending)
			continue
		}
		backoff = 0
	}
}

// Flush commits everything buffered now.
func (x *Index) Flush() error {
	x.mu.Lock()
	closed := x.closed
	x.mu.Unlock()
	if closed {
		return index.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return x.flushAll(ctx)
}

// flushAll writes batches until the buffer is empty or a write fails.
func (x *Index) flushAll(ctx context.Context) error {
	x.flushMu.Lock()
	defer x.flushMu.Unlock()
	for {
		more, err := x.flushBatch(ctx)
		if err != nil || !more {
			return err
		}
	}
}

type stagedRow struct {
	ih [20]byte
	s  *sighting
}

// flushBatch writes up to BatchSize of the oldest buffered infohashes and
// all queued metadata in one transaction. On failure everything goes back
// into the buffer. It reports whether more is buffered.
func (x *Index) flushBatch(ctx context.Context) (more bool, err error) {
	x.mu.Lock()
	n := min(len(x.order), x.opts.BatchSize)
	batch := make([]stagedRow, 0, n)
	taken := 0
	for _, ih := range x.order {
		if len(batch) == n {
			break
		}
		taken++
		if s, ok := x.pending[ih]; ok {
			batch = append(batch, stagedRow{ih, s})
			delete(x.pending, ih)
		}
	}
	x.order = x.order[taken:]
	metas := x.metaQ
	x.metaQ = nil
	if len(batch) == 0 && len(metas) == 0 {
		x.mu.Unlock()
		return false, nil
	}
	x.flying = make(map[[20]byte]bool, len(batch)+len(metas))
	for _, r := range batch {
		x.flying[r.ih] = true
	}
	for _, m := range metas {
		x.flying[m.ih] = true
	}
	x.flyDone = make(chan struct{})
	x.flyGen++
	x.mu.Unlock()
	began := time.Now()
	added, err := x.write(ctx, batch, metas)
	x.mu.Lock()
	defer x.mu.Unlock()
	// Requeued or committed, under mu: Get sees one or the other.
	defer func() {
		close(x.flyDone)
		x.flying, x.flyDone = nil, nil
	}()
	if err != nil {
		x.requeueLocked(batch, metas)
		x.health.Retrying, x.health.LastError = true, err.Error()
		return false, fmt.Errorf("crawl index %s: write: %w", x.where, err)
	}
	var seen int64
	for _, r := range batch {
		seen += r.s.n
	}
	x.health.New += added
	x.health.Sightings += seen
	x.health.Commits++
	x.health.WriteLatency = time.Since(began)
	x.health.Retrying, x.health.LastError = false, ""
	return len(x.pending) > 0 || len(x.metaQ) > 0, nil
}

// requeueLocked puts a failed batch back at the front of the buffer,
// merged with what arrived meanwhile, and applies the bound.
func (x *Index) requeueLocked(batch []stagedRow, metas []metaUpdate) {
	order := make([][20]byte, 0, len(batch)+len(x.order))
	for _, r := range batch {
		if nd, ok := x.pending[r.ih]; ok {
			r.s.merge(nd.how, nd.first, nd.last, nd.n)
			for p, t := range nd.peers {
				r.s.addPeer(p, t, x.opts.MaxPeers)
			}
		}
		x.pending[r.ih] = r.s
		order = append(order, r.ih)
	}
	inBatch := make(map[[20]byte]bool, len(batch))
	for _, r := range batch {
		inBatch[r.ih] = true
	}
	for _, ih := range x.order {
		if !inBatch[ih] {
			order = append(order, ih)
		}
	}
	x.order = order
	x.metaQ = append(metas, x.metaQ...)
	x.dropOverLocked()
}

const upsertSQL = `
WITH up AS (
	INSERT INTO torrents AS t (infohash, how, first_seen, last_seen, sightings, next_retry)
	SELECT infohash, how, first_seen, last_seen, n, first_seen - $1::interval FROM crawl_stage ORDER BY infohash
	ON CONFLICT (infohash) DO UPDATE SET
		how = t.how | EXCLUDED.how,
		first_seen = LEAST(t.first_seen, EXCLUDED.first_seen),
		last_seen = GREATEST(t.last_seen, EXCLUDED.last_seen),
		sightings = t.sightings + EXCLUDED.sightings
	RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) FROM up`

const peersSQL = `
INSERT INTO peers AS p (infohash, addr, seen)
SELECT infohash, addr, seen FROM crawl_stage_peers ORDER BY infohash, addr
ON CONFLICT (infohash, addr) DO UPDATE SET seen = GREATEST(p.seen, EXCLUDED.seen)`

const capPeersSQL = `
DELETE FROM peers p USING (
	SELECT r.infohash, r.addr FROM (
		SELECT q.infohash, q.addr, row_number() OVER (PARTITION BY q.infohash ORDER BY q.seen DESC, q.addr) AS rn
		FROM peers q WHERE q.infohash IN (SELECT DISTINCT infohash FROM crawl_stage_peers)
	) r WHERE r.rn > $1
) d WHERE p.infohash = d.infohash AND p.addr = d.addr`

const fetchedSQL = `
INSERT INTO torrents AS t (infohash, first_seen, last_seen, meta, name, size, nfiles, files, search)
VALUES ($1, $2, $2, 1, $3, $4, $5, $6, to_tsvector('simple', $7))
ON CONFLICT (infohash) DO UPDATE SET
	meta = 1, name = EXCLUDED.name, size = EXCLUDED.size, nfiles = EXCLUDED.nfiles,
	files = EXCLUDED.files, search = EXCLUDED.search,
	next_retry = NULL, lease_until = NULL, lease_owner = NULL
WHERE t.meta <> 1`

const failedSQL = `
INSERT INTO torrents AS t (infohash, first_seen, last_seen, meta, attempts, next_retry)
VALUES ($1, $2, $2, 2, $3, $4)
ON CONFLICT (infohash) DO UPDATE SET
	meta = 2, attempts = EXCLUDED.attempts, next_retry = EXCLUDED.next_retry,
	lease_until = NULL, lease_owner = NULL
WHERE t.meta <> 1`

// write runs one batch transaction and returns how many infohashes were
// new to the database.
func (x *Index) write(ctx context.Context, batch []stagedRow, metas []metaUpdate) (int64, error) {
	var added int64
	skew, err := x.clockSkew(ctx)
	if err != nil {
		return 0, err
	}
	err = pgx.BeginFunc(ctx, x.pool, func(tx pgx.Tx) error {
		if len(batch) > 0 {
			if _, err := tx.Exec(ctx, `
CREATE TEMP TABLE IF NOT EXISTS crawl_stage (infohash bytea, how smallint, first_seen timestamptz, last_seen timestamptz, n bigint) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS crawl_stage_peers (infohash bytea, addr text, seen timestamptz) ON COMMIT DELETE ROWS`); err != nil {
				return err
			}
			// Rows already staged by an earlier failed use of this
			// connection would be merged twice.
			if _, err := tx.Exec(ctx, "TRUNCATE crawl_stage, crawl_stage_peers"); err != nil {
				return err
			}
			rows := make([][]any, len(batch))
			var prows [][]any
			for i, r := range batch {
				rows[i] = []any{r.ih[:], int16(r.s.how), r.s.first, r.s.last, r.s.n}
				for p, t := range r.s.peers {
					prows = append(prows, []any{r.ih[:], p.String(), t})
				}
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"crawl_stage"}, []string{"infohash", "how", "first_seen", "last_seen", "n"}, pgx.CopyFromRows(rows)); err != nil {
				return err
			}
			// A new torrent is due at its first sighting, on the database's clock.
			if err := tx.QueryRow(ctx, upsertSQL, skew).Scan(&added); err != nil {
				return err
			}
			if len(prows) > 0 {
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"crawl_stage_peers"}, []string{"infohash", "addr", "seen"}, pgx.CopyFromRows(prows)); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, peersSQL); err != nil {
					return err
				}
				// The cap holds in the table, not only in the buffer: the
				// infohashes of this batch keep their most recent peers.
				// Their torrents rows are locked already (upsert above, in
				// infohash order), so concurrent writers never interleave
				// on one infohash's peers.
				if _, err := tx.Exec(ctx, capPeersSQL, x.opts.MaxPeers); err != nil {
					return err
				}
			}
		}
		if len(metas) > 0 {
			// Fetched metadata wins over a failure queued in the same
			// batch, whatever the order.
			var b pgx.Batch
			for _, m := range metas {
				if m.fetched {
					files, err := json.Marshal(jsonFiles(m.md.Files))
					if err != nil {
						return err
					}
					b.Queue(fetchedSQL, m.ih[:], m.at, m.md.Name, m.md.Size, len(m.md.Files), files, searchText(m.md))
				} else {
					b.Queue(failedSQL, m.ih[:], m.at, m.attempts, m.next.Add(-skew))
				}
			}
			if err := tx.SendBatch(ctx, &b).Close(); err != nil {
				return err
			}
		}
		return nil
	})
	return added, err
}

type jsonFile struct {
	Path   []string `json:"path"`
	Length int64    `json:"length"`
}

func jsonFiles(fs []index.File) []jsonFile {
	out := make([]jsonFile, len(fs))
	for i, f := range fs {
		out[i] = jsonFile{Path: f.Path, Length: f.Length}
	}
	return out
}

// maxSearchText bounds the words indexed per torrent (a tsvector holds at
// most 1 MB; a 100,000-file torrent would pass that).
const maxSearchText = 64 << 10

// searchText is the distinct words of the name and file paths, split the
// way queries are (index.Words), so "ubuntu-24.04" is found by "ubuntu".
func searchText(md index.Metadata) string {
	seen := make(map[string]bool)
	var b strings.Builder
	add := func(s string) bool {
		for _, w := range index.Words(s) {
			if seen[w] || len(w) > 200 {
				continue
			}
			if b.Len()+len(w)+1 > maxSearchText {
				return false
			}
			seen[w] = true
			b.WriteString(w)
			b.WriteByte(' ')
		}
		return true
	}
	if !add(md.Name) {
		return b.String()
	}
	for _, f := range md.Files {
		for _, c := range f.Path {
			if !add(c) {
				return b.String()
			}
		}
	}
	return b.String()
}

// selectCols are the torrents columns scanEntry reads, peers last: "addr
// unix-microseconds", most recent first, none announced before the cutoff
// parameter (expired peers the pruner has not reached yet). The cutoff is
// a parameter, not text, so the statement text stays the same and pgx's
// statement cache keeps it prepared.
const selectCols = `t.infohash, t.how, t.first_seen, t.last_seen, t.sightings, t.meta, t.attempts, t.next_retry,
	COALESCE(t.name, ''), COALESCE(t.size, 0), t.files,
	ARRAY(SELECT p.addr || ' ' || (extract(epoch FROM p.seen) * 1000000)::bigint FROM peers p
		WHERE p.infohash = t.infohash AND p.seen >= $%d ORDER BY p.seen DESC, p.addr LIMIT %d)`

// cols is selectCols with the cutoff as parameter $param; cutoff is its
// value.
func (x *Index) cols(param int) string {
	return fmt.Sprintf(selectCols, param, x.opts.MaxPeers)
}

// cutoff is the value of cols' parameter: the retention cutoff, or the
// zero time (year 1) when peers never expire.
func (x *Index) cutoff() time.Time {
	c, _ := x.peerCutoff()
	return c
}

// peerCutoff is when peers announced earlier have expired; ok is false
// when they never do.
func (x *Index) peerCutoff() (time.Time, bool) {
	if x.opts.PeerRetention < 0 {
		return time.Time{}, false
	}
	return x.opts.Now().Add(-x.opts.PeerRetention), true
}

func scanEntry(row pgx.Row) (index.Entry, error) {
	e, _, err := scanEntryTimes(row)
	return e, err
}

// scanEntryTimes also returns each peer's announce time.
func scanEntryTimes(row pgx.Row) (index.Entry, []time.Time, error) {
	var (
		e         index.Entry
		ih        []byte
		how, meta int16
		attempts  int32
		next      *time.Time
		files     []byte
		peers     []string
	)
	if err := row.Scan(&ih, &how, &e.FirstSeen, &e.LastSeen, &e.Seen, &meta, &attempts, &next, &e.Name, &e.Size, &files, &peers); err != nil {
		return e, nil, err
	}
	if len(ih) != 20 {
		return e, nil, fmt.Errorf("infohash of %d bytes", len(ih))
	}
	e.InfoHash = [20]byte(ih)
	e.How, e.Meta, e.Attempts = index.How(how), index.MetaStatus(meta), int(attempts)
	e.FirstSeen, e.LastSeen = e.FirstSeen.UTC(), e.LastSeen.UTC()
	if next != nil && e.Meta != index.MetaFetched {
		e.NextRetry = next.UTC()
	}
	if e.Meta != index.MetaFetched {
		e.Name, e.Size = "", 0
	} else if len(files) > 0 {
		var jf []jsonFile
		if err := json.Unmarshal(files, &jf); err != nil {
			return e, nil, fmt.Errorf("files of %x: %w", ih, err)
		}
		e.Files = make([]index.File, len(jf))
		for i, f := range jf {
			e.Files[i] = index.File{Path: f.Path, Length: f.Length}
		}
	}
	// Most recent last, as the bbolt index keeps them.
	var times []time.Time
	for i := len(peers) - 1; i >= 0; i-- {
		a, us, _ := strings.Cut(peers[i], " ")
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			continue
		}
		n, _ := strconv.ParseInt(us, 10, 64)
		e.Peers = append(e.Peers, ap)
		times = append(times, time.UnixMicro(n).UTC())
	}
	return e, times, nil
}

func (x *Index) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// Get returns what is known about ih: the database's row merged with what
// this handle still buffers (sightings and metadata not committed yet), so
// an infohash just seen is found at once and counted once.
func (x *Index) Get(ih [20]byte) (index.Entry, bool, error) {
	ctx, cancel := x.ctx()
	defer cancel()
	for attempt := 0; ; attempt++ {
		x.mu.Lock()
		if x.closed {
			x.mu.Unlock()
			return index.Entry{}, false, index.ErrClosed
		}
		if x.flying[ih] {
			// Being written: wait for the write to commit or requeue it.
			done := x.flyDone
			x.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return index.Entry{}, false, fmt.Errorf("crawl index get %x: waiting for a write: %w", ih, ctx.Err())
			}
		}
		gen := x.flyGen
		var buf *sighting
		if s := x.pending[ih]; s != nil {
			c := *s
			c.peers = maps.Clone(s.peers)
			buf = &c
		}
		var metas []metaUpdate
		for _, m := range x.metaQ {
			if m.ih == ih {
				metas = append(metas, m)
			}
		}
		x.mu.Unlock()
		skew, err := x.clockSkew(ctx)
		if err != nil {
			return index.Entry{}, false, fmt.Errorf("crawl index get %x: %w", ih, err)
		}
		e, times, err := scanEntryTimes(x.pool.QueryRow(ctx, "SELECT "+x.cols(2)+" FROM torrents t WHERE t.infohash = $1", ih[:], x.cutoff()))
		found := err == nil
		if found && !e.NextRetry.IsZero() {
			e.NextRetry = e.NextRetry.Add(skew)
		}
		if errors.Is(err, pgx.ErrNoRows) {
			err = nil
		}
		x.mu.Lock()
		moved := x.flyGen != gen // a batch taken meanwhile may be in the row too
		x.mu.Unlock()
		if moved && attempt < 5 {
			continue
		}
		if err != nil {
			return index.Entry{}, false, fmt.Errorf("crawl index get %x: %w", ih, err)
		}
		if !found {
			e = index.Entry{InfoHash: ih}
		}
		found = x.merge(&e, times, found, buf, metas)
		if !found {
			return index.Entry{}, false, nil
		}
		return e, true, nil
	}
}

// merge applies what the buffer holds for e's infohash as the batch write
// would, and reports whether e now exists.
func (x *Index) merge(e *index.Entry, times []time.Time, found bool, s *sighting, metas []metaUpdate) bool {
	if s != nil {
		if !found {
			e.FirstSeen, e.LastSeen, e.NextRetry = s.first, s.last, s.first
			found = true
		}
		e.How |= s.how
		e.Seen += s.n
		if s.first.Before(e.FirstSeen) {
			e.FirstSeen = s.first
		}
		if s.last.After(e.LastSeen) {
			e.LastSeen = s.last
		}
		if len(s.peers) > 0 {
			all := make(map[netip.AddrPort]time.Time, len(e.Peers)+len(s.peers))
			for i, p := range e.Peers {
				all[p] = times[i]
			}
			for p, t := range s.peers {
				if old, ok := all[p]; !ok || t.After(old) {
					all[p] = t
				}
			}
			cutoff, expire := x.peerCutoff()
			e.Peers = e.Peers[:0]
			for p, t := range all {
				if !expire || !t.Before(cutoff) {
					e.Peers = append(e.Peers, p)
				}
			}
			// Most recent last, the MaxPeers most recent.
			slices.SortFunc(e.Peers, func(a, b netip.AddrPort) int {
				if c := all[a].Compare(all[b]); c != 0 {
					return c
				}
				return -strings.Compare(a.String(), b.String())
			})
			if n := len(e.Peers) - x.opts.MaxPeers; n > 0 {
				e.Peers = e.Peers[n:]
			}
			if len(e.Peers) == 0 {
				e.Peers = nil
			}
		}
	}
	for _, m := range metas {
		if !found {
			e.FirstSeen, e.LastSeen = m.at, m.at
			found = true
		}
		if e.Meta == index.MetaFetched {
			continue
		}
		if m.fetched {
			e.Meta, e.Metadata, e.NextRetry, e.Attempts = index.MetaFetched, m.md, time.Time{}, 0
		} else {
			e.Meta, e.Attempts, e.NextRetry = index.MetaFailed, m.attempts, m.next
		}
	}
	return found
}

// Claim leases due infohashes: rows locked by another crawler's Claim are
// skipped (SKIP LOCKED), and a row whose lease has not ended is not due.
// Everything is judged on the database's clock, one clock for every
// crawler: now (our clock) is moved to it like the retry times in the rows
// (see clockSkew), and leases start and end on now(). A crawler whose clock
// runs ahead can neither retry a torrent early, take a lease early nor hold
// its own longer, and one whose clock runs behind neither waits longer nor
// shortens its leases to nothing.
func (x *Index) Claim(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]index.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	q := `
WITH due AS (
	SELECT infohash FROM torrents
	WHERE meta <> 1 AND next_retry <= $1 AND (lease_until IS NULL OR lease_until <= now())
	ORDER BY next_retry
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE torrents t SET lease_until = now() + make_interval(secs => $3), lease_owner = $4
FROM due WHERE t.infohash = due.infohash
RETURNING ` + x.cols(5)
	skew, err := x.clockSkew(ctx)
	if err != nil {
		return nil, fmt.Errorf("crawl index claim: %w", err)
	}
	rows, err := x.pool.Query(ctx, q, now.Add(-skew), limit, lease.Seconds(), x.opts.ID, x.cutoff())
	if err != nil {
		return nil, fmt.Errorf("crawl index claim: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index.Entry, error) { return scanEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("crawl index claim: %w", err)
	}
	localTimes(out, skew)
	slices.SortFunc(out, func(a, b index.Entry) int { return a.NextRetry.Compare(b.NextRetry) })
	return out, nil
}

// ForEach streams every entry in infohash order through a server-side
// cursor, 1000 rows at a time: memory stays flat for any size.
func (x *Index) ForEach(fn func(index.Entry) bool) error {
	if err := x.Flush(); err != nil {
		return err
	}
	ctx := context.Background()
	skew, err := x.clockSkew(ctx)
	if err != nil {
		return fmt.Errorf("crawl index walk: %w", err)
	}
	err = pgx.BeginTxFunc(ctx, x.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DECLARE crawl_export NO SCROLL CURSOR FOR SELECT "+x.cols(1)+" FROM torrents t ORDER BY t.infohash", x.cutoff()); err != nil {
			return err
		}
		for {
			rows, err := tx.Query(ctx, "FETCH FORWARD 1000 FROM crawl_export")
			if err != nil {
				return err
			}
			n := 0
			stop := false
			for rows.Next() {
				n++
				e, err := scanEntry(rows)
				if err != nil {
					rows.Close()
					return err
				}
				if !e.NextRetry.IsZero() {
					e.NextRetry = e.NextRetry.Add(skew)
				}
				if !fn(e) {
					stop = true
					break
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if stop || n == 0 {
				return nil
			}
		}
	})
	if err != nil {
		return fmt.Errorf("crawl index walk: %w", err)
	}
	return nil
}

// Search is full-text over the words of names and file paths (GIN index),
// every word required, most seen first.
func (x *Index) Search(ctx context.Context, query string, limit int) ([]index.Entry, error) {
	words := index.Words(query)
	if len(words) == 0 || limit <= 0 {
		return nil, nil
	}
	// Commit what is buffered so metadata fetched a moment ago is found.
	// If that fails the database is likely down and the query says so.
	_ = x.flushAll(ctx)
	skew, err := x.clockSkew(ctx)
	if err != nil {
		return nil, fmt.Errorf("crawl search: %w", err)
	}
	rows, err := x.pool.Query(ctx, "SELECT "+x.cols(3)+` FROM torrents t
WHERE t.search @@ plainto_tsquery('simple', $1) AND t.meta = 1
ORDER BY t.sightings DESC, t.infohash LIMIT $2`, strings.Join(words, " "), limit, x.cutoff())
	if err != nil {
		return nil, fmt.Errorf("crawl search: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index.Entry, error) { return scanEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("crawl search: %w", err)
	}
	localTimes(out, skew)
	return out, nil
}

// Stats counts over the whole table.
func (x *Index) Stats() (index.Stats, error) {
	if err := x.Flush(); err != nil {
		return index.Stats{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var s index.Stats
	var first, last *time.Time
	err := x.pool.QueryRow(ctx, `
SELECT count(*), count(*) FILTER (WHERE meta = 1), count(*) FILTER (WHERE meta = 2),
	count(*) FILTER (WHERE how & 1 <> 0), count(*) FILTER (WHERE how & 2 <> 0), count(*) FILTER (WHERE how & 4 <> 0),
	COALESCE(sum(sightings), 0)::bigint, min(first_seen), max(last_seen)
FROM torrents`).Scan(&s.Infohashes, &s.WithMetadata, &s.Failed, &s.Sampled, &s.GetPeers, &s.Announced, &s.Sightings, &first, &last)
	if err != nil {
		return s, fmt.Errorf("crawl index stats: %w", err)
	}
	if first != nil {
		s.FirstSeen = first.UTC()
	}
	if last != nil {
		s.LastSeen = last.UTC()
	}
	return s, nil
}

// Share heart-beats this crawler and returns its rank among the live
// crawlers (ordered by id) and their count.
func (x *Index) Share(ctx context.Context) (rank, count int, err error) {
	host, _ := os.Hostname()
	err = pgx.BeginFunc(ctx, x.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO crawlers (id, host) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET heartbeat = now()`, x.opts.ID, host); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM crawlers WHERE heartbeat < now() - interval '1 day'`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id FROM crawlers WHERE heartbeat > now() - make_interval(secs => $1) ORDER BY id`, x.opts.CrawlerTTL.Seconds())
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		rank, count = slices.Index(ids, x.opts.ID), len(ids)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("crawl index share: %w", err)
	}
	x.mu.Lock()
	x.registered = true
	x.mu.Unlock()
	if rank < 0 {
		return 0, 0, errors.New("crawl index share: own heartbeat not visible")
	}
	return rank, count, nil
}

// Close stops the writer, commits what it can within 10 s (what it cannot
// is counted as dropped), hands back this crawler's leases and leaves the
// crawlers table, so the others re-balance at once.
func (x *Index) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return index.ErrClosed
	}
	x.closed = true
	registered := x.registered
	x.mu.Unlock()
	close(x.stop)
	<-x.done
	// An index build cut short leaves an invalid index; the next crawler
	// to open the database rebuilds it.
	x.buildCancel()
	<-x.buildDone
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := x.flushAll(ctx)
	if err != nil {
		x.mu.Lock()
		lost := int64(0)
		for _, s := range x.pending {
			lost += s.n
		}
		x.health.Dropped += lost
		x.mu.Unlock()
		err = fmt.Errorf("crawl index %s: %d sightings not written at close: %w", x.where, lost, err)
	}
	if _, lerr := x.pool.Exec(ctx, `UPDATE torrents SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = $1 AND meta <> 1`, x.opts.ID); lerr != nil && err == nil {
		err = fmt.Errorf("crawl index %s: releasing leases: %w", x.where, lerr)
	}
	if registered {
		x.pool.Exec(ctx, `DELETE FROM crawlers WHERE id = $1`, x.opts.ID)
	}
	x.pool.Close()
	return err
}
