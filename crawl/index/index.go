// Package index is the crawler's on-disk record of infohashes: when each was
// first and last seen, how it was seen (a BEP 51 sample, a get_peers query
// we answered, an announce_peer we received), the peers learned from
// announces, and the state of its metadata (BEP 9) fetch: none yet, fetched
// (name, total size, file list) or failed (attempts and the time of the
// next retry).
//
// The index is a bbolt file. Writes are batched: Observe and the Set
// methods only touch an in-memory delta map, which is committed in one
// transaction every BatchSize items or FlushInterval, whichever comes
// first. Reads (Get, Due, Stats, exports) see the pending deltas too, or
// flush first.
//
// Layout (schema "magnetget-crawl-index/3"; /1 and /2 files are upgraded
// in place on open: /2 added a sightings count to records, /3 each peer's
// announce time and the peerexp bucket; older records stay readable, their
// peers dated by the record's last sighting):
//
//	meta/schema   the schema string
//	meta/stats    running counters (see Stats), updated in every commit
//	ih/<20 bytes> one record per infohash (record.go)
//	due/<8-byte big-endian unix ms><20 bytes>  infohashes whose metadata
//	              is not fetched yet, ordered by when they are next due
//	peerexp/<8-byte big-endian unix ms><20 bytes>  infohashes with peers,
//	              ordered by their oldest peer's announce time (peers.go)
package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/magnetget/magnetget/internal/boltsafe"
)

// Schema is the value of meta/schema in an index this package writes.
const Schema = "magnetget-crawl-index/3"

// schemaVersion is the number at the end of Schema: a file with a higher
// one was written by a newer magnetget and is refused (ErrNewerSchema).
const schemaVersion = 3

const schemaPrefix = "magnetget-crawl-index/"

var (
	// ErrLocked: another process holds the index file open for longer
	// than Options.LockTimeout.
	ErrLocked = errors.New("crawl index is locked by another process")
	// ErrCorrupt: the file was not a usable index. It has been renamed
	// aside (the error text names the new path) and Open returned a fresh,
	// usable index along with this error.
	ErrCorrupt = errors.New("crawl index is corrupt or foreign")
	// ErrNewerSchema: the file was written by a newer magnetget. It is left
	// alone.
	ErrNewerSchema = errors.New("crawl index has a newer schema")
	// ErrClosed: the index was closed.
	ErrClosed = errors.New("crawl index is closed")
)

var (
	bucketMeta = []byte("meta")
	bucketIH   = []byte("ih")
	bucketDue  = []byte("due")
	keySchema  = []byte("schema")
	keyStats   = []byte("stats")
)

// How records the ways an infohash was seen, as a bit set.
type How uint8

const (
	Sampled  How = 1 << iota // in a BEP 51 sample_infohashes reply
	GetPeers                 // in a get_peers query some node sent us
	Announce                 // in an announce_peer query some node sent us
)

// String lists the set bits, "sampled|announce"; "" for none.
func (h How) String() string {
	var parts []string
	for _, x := range []struct {
		bit  How
		name string
	}{{Sampled, "sampled"}, {GetPeers, "get_peers"}, {Announce, "announce"}} {
		if h&x.bit != 0 {
			parts = append(parts, x.name)
		}
	}
	return strings.Join(parts, "|")
}

// MetaStatus is the state of an infohash's metadata fetch.
type MetaStatus uint8

const (
	MetaNone    MetaStatus = iota // never tried
	MetaFetched                   // name, size and files are known
	MetaFailed                    // tried Attempts times; retry at NextRetry
)

func (s MetaStatus) String() string {
	switch s {
	case MetaNone:
		return "none"
	case MetaFetched:
		return "fetched"
	case MetaFailed:
		return "failed"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// File is one file of a torrent: its path components and length.
type File struct {
	Path   []string
	Length int64
}

// Metadata is what the index keeps of a fetched info dictionary.
type Metadata struct {
	Name  string
	Size  int64 // total of all file lengths
	Files []File
}

// Entry is everything known about one infohash.
type Entry struct {
	InfoHash  [20]byte
	FirstSeen time.Time
	LastSeen  time.Time
	How       How
	Seen      int64            // sightings recorded (repeats included)
	Peers     []netip.AddrPort // from announces, most recent last, capped, none expired
	Meta      MetaStatus
	Attempts  int       // failed metadata fetches so far
	NextRetry time.Time // when the metadata is next due (status none or failed)
	Metadata            // when Meta == MetaFetched

	peerMs []int64 // the bbolt index's announce time of each peer (unix ms)
}

// Options tunes an index. The zero value works.
type Options struct {
	BatchSize     int              // pending items that trigger a commit; 0 = 1000
	FlushInterval time.Duration    // longest a pending item waits; 0 = 250ms
	LockTimeout   time.Duration    // wait for the file lock; 0 = 1s
	MaxPeers      int              // announced peers kept per infohash; 0 = 32, at most 255
	PeerRetention time.Duration    // peers not announced for this long are dropped; 0 = 7 days, < 0 = never
	PruneInterval time.Duration    // how often expired peers are pruned; 0 = 1 minute
	PruneBatch    int              // records per pruning transaction; 0 = 1000
	Now           func() time.Time // the clock peer retention is measured on; nil = time.Now
	NoSync        bool             // skip fsync on commit (benchmarks, throwaway indexes)
	Logger        *slog.Logger
}

// Index is an open crawl index. Its methods are safe for concurrent use.
type Index struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	flushMu sync.Mutex // serialises commits; held across one Update

	mu       sync.Mutex // guards the fields below
	pending  map[[20]byte]*delta
	flushing map[[20]byte]*delta // the batch being committed, until it is
	closed   bool
	leases   map[[20]byte]time.Time // Claim's leases: infohash -> lease end
	health   Health

	damaged atomic.Bool // a read faulted: the file is moved aside at Close

	stop chan struct{}
	done chan struct{}
}

// guarded runs a bbolt transaction under guard. A fault or panic marks the
// index damaged: Close then moves the file aside.
func (x *Index) guarded(fn func() error) error {
	err := guard(fn)
	if errors.Is(err, ErrCorrupt) {
		x.damaged.Store(true)
		x.log.Error("crawl index is damaged; it will be moved aside when closed", "path", x.db.Path(), "err", err)
		return fmt.Errorf("crawl index %s: %w; it is moved aside when magnetget closes it", x.db.Path(), err)
	}
	return err
}

// delta is an uncommitted change to one infohash's record. Applying a delta
// twice gives the same record as applying it once (Get relies on this while
// a batch is between commit and bookkeeping).
type delta struct {
	how         How
	count       int64 // sightings
	first, last time.Time
	peers       peerList
	meta        *metaUpdate
}

type metaUpdate struct {
	at        time.Time // when; first/last seen of an infohash known only from this
	status    MetaStatus
	attempts  int
	nextRetry time.Time
	md        Metadata
}

// Open opens or creates the index at path. A file that is corrupt or not
// an index is renamed aside and a fresh index created: Open then returns
// the usable index AND an error wrapping ErrCorrupt that names where the
// old file went, so callers can warn and go on.
func Open(path string, o Options) (*Index, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 250 * time.Millisecond
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.MaxPeers <= 0 {
		o.MaxPeers = 32
	}
	o.MaxPeers = min(o.MaxPeers, maxStoredPeers)
	if o.PeerRetention == 0 {
		o.PeerRetention = DefaultPeerRetention
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = DefaultPruneInterval
	}
	if o.PruneBatch <= 0 {
		o.PruneBatch = DefaultPruneBatch
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, cause := openChecked(path, o)
	var warn error
	if cause != nil {
		if errors.Is(cause, ErrLocked) || errors.Is(cause, ErrNewerSchema) || errors.Is(cause, fs.ErrPermission) || errors.Is(cause, fs.ErrNotExist) {
			return nil, cause
		}
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
			// Only a regular file is ours to move aside.
			return nil, cause
		}
		aside, err := moveAside(path)
		if err != nil {
			return nil, fmt.Errorf("crawl index %s: %w (and moving it aside failed: %w)", path, cause, err)
		}
		warn = fmt.Errorf("%w: %s moved aside to %s: %w", ErrCorrupt, path, aside, cause)
		log.Warn("crawl index was unusable; started a fresh one", "path", path, "moved_to", aside, "err", cause)
		if db, err = openChecked(path, o); err != nil {
			return nil, fmt.Errorf("crawl index %s: fresh file: %w", path, err)
		}
	}
	x := &Index{
		db:      db,
		opts:    o,
		log:     log,
		pending: make(map[[20]byte]*delta),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go x.flusher()
	return x, warn
}

// openChecked opens the bbolt file and checks (or writes) the schema. Any
// error other than ErrLocked, ErrNewerSchema or a file-system error means
// the file is unusable.
func openChecked(path string, o Options) (db *bolt.DB, err error) {
	// boltsafe checks the file before bbolt maps it and guards the open.
	db, err = boltsafe.Open(path, &bolt.Options{Timeout: o.LockTimeout, NoSync: o.NoSync})
	if errors.Is(err, boltsafe.ErrLocked) || errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("crawl index %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open crawl index %s: %w", path, err)
	}
	// bbolt panics (or faults) on some damaged pages; that means the file
	// is unusable, not that the program should stop.
	err = guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				foreign := false
				_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
					foreign = true
					return nil
				})
				if foreign {
					return errors.New("a bbolt file of some other kind")
				}
				return initSchema(tx)
			}
			s := string(meta.Get(keySchema))
			if s == schemaPrefix+"1" || s == schemaPrefix+"2" {
				// Migration 1 -> 2: records gain a sightings count. 2 -> 3:
				// peers gain announce times and the peerexp bucket indexes
				// them. Older records stay readable; the pruner gives them
				// their peerexp entries in batches (keyPeerSweep), so
				// opening a large file stays quick.
				if tx.Bucket(bucketIH) == nil || tx.Bucket(bucketDue) == nil {
					return errors.New("buckets missing")
				}
				if _, err := tx.CreateBucketIfNotExists(bucketPeerExp); err != nil {
					return err
				}
				if err := meta.Put(keyPeerSweep, []byte{'s'}); err != nil {
					return err
				}
				return meta.Put(keySchema, []byte(Schema))
			}
			if s == Schema {
				if tx.Bucket(bucketIH) == nil || tx.Bucket(bucketDue) == nil || tx.Bucket(bucketPeerExp) == nil {
					return errors.New("buckets missing")
				}
				return nil
			}
			if v, ok := strings.CutPrefix(s, schemaPrefix); ok {
				if n, err := strconv.Atoi(v); err == nil && n > schemaVersion {
					return fmt.Errorf("crawl index %s: %w: it has schema version %d, this magnetget knows up to %d; upgrade magnetget", path, ErrNewerSchema, n, schemaVersion)
				}
			}
			return fmt.Errorf("unknown schema %q", s)
		})
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func initSchema(tx *bolt.Tx) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := meta.Put(keySchema, []byte(Schema)); err != nil {
		return err
	}
	for _, b := range [][]byte{bucketIH, bucketDue, bucketPeerExp} {
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	return nil
}

// moveAside renames path aside (boltsafe.MoveAside: path.corrupt-<UTC
// time>, never deleted) and returns the new name.
func moveAside(path string) (string, error) { return boltsafe.MoveAside(path) }

// flusher commits pending deltas every FlushInterval and prunes expired
// peers every PruneInterval.
func (x *Index) flusher() {
	defer close(x.done)
	t := time.NewTicker(x.opts.FlushInterval)
	defer t.Stop()
	pt := time.NewTicker(x.opts.PruneInterval)
	defer pt.Stop()
	for {
		select {
		case <-x.stop:
			return
		case <-pt.C:
			x.prune()
		case <-t.C:
			if err := x.Flush(); err != nil && !errors.Is(err, ErrClosed) {
				x.log.Warn("crawl index commit failed; will retry", "err", err)
			}
		}
	}
}

// Observe records that ih was seen now in the way how; peer, when valid, is
// an announced peer to keep. Infohashes new to the index are counted in
// Health().New when committed. It commits inline (so the caller waits) when
// a batch is full: that is the back-pressure that keeps memory bounded.
func (x *Index) Observe(ih [20]byte, how How, peer netip.AddrPort, at time.Time) error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return ErrClosed
	}
	d := x.pending[ih]
	if d == nil {
		d = &delta{}
		x.pending[ih] = d
	}
	d.how |= how
	d.count++
	if d.first.IsZero() || at.Before(d.first) {
		d.first = at
	}
	if at.After(d.last) {
		d.last = at
	}
	if peer.IsValid() {
		d.peers.add(peer, unixMilli(at), x.opts.MaxPeers)
	}
	full := len(x.pending) >= x.opts.BatchSize
	x.mu.Unlock()
	if full {
		return x.Flush()
	}
	return nil
}

// SetFetched stores ih's metadata. Fetched metadata is final: later
// SetFailed calls for ih are ignored.
func (x *Index) SetFetched(ih [20]byte, md Metadata, at time.Time) error {
	return x.setMeta(ih, &metaUpdate{status: MetaFetched, md: md}, at)
}

// SetFailed records a failed metadata fetch: attempts so far and when to
// try again.
func (x *Index) SetFailed(ih [20]byte, attempts int, next time.Time, at time.Time) error {
	return x.setMeta(ih, &metaUpdate{status: MetaFailed, attempts: attempts, nextRetry: next}, at)
}

func (x *Index) setMeta(ih [20]byte, m *metaUpdate, at time.Time) error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return ErrClosed
	}
	m.at = at
	d := x.pending[ih]
	if d == nil {
		d = &delta{}
		x.pending[ih] = d
	}
	if d.meta == nil || d.meta.status != MetaFetched {
		d.meta = m
	}
	delete(x.leases, ih)
	full := len(x.pending) >= x.opts.BatchSize
	x.mu.Unlock()
	if full {
		return x.Flush()
	}
	return nil
}

// apply merges d into e (a zero Entry for a new infohash).
func (d *delta) apply(e *Entry, maxPeers int) {
	e.How |= d.how
	e.Seen += d.count
	if !d.first.IsZero() && (e.FirstSeen.IsZero() || d.first.Before(e.FirstSeen)) {
		e.FirstSeen = d.first
	}
	if d.last.After(e.LastSeen) {
		e.LastSeen = d.last
	}
	if len(d.peers.addrs) > 0 {
		l := e.peers().clone()
		for i, p := range d.peers.addrs {
			l.add(p, d.peers.ms[i], maxPeers)
		}
		e.setPeers(l)
	}
	if m := d.meta; m != nil && e.FirstSeen.IsZero() {
		// A metadata update is not a sighting; it only dates a record
		// nothing else dated.
		e.FirstSeen, e.LastSeen = m.at, m.at
	}
	if e.Meta == MetaNone && e.NextRetry.IsZero() {
		// Metadata of a new infohash is due at once.
		e.NextRetry = e.FirstSeen
	}
	if m := d.meta; m != nil && e.Meta != MetaFetched {
		e.Meta = m.status
		switch m.status {
		case MetaFetched:
			e.Metadata = m.md
			e.NextRetry = time.Time{}
		case MetaFailed:
			e.Attempts = m.attempts
			e.NextRetry = m.nextRetry
		}
	}
}

// Flush commits all pending changes now.
func (x *Index) Flush() error {
	x.flushMu.Lock()
	defer x.flushMu.Unlock()
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return ErrClosed
	}
	return x.flushLocked()
}

// flushLocked commits the pending map. It is called with flushMu and mu
// held and releases mu.
func (x *Index) flushLocked() error {
	batch := x.pending
	if len(batch) == 0 {
		x.mu.Unlock()
		return nil
	}
	x.pending = make(map[[20]byte]*delta, len(batch))
	x.flushing = batch
	x.mu.Unlock()

	keys := make([][20]byte, 0, len(batch))
	for k := range batch {
		keys = append(keys, k)
	}
	// Sorted keys touch each B-tree page once per commit.
	slices.SortFunc(keys, func(a, b [20]byte) int { return bytes.Compare(a[:], b[:]) })
	var added, seen int64
	cutoff := x.peerCutoff()
	began := time.Now()
	err := x.guarded(func() error {
		return x.db.Update(func(tx *bolt.Tx) error {
			ihb, due, meta, exp := tx.Bucket(bucketIH), tx.Bucket(bucketDue), tx.Bucket(bucketMeta), tx.Bucket(bucketPeerExp)
			st := decodeStats(meta.Get(keyStats))
			arena := make([]byte, 0, 64*len(keys))
			for _, ih := range keys {
				var old Entry
				exists := false
				if v := ihb.Get(ih[:]); v != nil {
					e, err := decodeRecord(ih, v)
					if err != nil {
						x.log.Warn("crawl index: replacing an unreadable record", "infohash", fmt.Sprintf("%x", ih), "err", err)
						st.Infohashes-- // it was counted when written
					} else {
						old, exists = e, true
					}
				}
				e := old
				e.InfoHash = ih
				batch[ih].apply(&e, x.opts.MaxPeers)
				if l := e.peers(); len(l.addrs) > 0 && l.ms[0] < cutoff {
					l = l.clone()
					l.dropBefore(cutoff)
					e.setPeers(l)
				}
				if !exists && batch[ih].count > 0 {
					added++
				}
				seen += batch[ih].count
				st.account(&old, exists, -1)
				st.account(&e, true, +1)
				// bbolt keeps the value slice until the commit: never reuse
				// it. Appending to one arena keeps earlier values intact
				// (a grown arena is a new array).
				start := len(arena)
				arena = encodeRecord(arena, &e)
				if err := ihb.Put(ih[:], arena[start:len(arena):len(arena)]); err != nil {
					return err
				}
				if exists && old.Meta != MetaFetched {
					if err := due.Delete(dueKey(old.NextRetry, ih)); err != nil {
						return err
					}
				}
				if e.Meta != MetaFetched {
					if err := due.Put(dueKey(e.NextRetry, ih), nil); err != nil {
						return err
					}
				}
				var was *Entry
				if exists {
					was = &old
				}
				if err := indexPeers(exp, was, &e); err != nil {
					return err
				}
			}
			return meta.Put(keyStats, st.encode())
		})
	})
	x.mu.Lock()
	x.flushing = nil
	if err == nil {
		x.health.New += added
		x.health.Sightings += seen
		x.health.Commits++
		x.health.WriteLatency = time.Since(began)
		x.health.Retrying, x.health.LastError = false, ""
	} else {
		x.health.Retrying, x.health.LastError = true, err.Error()
	}
	if err != nil {
		// Keep the changes: put them back under newer ones.
		for ih, d := range batch {
			if nd, ok := x.pending[ih]; ok {
				d.how |= nd.how
				d.count += nd.count
				if !nd.first.IsZero() && (d.first.IsZero() || nd.first.Before(d.first)) {
					d.first = nd.first
				}
				if nd.last.After(d.last) {
					d.last = nd.last
				}
				for i, p := range nd.peers.addrs {
					d.peers.add(p, nd.peers.ms[i], x.opts.MaxPeers)
				}
				if nd.meta != nil && (d.meta == nil || d.meta.status != MetaFetched) {
					d.meta = nd.meta
				}
			}
			x.pending[ih] = d
		}
	}
	x.mu.Unlock()
	if err != nil {
		return fmt.Errorf("crawl index commit: %w", err)
	}
	return nil
}

func dueKey(t time.Time, ih [20]byte) []byte {
	k := make([]byte, 8, 28)
	ms := unixMilli(t)
	binary.BigEndian.PutUint64(k, uint64(max(ms, 0)))
	return append(k, ih[:]...)
}

// Get returns what is known about ih, including uncommitted changes.
func (x *Index) Get(ih [20]byte) (Entry, bool, error) {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return Entry{}, false, ErrClosed
	}
	pd, fd := x.pending[ih], x.flushing[ih]
	var e Entry
	found := false
	err := x.guarded(func() error {
		return x.db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketIH).Get(ih[:])
			if v == nil {
				return nil
			}
			var err error
			e, err = decodeRecord(ih, v)
			found = err == nil
			return err
		})
	})
	// Apply deltas under mu: they are only mutated under mu.
	for _, d := range []*delta{fd, pd} {
		if d != nil {
			if !found {
				e = Entry{InfoHash: ih}
			}
			d.apply(&e, x.opts.MaxPeers)
			found = true
		}
	}
	x.mu.Unlock()
	x.visible(&e)
	if err != nil && !found {
		return Entry{}, false, fmt.Errorf("crawl index get %x: %w", ih, err)
	}
	return e, found, nil
}

// Due returns up to limit entries whose metadata is not fetched and whose
// NextRetry is at or before now, earliest first. It commits pending changes
// first so a just-recorded failure is not handed out again.
func (x *Index) Due(now time.Time, limit int) ([]Entry, error) {
	if err := x.Flush(); err != nil {
		return nil, err
	}
	var out []Entry
	end := dueKey(now, [20]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	err := x.guarded(func() error {
		return x.db.View(func(tx *bolt.Tx) error {
			ihb := tx.Bucket(bucketIH)
			c := tx.Bucket(bucketDue).Cursor()
			for k, _ := c.First(); k != nil && len(out) < limit && bytes.Compare(k, end) <= 0; k, _ = c.Next() {
				_, e, ok := recordAtKey(ihb, k)
				if !ok || e.Meta == MetaFetched {
					continue
				}
				x.visible(&e)
				out = append(out, e)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("crawl index due: %w", err)
	}
	return out, nil
}

// ForEach calls fn for every committed entry in infohash order, after
// committing pending changes. fn must not call the index. A false return
// stops the walk.
func (x *Index) ForEach(fn func(Entry) bool) error {
	if err := x.Flush(); err != nil {
		return err
	}
	err := x.guarded(func() error {
		return x.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketIH).ForEach(func(k, v []byte) error {
				if len(k) != 20 {
					return nil
				}
				e, err := decodeRecord([20]byte(k), v)
				if err != nil {
					x.log.Warn("crawl index: skipping an unreadable record", "infohash", fmt.Sprintf("%x", k), "err", err)
					return nil
				}
				x.visible(&e)
				if !fn(e) {
					return errStop
				}
				return nil
			})
		})
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("crawl index walk: %w", err)
	}
	return nil
}

var errStop = errors.New("stop")

// Path returns the index file's path.
func (x *Index) Path() string { return x.db.Path() }

// Close commits pending changes and closes the file.
func (x *Index) Close() error {
	x.flushMu.Lock()
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		x.flushMu.Unlock()
		return ErrClosed
	}
	err := x.flushLocked()
	x.mu.Lock()
	x.closed = true
	x.mu.Unlock()
	x.flushMu.Unlock()
	close(x.stop)
	<-x.done
	path := x.db.Path()
	err = errors.Join(err, x.db.Close())
	if x.damaged.Load() {
		aside, merr := moveAside(path)
		if merr != nil {
			return errors.Join(err, fmt.Errorf("%w: %s: moving it aside failed: %w", ErrCorrupt, path, merr))
		}
		x.log.Warn("crawl index was damaged; moved aside", "path", path, "moved_to", aside)
		return errors.Join(err, fmt.Errorf("%w: %s moved aside to %s", ErrCorrupt, path, aside))
	}
	return err
}

// recordAtKey reads the record a time-ordered index key (8 bytes of time, then the infohash: the
// due and peer-expiry buckets) points at; ok is false for a malformed key, a record gone since, or
// one that does not decode.
func recordAtKey(ihb *bolt.Bucket, k []byte) (ih [20]byte, e Entry, ok bool) {
	if len(k) != 28 {
		return ih, e, false
	}
	ih = [20]byte(k[8:])
	v := ihb.Get(ih[:])
	if v == nil {
		return ih, e, false
	}
	e, err := decodeRecord(ih, v)
	return ih, e, err == nil
}
