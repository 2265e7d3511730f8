package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Peer lists are bounded two ways: at most MaxPeers per infohash (the most
// recently announced), and none announced longer ago than PeerRetention.
// The cap holds on every write. Retention is enforced on every write of a
// record, hidden from reads at once, and applied to records nobody writes
// by a pruner that runs every PruneInterval in batches of PruneBatch
// records, each batch its own short transaction. The pruner finds its work
// through the peerexp bucket, an index of records by their oldest peer's
// announce time, so a batch reads only records that have something to
// drop.
const (
	DefaultPeerRetention = 7 * 24 * time.Hour
	DefaultPruneInterval = time.Minute
	DefaultPruneBatch    = 1000
	// maxPruneBatches and maxPruneTime bound one scheduled run (it holds
	// up commits); the next run goes on.
	maxPruneBatches = 100
	maxPruneTime    = 2 * time.Second
)

var (
	bucketPeerExp = []byte("peerexp") // <8-byte ms of the oldest peer><20-byte infohash>
	// keyPeerSweep is present while records written before schema /3 still
	// need their peerexp entries: 's' then the last infohash swept.
	keyPeerSweep = []byte("peersweep")
)

// Pruner is implemented by stores that expire announced peers:
// PrunePeers removes one bounded batch of peers not announced within the
// store's retention period and reports how many it removed (0 from a
// store with nothing expired). Stores also do this on their own schedule; the method is
// for tests and maintenance tools.
type Pruner interface {
	PrunePeers(ctx context.Context) (removed int, err error)
}

var _ Pruner = (*Index)(nil)

// peerList is a peer list with each peer's last announce time (unix ms),
// oldest first.
type peerList struct {
	addrs []netip.AddrPort
	ms    []int64
}

// add records p announced at ms, keeping the list ordered by time and at
// most limit long (the oldest go first: recently announced peers are the
// likeliest to be up).
func (l *peerList) add(p netip.AddrPort, ms int64, limit int) {
	p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
	if i := slices.Index(l.addrs, p); i >= 0 {
		ms = max(ms, l.ms[i])
		l.addrs = slices.Delete(l.addrs, i, i+1)
		l.ms = slices.Delete(l.ms, i, i+1)
	}
	i := len(l.ms)
	for i > 0 && l.ms[i-1] > ms {
		i--
	}
	l.addrs = slices.Insert(l.addrs, i, p)
	l.ms = slices.Insert(l.ms, i, ms)
	if n := len(l.addrs) - limit; n > 0 {
		l.addrs = slices.Delete(l.addrs, 0, n)
		l.ms = slices.Delete(l.ms, 0, n)
	}
}

// dropBefore removes the peers last announced before cutoff (unix ms) and
// returns how many it removed.
func (l *peerList) dropBefore(cutoff int64) int {
	n := 0
	for n < len(l.ms) && l.ms[n] < cutoff {
		n++
	}
	if n > 0 {
		l.addrs = slices.Delete(l.addrs, 0, n)
		l.ms = slices.Delete(l.ms, 0, n)
	}
	return n
}

func (l peerList) clone() peerList {
	return peerList{slices.Clone(l.addrs), slices.Clone(l.ms)}
}

// peers is e's peer list; entries decoded from a record carry the times.
func (e *Entry) peers() peerList {
	if len(e.peerMs) != len(e.Peers) {
		// Not from a record: date the peers by the last sighting.
		ms := make([]int64, len(e.Peers))
		for i := range ms {
			ms[i] = unixMilli(e.LastSeen)
		}
		return peerList{e.Peers, ms}
	}
	return peerList{e.Peers, e.peerMs}
}

func (e *Entry) setPeers(l peerList) {
	e.Peers, e.peerMs = l.addrs, l.ms
	if len(e.Peers) == 0 {
		e.Peers, e.peerMs = nil, nil
	}
}

// oldestPeer is the announce time of e's oldest peer; ok is false without
// peers.
func (e *Entry) oldestPeer() (ms int64, ok bool) {
	if len(e.peerMs) == 0 || len(e.peerMs) != len(e.Peers) {
		return 0, false
	}
	return slices.Min(e.peerMs), true
}

func peerExpKey(ms int64, ih [20]byte) []byte {
	k := make([]byte, 8, 28)
	binary.BigEndian.PutUint64(k, uint64(max(ms, 0)))
	return append(k, ih[:]...)
}

// indexPeers keeps e's peerexp entry in step with its peers: old is the
// entry as stored before (nil for a new record).
func indexPeers(exp *bolt.Bucket, old, e *Entry) error {
	oms, had := int64(0), false
	if old != nil {
		oms, had = old.oldestPeer()
	}
	nms, has := e.oldestPeer()
	if had && (!has || oms != nms) {
		if err := exp.Delete(peerExpKey(oms, e.InfoHash)); err != nil {
			return err
		}
	}
	if has && (!had || oms != nms) {
		return exp.Put(peerExpKey(nms, e.InfoHash), nil)
	}
	return nil
}

func (x *Index) now() time.Time {
	if x.opts.Now != nil {
		return x.opts.Now()
	}
	return time.Now()
}

// peerCutoff is the unix ms before which announced peers have expired;
// math.MinInt64 when they never do.
func (x *Index) peerCutoff() int64 {
	if x.opts.PeerRetention < 0 {
		return -1 << 63
	}
	return unixMilli(x.now().Add(-x.opts.PeerRetention))
}

// visible readies a record's entry for a caller: expired peers hidden (the
// pruner may not have reached them yet) and the internal times dropped.
func (x *Index) visible(e *Entry) {
	l := e.peers()
	if l.dropBefore(x.peerCutoff()) > 0 {
		l = l.clone() // never alias a decoded record's arrays
	}
	e.Peers, e.peerMs = l.addrs, nil
	if len(e.Peers) == 0 {
		e.Peers = nil
	}
}

// PrunePeers removes one batch (PruneBatch records at most) of expired
// peers and returns how many peers it removed.
func (x *Index) PrunePeers(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, _, err := x.pruneBatch()
	return n, err
}

// prune runs batches until nothing is left or maxPruneBatches ran.
func (x *Index) prune() {
	total := 0
	began := time.Now()
	for range maxPruneBatches {
		n, more, err := x.pruneBatch()
		total += n
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				x.log.Warn("crawl index: pruning expired peers failed; will retry", "err", err)
			}
			return
		}
		if !more || time.Since(began) > maxPruneTime {
			break
		}
	}
	if total > 0 {
		x.log.Debug("crawl index: pruned expired peers", "peers", total)
	}
}

// pruneBatch is one short transaction: it first gives up to PruneBatch
// records written before schema /3 their peerexp entries, then drops the
// expired peers of up to PruneBatch records found through peerexp. more
// reports whether work is left.
func (x *Index) pruneBatch() (removed int, more bool, err error) {
	x.flushMu.Lock() // records are rewritten: not beside a commit
	defer x.flushMu.Unlock()
	x.mu.Lock()
	closed := x.closed
	x.mu.Unlock()
	if closed {
		return 0, false, ErrClosed
	}
	cutoff := x.peerCutoff()
	limit := x.opts.PruneBatch
	err = x.guarded(func() error {
		return x.db.Update(func(tx *bolt.Tx) error {
			removed, more = 0, false
			meta, ihb, exp := tx.Bucket(bucketMeta), tx.Bucket(bucketIH), tx.Bucket(bucketPeerExp)
			if cur := meta.Get(keyPeerSweep); cur != nil {
				c := ihb.Cursor()
				var k, v []byte
				if len(cur) > 1 {
					k, v = c.Seek(cur[1:])
					if bytes.Equal(k, cur[1:]) {
						k, v = c.Next()
					}
				} else {
					k, v = c.First()
				}
				var last []byte
				for n := 0; k != nil && n < limit; k, v = c.Next() {
					n++
					last = k
					if len(k) != 20 {
						continue
					}
					e, err := decodeRecord([20]byte(k), v)
					if err != nil {
						continue
					}
					if err := indexPeers(exp, nil, &e); err != nil {
						return err
					}
				}
				if k == nil {
					if err := meta.Delete(keyPeerSweep); err != nil {
						return err
					}
				} else {
					if err := meta.Put(keyPeerSweep, append([]byte{'s'}, last...)); err != nil {
						return err
					}
					more = true
				}
			}
			if cutoff == -1<<63 {
				return nil
			}
			end := peerExpKey(cutoff, [20]byte{})
			var keys [][]byte
			c := exp.Cursor()
			for k, _ := c.First(); k != nil && len(keys) < limit && bytes.Compare(k, end) < 0; k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			more = more || len(keys) == limit
			for _, k := range keys {
				if err := exp.Delete(k); err != nil {
					return err
				}
				ih, e, ok := recordAtKey(ihb, k)
				if !ok {
					continue
				}
				l := e.peers().clone()
				n := l.dropBefore(cutoff)
				e.setPeers(l)
				if n > 0 {
					removed += n
					if err := ihb.Put(ih[:], encodeRecord(nil, &e)); err != nil {
						return err
					}
				}
				// Whatever the key said, index what the record holds now.
				if ms, ok := e.oldestPeer(); ok {
					if err := exp.Put(peerExpKey(ms, ih), nil); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return 0, false, fmt.Errorf("crawl index prune: %w", err)
	}
	x.mu.Lock()
	x.health.PeersPruned += int64(removed)
	x.mu.Unlock()
	return removed, more, nil
}
