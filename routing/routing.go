// Package routing persists a DHT node's identity and its best-known nodes in a small bbolt file
// (routing.db), so that a restarted node keeps its id and rejoins the network from the nodes it
// knew instead of the bootstrap routers.
//
// The file is opened only for the duration of one Load or Save and with a lock timeout, because
// several magnetget processes may share a data directory and bbolt's Open otherwise waits forever
// for the file lock. The schema is versioned: a "meta" bucket holds a magic string and a schema
// version, so a bbolt file written by another program is recognised as foreign rather than
// silently overwritten.
package routing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/magnetget/magnetget/internal/boltsafe"
)

var (
	// ErrLocked means another process held the file lock for longer than LockTimeout.
	ErrLocked = errors.New("routing database is locked by another process")
	// ErrCorrupt means the file was not a routing database (or was damaged). It has been renamed
	// aside; the error text names the new path.
	ErrCorrupt = errors.New("routing database is corrupt")
)

// LockTimeout bounds how long Load and Save wait for another process's lock on the file.
const LockTimeout = 1500 * time.Millisecond

// SchemaVersion is the version of the layout written by Save. Files with another version are
// treated as corrupt (moved aside) because no older layout exists to migrate from.
const SchemaVersion = 1

const magic = "magnetget-routing"

var (
	bucketMeta  = []byte("meta")
	bucketNodes = []byte("nodes")
	keyMagic    = []byte("magic")
	keyVersion  = []byte("version")
	keyNodeID   = []byte("node_id")
)

// Node is one remote DHT node as remembered between runs.
type Node struct {
	ID           [20]byte
	Addr         netip.AddrPort
	LastResponse time.Time // last time it answered one of our queries; zero if never
	LastQuery    time.Time // last time it sent us a query; zero if never
}

// State is what a routing file holds.
type State struct {
	NodeID [20]byte // zero when the file holds none
	Nodes  []Node
}

// nodeValueLen is the encoded size of a node record: id, last response, last query (unix nanos).
const nodeValueLen = 20 + 8 + 8

// Load opens path briefly (bbolt with a lock timeout), reads, closes. Missing file: empty State,
// nil. Corrupt or foreign file: renamed aside, returns empty State and an error wrapping
// ErrCorrupt whose text names the new path (callers warn and go on). Lock held too long: error
// wrapping ErrLocked. Nodes come most recently responsive first.
//
// Damage never crashes the process: the file is checked with plain reads before bbolt maps it,
// and every bbolt call runs under boltsafe.Guard (faults and panics become ErrCorrupt).
func Load(path string) (State, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	db, err := open(path, true)
	if errors.Is(err, ErrCorrupt) {
		return State{}, moveAside(path, err)
	}
	if err != nil {
		return State{}, err
	}
	st, rerr := readState(db)
	if cerr := closeDB(db); cerr != nil && rerr == nil {
		rerr = fmt.Errorf("routing: close %s: %w", path, cerr)
	}
	if errors.Is(rerr, ErrCorrupt) {
		return State{}, moveAside(path, rerr)
	}
	if rerr != nil {
		return State{}, rerr
	}
	st.Nodes = rank(st.Nodes, 0) // keys are addresses, so already distinct; most useful first
	return st, nil
}

// Save merges st with what the file holds (another process may share the data dir), keeps the
// best max nodes by recent responsiveness, and writes atomically (one bbolt transaction). Holds
// the lock only briefly. A corrupt or foreign file is moved aside and replaced; the returned
// error then wraps ErrCorrupt although st was saved.
func Save(path string, st State, max int) error {
	db, err := open(path, false)
	var corrupt error
	if errors.Is(err, ErrCorrupt) {
		corrupt = moveAside(path, err)
		db, err = open(path, false)
	}
	if err != nil {
		return err
	}
	werr := writeState(db, st, max)
	if errors.Is(werr, ErrCorrupt) {
		// Foreign or damaged file: keep it for the user to inspect, start a fresh one.
		_ = closeDB(db)
		corrupt = moveAside(path, werr)
		if db, err = open(path, false); err != nil {
			return errors.Join(corrupt, err)
		}
		werr = writeState(db, st, max)
	}
	if cerr := closeDB(db); cerr != nil && werr == nil {
		werr = fmt.Errorf("routing: close %s: %w", path, cerr)
	}
	if werr != nil {
		return errors.Join(corrupt, werr)
	}
	return corrupt
}

func open(path string, readOnly bool) (*bolt.DB, error) {
	db, err := boltsafe.Open(path, &bolt.Options{Timeout: LockTimeout, ReadOnly: readOnly})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, boltsafe.ErrLocked):
		return nil, fmt.Errorf("routing: open %s: %w", path, ErrLocked)
	case errors.Is(err, boltsafe.ErrCorrupt):
		return nil, fmt.Errorf("routing: %w: %w", ErrCorrupt, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("routing: open %s: %w", path, err)
	default:
		// Whatever else bbolt reports about the content (a short file it cannot read, an
		// unexpected layout): the file is not usable as a routing database.
		return nil, fmt.Errorf("routing: open %s: %w: %v", path, ErrCorrupt, err)
	}
}

// closeDB closes db under the fault guard: closing a writable file touches its pages.
func closeDB(db *bolt.DB) error {
	err := boltsafe.Guard(db.Close)
	if errors.Is(err, boltsafe.ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// moveAside renames a corrupt file and returns an error wrapping ErrCorrupt that names the new
// path (or the rename failure). The file is never deleted.
func moveAside(path string, cause error) error {
	aside, err := boltsafe.MoveAside(path)
	if err != nil {
		return fmt.Errorf("%w; moving it aside failed: %w", cause, err)
	}
	return fmt.Errorf("%w; moved aside to %s", cause, aside)
}

// checkMeta reports whether the file carries our schema. A file with no buckets at all is a
// fresh (or never committed) file and counts as ours.
func checkMeta(tx *bolt.Tx) (fresh bool, err error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if empty {
			return true, nil
		}
		return false, fmt.Errorf("routing: %w: no meta bucket (not a magnetget file)", ErrCorrupt)
	}
	if !bytes.Equal(meta.Get(keyMagic), []byte(magic)) {
		return false, fmt.Errorf("routing: %w: wrong magic (not a magnetget file)", ErrCorrupt)
	}
	v := meta.Get(keyVersion)
	if len(v) != 4 || binary.BigEndian.Uint32(v) != SchemaVersion {
		return false, fmt.Errorf("routing: %w: unsupported schema version %x", ErrCorrupt, v)
	}
	return false, nil
}

func readState(db *bolt.DB) (st State, err error) {
	err = boltsafe.Guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			fresh, err := checkMeta(tx)
			if err != nil || fresh {
				return err
			}
			st, err = readTx(tx)
			return err
		})
	})
	if errors.Is(err, boltsafe.ErrCorrupt) && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("routing: read: %w: %w", ErrCorrupt, err)
	}
	if err != nil {
		return State{}, err
	}
	return st, nil
}

func readTx(tx *bolt.Tx) (State, error) {
	var st State
	if id := tx.Bucket(bucketMeta).Get(keyNodeID); len(id) == 20 {
		copy(st.NodeID[:], id)
	}
	nodes := tx.Bucket(bucketNodes)
	if nodes == nil {
		return st, nil
	}
	err := nodes.ForEach(func(k, v []byte) error {
		n, ok := decodeNode(k, v)
		if !ok {
			return fmt.Errorf("routing: %w: bad node record %q", ErrCorrupt, k)
		}
		st.Nodes = append(st.Nodes, n)
		return nil
	})
	return st, err
}

func decodeNode(k, v []byte) (Node, bool) {
	var n Node
	if len(v) != nodeValueLen {
		return n, false
	}
	if err := n.Addr.UnmarshalText(k); err != nil || !n.Addr.IsValid() {
		return n, false
	}
	copy(n.ID[:], v)
	n.LastResponse = fromNanos(binary.BigEndian.Uint64(v[20:]))
	n.LastQuery = fromNanos(binary.BigEndian.Uint64(v[28:]))
	return n, true
}

func encodeNode(n Node) (k, v []byte) {
	k, _ = n.Addr.MarshalText()
	v = make([]byte, nodeValueLen)
	copy(v, n.ID[:])
	binary.BigEndian.PutUint64(v[20:], toNanos(n.LastResponse))
	binary.BigEndian.PutUint64(v[28:], toNanos(n.LastQuery))
	return k, v
}

func toNanos(t time.Time) uint64 {
	if t.IsZero() || t.UnixNano() < 0 {
		return 0
	}
	return uint64(t.UnixNano())
}

func fromNanos(x uint64) time.Time {
	if x == 0 || x > 1<<62 {
		return time.Time{}
	}
	return time.Unix(0, int64(x))
}

// writeState runs the merge-and-write transaction under the fault guard: bbolt panics in commit on
// some damage (a root page above the high-water mark) and faults on others.
func writeState(db *bolt.DB, st State, max int) error {
	err := boltsafe.Guard(func() error { return db.Update(func(tx *bolt.Tx) error { return writeTx(tx, st, max) }) })
	if errors.Is(err, boltsafe.ErrCorrupt) && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("routing: write: %w: %w", ErrCorrupt, err)
	}
	return err
}

func writeTx(tx *bolt.Tx, st State, max int) error {
	fresh, err := checkMeta(tx)
	if err != nil {
		return err
	}
	var old State
	if !fresh {
		if old, err = readTx(tx); err != nil {
			return err
		}
	}
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	ver := binary.BigEndian.AppendUint32(nil, SchemaVersion)
	if err := errors.Join(meta.Put(keyMagic, []byte(magic)), meta.Put(keyVersion, ver)); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	if st.NodeID != ([20]byte{}) {
		if err := meta.Put(keyNodeID, st.NodeID[:]); err != nil {
			return fmt.Errorf("routing: %w", err)
		}
	}
	if tx.Bucket(bucketNodes) != nil {
		if err := tx.DeleteBucket(bucketNodes); err != nil {
			return fmt.Errorf("routing: %w", err)
		}
	}
	b, err := tx.CreateBucket(bucketNodes)
	if err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	for _, n := range Best(append(old.Nodes, st.Nodes...), max) {
		k, v := encodeNode(n)
		if err := b.Put(k, v); err != nil {
			return fmt.Errorf("routing: %w", err)
		}
	}
	return nil
}

// Best merges nodes by address (latest id, latest timestamps win) and returns at most max of them,
// most recently responsive first, then most recently heard from. max <= 0 means no limit.
func Best(nodes []Node, max int) []Node {
	byAddr := make(map[netip.AddrPort]Node, len(nodes))
	for _, n := range nodes {
		if !n.Addr.IsValid() || n.ID == ([20]byte{}) {
			continue
		}
		n.Addr = netip.AddrPortFrom(n.Addr.Addr().Unmap(), n.Addr.Port())
		o, ok := byAddr[n.Addr]
		if ok {
			if later(o) > later(n) || (later(o) == later(n) && o.LastResponse.After(n.LastResponse)) {
				n.ID = o.ID
			}
			if o.LastResponse.After(n.LastResponse) {
				n.LastResponse = o.LastResponse
			}
			if o.LastQuery.After(n.LastQuery) {
				n.LastQuery = o.LastQuery
			}
		}
		byAddr[n.Addr] = n
	}
	out := make([]Node, 0, len(byAddr))
	for _, n := range byAddr {
		out = append(out, n)
	}
	return rank(out, max)
}

// rank orders distinct nodes most recently responsive first, then most recently heard from, and
// keeps at most max (max <= 0: all). It sorts small keys rather than the 80-byte Nodes, which
// matters when a warm start loads thousands of them.
func rank(nodes []Node, max int) []Node {
	type key struct {
		resp, query int64
		i           int
	}
	keys := make([]key, len(nodes))
	for i, n := range nodes {
		keys[i] = key{toNanosSigned(n.LastResponse), toNanosSigned(n.LastQuery), i}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.resp != b.resp {
			return cmpDesc(a.resp, b.resp)
		}
		if a.query != b.query {
			return cmpDesc(a.query, b.query)
		}
		return nodes[a.i].Addr.Compare(nodes[b.i].Addr)
	})
	if max > 0 && len(keys) > max {
		keys = keys[:max]
	}
	out := make([]Node, len(keys))
	for j, k := range keys {
		out[j] = nodes[k.i]
	}
	return out
}

func cmpDesc(a, b int64) int {
	if a > b {
		return -1
	}
	return 1
}

func toNanosSigned(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func later(n Node) int64 {
	t := n.LastResponse
	if n.LastQuery.After(t) {
		t = n.LastQuery
	}
	return t.UnixNano()
}
