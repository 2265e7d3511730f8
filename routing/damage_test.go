package routing

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// validFile returns the bytes of a routing.db holding n nodes: with n in the thousands it has
// branch pages, several leaf pages and overflow-free pages of every kind.
func validFile(t testing.TB, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routing.db")
	st := State{NodeID: [20]byte{7, 7}}
	now := time.Now()
	for i := range n {
		st.Nodes = append(st.Nodes, node(i+1, now.Add(-time.Duration(i)*time.Second)))
	}
	if err := Save(path, st, 0); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pageInfo reads the page size and the pages in use from meta page 0 of a valid file.
func pageInfo(b []byte) (psz, hwm int) {
	return int(binary.NativeEndian.Uint32(b[16+8:])), int(binary.NativeEndian.Uint64(b[16+40:]))
}

// loadDamaged writes content to a fresh routing.db and loads it. The outcome must be either a
// clean load or ErrCorrupt with the file moved aside intact; never a crash. Then Save must work
// and its state load back.
func loadDamaged(t *testing.T, content []byte) (corrupt bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routing.db")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := Load(path)
	switch {
	case err == nil:
		for _, n := range st.Nodes {
			if !n.Addr.IsValid() {
				t.Fatalf("invalid node loaded: %+v", n)
			}
		}
	case errors.Is(err, ErrCorrupt):
		if len(st.Nodes) != 0 {
			t.Fatalf("nodes from a damaged file: %d", len(st.Nodes))
		}
		assertMovedAside(t, path, err, content)
		corrupt = true
	default:
		t.Fatalf("Load: %v, want nil or ErrCorrupt", err)
	}
	want := State{NodeID: [20]byte{9}, Nodes: []Node{node(1, time.Now())}}
	if err := Save(path, want, 10); err != nil && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Save after damage: %v", err)
	}
	got, err := Load(path)
	if err != nil || got.NodeID != want.NodeID {
		t.Fatalf("Load after Save: %x, %v", got.NodeID, err)
	}
	return corrupt
}

// Row 6 of issue 9: a truncated routing.db was a SIGBUS ("fatal error: fault") on every run.
func TestDamagedTruncated(t *testing.T) {
	b := validFile(t, 3000)
	psz, hwm := pageInfo(b)
	var offsets []int
	for p := 0; p <= hwm; p++ {
		offsets = append(offsets, p*psz, p*psz+1, p*psz+psz/2)
	}
	offsets = append(offsets, 1, 15, 16, 79, 80, 81)
	corrupt := 0
	for _, off := range offsets {
		if off >= len(b) {
			continue
		}
		if loadDamaged(t, b[:off]) {
			corrupt++
		}
	}
	if corrupt == 0 {
		t.Fatal("no truncation was detected")
	}
	t.Logf("%d truncations of a %d-page file (%d in use), %d detected", len(offsets), len(b)/psz, hwm, corrupt)
}

// Each page in use zeroed in turn.
func TestDamagedZeroedPages(t *testing.T) {
	b := validFile(t, 3000)
	psz, hwm := pageInfo(b)
	for p := range hwm {
		d := append([]byte(nil), b...)
		clear(d[p*psz : (p+1)*psz])
		loadDamaged(t, d)
	}
	both := append([]byte(nil), b...)
	clear(both[:2*psz])
	if !loadDamaged(t, both) {
		t.Fatal("a file with both meta pages zeroed loaded")
	}
}

// Random byte flips in the meta, branch, leaf and freelist pages.
func TestDamagedByteFlips(t *testing.T) {
	b := validFile(t, 3000)
	psz, hwm := pageInfo(b)
	rng := rand.New(rand.NewPCG(1, 2))
	n := 400
	if testing.Short() {
		n = 50
	}
	for range n {
		d := append([]byte(nil), b...)
		p := rng.IntN(hwm)
		for range 1 + rng.IntN(8) {
			at := p*psz + rng.IntN(64) // headers, element tables and meta fields live at the start
			if rng.IntN(3) == 0 {
				at = p*psz + rng.IntN(psz)
			}
			d[at] ^= byte(1 + rng.IntN(255))
		}
		loadDamaged(t, d)
	}
}

// A page that points to itself: bbolt would recurse until the stack limit (a fatal error, not a
// panic). The check walks pages once each and rejects it.
func TestDamagedCycle(t *testing.T) {
	b := validFile(t, 3000)
	psz, _ := pageInfo(b)
	root := int(binary.NativeEndian.Uint64(b[16+16:]))
	// Find a branch page reachable from the root (the nodes bucket's root) and point its
	// first child at itself.
	for p := 2; p*psz < len(b); p++ {
		pg := b[p*psz:]
		if binary.NativeEndian.Uint16(pg[8:]) == 0x01 && p != root {
			d := append([]byte(nil), b...)
			binary.NativeEndian.PutUint64(d[p*psz+16+8:], uint64(p))
			if !loadDamaged(t, d) {
				t.Fatal("a branch page pointing to itself was not detected")
			}
			return
		}
	}
	t.Fatal("no branch page in the test file")
}

// A bbolt file of another schema, with nested buckets and big values, is foreign: moved aside.
func TestDamagedOtherSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("torrents"))
		if err != nil {
			return err
		}
		for i := range 50 {
			sub, err := b.CreateBucket([]byte{byte(i)})
			if err != nil {
				return err
			}
			if err := sub.Put([]byte("big"), make([]byte, 10000)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !loadDamaged(t, content) {
		t.Fatal("a foreign bbolt file loaded")
	}
}

// Save over a damaged file keeps it aside and writes a fresh one.
func TestSaveOverTruncatedFile(t *testing.T) {
	b := validFile(t, 3000)
	psz, hwm := pageInfo(b)
	path := filepath.Join(t.TempDir(), "routing.db")
	if err := os.WriteFile(path, b[:(hwm-1)*psz], 0o600); err != nil {
		t.Fatal(err)
	}
	err := Save(path, State{NodeID: [20]byte{3}, Nodes: []Node{node(1, time.Now())}}, 10)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Save over a truncated file: %v, want ErrCorrupt", err)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("moved-aside files: %v", aside)
	}
	if kept, _ := os.ReadFile(aside[0]); len(kept) != (hwm-1)*psz {
		t.Fatalf("the damaged file was not kept whole: %d bytes", len(kept))
	}
	if st, err := Load(path); err != nil || st.NodeID != ([20]byte{3}) || len(st.Nodes) != 1 {
		t.Fatalf("Load after Save: %+v, %v", st, err)
	}
}

// FuzzRoutingFile mutates a whole valid routing.db: Load and Save never crash, and Load allocates
// a small multiple of the file's size.
func FuzzRoutingFile(f *testing.F) {
	f.Add(validFile(f, 1))
	f.Add(validFile(f, 300))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		if len(content) > 4<<20 {
			return
		}
		path := filepath.Join(dir, "routing.db")
		_ = os.Remove(path)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Load(path)
		runtime.ReadMemStats(&after)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load: %v", err)
		}
		if used := after.TotalAlloc - before.TotalAlloc; used > uint64(8*len(content)+1<<20) {
			t.Fatalf("Load of %d bytes allocated %d", len(content), used)
		}
		if err := Save(path, State{NodeID: [20]byte{1}, Nodes: []Node{node(1, time.Now())}}, 10); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Save: %v", err)
		}
		matches, _ := filepath.Glob(path + ".corrupt-*")
		for _, m := range matches {
			_ = os.Remove(m) // the fuzzer's own files only
		}
	})
}
