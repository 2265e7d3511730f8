package pgindex

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/magnetget/magnetget/crawl/index"
)

var _ index.Pruner = (*Index)(nil)

// maxPruneBatches and maxPruneTime bound one scheduled run (the writer
// commits nothing meanwhile); the next run goes on.
const (
	maxPruneBatches = 100
	maxPruneTime    = 2 * time.Second
)

// pruneSQL deletes one batch of the peers announced longest ago, if before
// the cutoff. The range scan on peers_seen reads only what it deletes (plus
// rows other transactions hold, which SKIP LOCKED steps over rather than
// waiting: a writer refreshing a peer keeps it).
const pruneSQL = `
WITH old AS (
	SELECT infohash, addr FROM peers WHERE seen < $1 ORDER BY seen LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM peers p USING old WHERE p.infohash = old.infohash AND p.addr = old.addr`

// PrunePeers deletes one batch (PruneBatch peers at most) of peers not
// announced within PeerRetention and returns how many it deleted.
func (x *Index) PrunePeers(ctx context.Context) (int, error) {
	x.mu.Lock()
	closed := x.closed
	x.mu.Unlock()
	if closed {
		return 0, index.ErrClosed
	}
	cutoff, ok := x.peerCutoff()
	if !ok {
		return 0, nil
	}
	tag, err := x.pool.Exec(ctx, pruneSQL, cutoff, x.opts.PruneBatch)
	if err != nil {
		return 0, fmt.Errorf("crawl index %s: prune peers: %w", x.where, err)
	}
	n := int(tag.RowsAffected())
	x.mu.Lock()
	x.health.PeersPruned += int64(n)
	x.mu.Unlock()
	return n, nil
}

// prune runs batches until one comes back short or maxPruneBatches ran.
func (x *Index) prune() {
	total := 0
	began := time.Now()
	for range maxPruneBatches {
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		n, err := x.PrunePeers(ctx)
		cancel()
		total += n
		if err != nil {
			if !errors.Is(err, index.ErrClosed) {
				x.log.Warn("crawl index: pruning expired peers failed; will retry", "err", err)
			}
			break
		}
		if n < x.opts.PruneBatch || time.Since(began) > maxPruneTime {
			break
		}
	}
	if total > 0 {
		x.log.Debug("crawl index: pruned expired peers", "peers", total)
	}
}
