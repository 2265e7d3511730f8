package index

import (
	"context"
	"encoding/hex"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Store is a crawl index: the bbolt file of this package (*Index) or the
// shared PostgreSQL database of crawl/index/pgindex. Both keep the same
// records and behave the same to a crawler; they differ in where the data
// lives and in how many crawlers may share it.
//
// Writes (Observe, SetFetched, SetFailed) may be buffered: they are
// committed in batches, and Flush commits what is pending. Get sees this
// handle's buffered writes merged with what is committed (a just-seen
// infohash is found, and counted once); Search, ForEach and Stats commit
// the buffer first.
//
// Announced peers are bounded: at most the store's MaxPeers most recent
// per infohash, and none announced longer ago than its PeerRetention
// (measured on its Now clock). Reads never return expired peers; storage
// is pruned in bounded batches on a schedule (Pruner).
type Store interface {
	// Observe records a sighting of ih (how) at at; peer, when valid, is a
	// peer that announced it. It may block briefly for back-pressure.
	Observe(ih [20]byte, how How, peer netip.AddrPort, at time.Time) error
	// SetFetched stores ih's metadata and releases its lease. Fetched
	// metadata is final.
	SetFetched(ih [20]byte, md Metadata, at time.Time) error
	// SetFailed records a failed fetch (attempts so far, next retry) and
	// releases its lease.
	SetFailed(ih [20]byte, attempts int, next, at time.Time) error
	// Claim leases up to limit infohashes whose metadata is due at now,
	// earliest first, for lease: until SetFetched, SetFailed or the lease's
	// end, no other Claim (by any crawler sharing the store) returns them.
	// Leases run on the store's clock: now for the bbolt file (one
	// process), the database's clock for PostgreSQL, so crawlers whose
	// clocks disagree cannot take or keep each other's leases.
	Claim(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]Entry, error)
	// Get returns what is known about ih, buffered writes included.
	Get(ih [20]byte) (Entry, bool, error)
	// ForEach calls fn for every entry in infohash order after committing
	// pending writes; fn returning false stops the walk. It streams: memory
	// stays flat however large the index.
	ForEach(fn func(Entry) bool) error
	// Search returns up to limit entries with metadata whose name or file
	// paths match every word of query, most seen first.
	Search(ctx context.Context, query string, limit int) ([]Entry, error)
	// Stats summarises the index.
	Stats() (Stats, error)
	// Flush commits pending writes now.
	Flush() error
	// Health reports the write side: counters since the store was opened.
	Health() Health
	// String names the store for messages: a path, or a URL without its
	// password.
	String() string
	// Close commits what it can and releases everything.
	Close() error
}

// Health is the write side of a Store, for progress lines and the status
// endpoint.
type Health struct {
	New          int64         // infohashes this handle recorded first (new to the index)
	Sightings    int64         // sightings committed by this handle
	Pending      int           // sightings buffered, not committed yet (distinct infohashes)
	Dropped      int64         // sightings dropped because the buffer was full (oldest first)
	Commits      int64         // batches committed
	WriteLatency time.Duration // duration of the last committed batch
	Retrying     bool          // the last commit failed; retrying with back-off
	LastError    string        // the last commit error, while Retrying
	PeersPruned  int64         // expired announced peers this handle's pruning removed (retention)
}

// Sharer is implemented by a Store shared by several crawlers: Share
// registers the caller as a live crawler (a heartbeat; call it every few
// seconds) and returns its rank among the live crawlers and their count,
// so each crawler walks its own part of the keyspace. A crawler that stops
// heart-beating drops out and the others' shares grow to cover its part.
type Sharer interface {
	Share(ctx context.Context) (rank, count int, err error)
}

// ErrSearchScan is returned with results by a Store that searches by a full
// scan (the bbolt index): callers tell the user it is slower.
var ErrSearchScan = errors.New("searched by a full scan of the index (a PostgreSQL index has a full-text index and is much faster)")

// Words splits a search query into lower-case words.
func Words(q string) []string {
	return strings.FieldsFunc(strings.ToLower(q), func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r > 127)
	})
}

// Magnet is a magnet link for e (infohash and, when known, name).
func (e *Entry) Magnet() string {
	s := "magnet:?xt=urn:btih:" + hex.EncodeToString(e.InfoHash[:])
	if e.Meta == MetaFetched && e.Name != "" {
		s += "&dn=" + url.QueryEscape(e.Name)
	}
	return s
}

// IsURL reports whether a --db value names a PostgreSQL database rather
// than a bbolt file.
func IsURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}
