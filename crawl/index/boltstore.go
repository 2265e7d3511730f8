package index

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

var _ Store = (*Index)(nil)

// Claim leases up to limit due infohashes for lease. The bbolt file has
// one process at a time (its file lock), so the leases live in memory:
// they keep two of this process's metadata workers off one infohash. One
// process is one machine with one clock, so due times and leases stay on
// it (the now passed in); the PostgreSQL store, shared by crawlers on many
// machines, keeps them on the database's clock instead.
func (x *Index) Claim(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	x.mu.Lock()
	held := len(x.leases)
	x.mu.Unlock()
	// Ask for enough to skip the ones leased already.
	due, err := x.Due(now, limit+held)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.leases == nil {
		x.leases = make(map[[20]byte]time.Time)
	}
	out := due[:0]
	for _, e := range due {
		if len(out) == limit {
			break
		}
		if end, ok := x.leases[e.InfoHash]; ok && end.After(now) {
			continue
		}
		x.leases[e.InfoHash] = now.Add(lease)
		out = append(out, e)
	}
	for ih, end := range x.leases {
		if !end.After(now) {
			delete(x.leases, ih)
		}
	}
	return out, nil
}

// Search scans every record with metadata for those whose name or file
// paths contain every word of query (case-insensitive), most seen first.
// It returns ErrSearchScan along with the results so the caller can say
// that this is the slow way.
func (x *Index) Search(ctx context.Context, query string, limit int) ([]Entry, error) {
	words := Words(query)
	if len(words) == 0 || limit <= 0 {
		return nil, ErrSearchScan
	}
	var out []Entry
	n := 0
	err := x.ForEach(func(e Entry) bool {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return false
		}
		if e.Meta != MetaFetched || !matchesAll(&e, words) {
			return true
		}
		// Keep the best limit by sightings: a bounded insertion.
		i, _ := slices.BinarySearchFunc(out, e.Seen, func(a Entry, seen int64) int {
			switch {
			case a.Seen > seen:
				return -1
			case a.Seen < seen:
				return 1
			}
			return 0
		})
		if i < limit {
			out = slices.Insert(out, i, e)
			if len(out) > limit {
				out = out[:limit]
			}
		}
		return true
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("crawl search: %w", err)
	}
	return out, ErrSearchScan
}

func matchesAll(e *Entry, words []string) bool {
	var b strings.Builder
	b.WriteString(strings.ToLower(e.Name))
	for _, f := range e.Files {
		for _, c := range f.Path {
			b.WriteByte(' ')
			b.WriteString(strings.ToLower(c))
		}
		if b.Len() > 1<<20 {
			break
		}
	}
	text := b.String()
	for _, w := range words {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

// Health reports commits and what is pending.
func (x *Index) Health() Health {
	x.mu.Lock()
	defer x.mu.Unlock()
	h := x.health
	h.Pending = len(x.pending) + len(x.flushing)
	return h
}

// String is the file's path.
func (x *Index) String() string { return x.Path() }
