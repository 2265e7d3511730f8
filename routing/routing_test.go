package routing

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func node(i int, resp time.Time) Node {
	return Node{
		ID:           [20]byte{byte(i), byte(i >> 8), 1},
		Addr:         netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 6881),
		LastResponse: resp,
	}
}

func TestLoadMissingFile(t *testing.T) {
	st, err := Load(filepath.Join(t.TempDir(), "routing.db"))
	if err != nil || st.NodeID != ([20]byte{}) || len(st.Nodes) != 0 {
		t.Fatalf("Load(missing) = %+v, %v; want empty, nil", st, err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routing.db")
	now := time.Now().Round(0)
	st := State{NodeID: [20]byte{9, 9}, Nodes: []Node{node(1, now), node(2, now.Add(-time.Hour))}}
	st.Nodes[1].LastQuery = now.Add(-time.Minute)
	st.Nodes = append(st.Nodes, Node{ID: [20]byte{3}, Addr: netip.MustParseAddrPort("[2001:db8::1]:6881")})
	if err := Save(path, st, 100); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID != st.NodeID || len(got.Nodes) != 3 {
		t.Fatalf("Load = %+v", got)
	}
	// Most recently responsive first.
	for i, want := range []Node{st.Nodes[0], st.Nodes[1], st.Nodes[2]} {
		g := got.Nodes[i]
		if g.ID != want.ID || g.Addr != want.Addr || !g.LastResponse.Equal(want.LastResponse) || !g.LastQuery.Equal(want.LastQuery) {
			t.Fatalf("node %d = %+v, want %+v", i, g, want)
		}
	}
}

// Save merges with the file, so two processes sharing a data dir do not erase each other's
// nodes, and keeps the best max.
func TestSaveMergesAndKeepsBest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routing.db")
	base := time.Now()
	var a, b []Node
	for i := range 6 {
		a = append(a, node(i, base.Add(time.Duration(i)*time.Second)))      // 0..5
		b = append(b, node(i+3, base.Add(time.Duration(i+10)*time.Second))) // 3..8, newer
	}
	if err := Save(path, State{NodeID: [20]byte{1}, Nodes: a}, 100); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, State{Nodes: b}, 5); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID != ([20]byte{1}) {
		t.Fatalf("a Save without id erased the id: %x", got.NodeID)
	}
	if len(got.Nodes) != 5 {
		t.Fatalf("kept %d nodes, want 5", len(got.Nodes))
	}
	for i, n := range got.Nodes {
		if want := node(8-i, time.Time{}); n.Addr != want.Addr {
			t.Fatalf("node %d is %v, want %v (newest first)", i, n.Addr, want.Addr)
		}
	}
}

func assertMovedAside(t *testing.T, path string, err error, content []byte) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("moved-aside files: %v", aside)
	}
	if !strings.Contains(err.Error(), aside[0]) {
		t.Fatalf("error %q does not name %s", err, aside[0])
	}
	if content != nil {
		if b, rerr := os.ReadFile(aside[0]); rerr != nil || string(b) != string(content) {
			t.Fatalf("moved-aside content changed (%v)", rerr)
		}
	}
	if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("original path still exists: %v", serr)
	}
}

func TestLoadCorruptFileMovedAside(t *testing.T) {
	for name, content := range map[string][]byte{
		"text":  []byte("hello, this is not a database\n"),
		"short": {0},
		"zeros": make([]byte, 64<<10),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "routing.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := Load(path)
			if len(st.Nodes) != 0 {
				t.Fatalf("nodes from a corrupt file: %v", st.Nodes)
			}
			assertMovedAside(t, path, err, content)
		})
	}
}

// A bbolt file written by something else is foreign, not silently reused.
func TestLoadForeignBboltFileMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routing.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("torrents"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Load(path)
	assertMovedAside(t, path, err, nil)
}

func TestLoadWrongSchemaVersionMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routing.db")
	if err := Save(path, State{NodeID: [20]byte{1}}, 10); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, []byte{0, 0, 0, 99})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Load(path)
	assertMovedAside(t, path, err, nil)
}

// Save over a corrupt file keeps the old one aside and writes a fresh, loadable file.
func TestSaveOverCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routing.db")
	if err := os.WriteFile(path, []byte("garbage garbage garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Save(path, State{NodeID: [20]byte{4}, Nodes: []Node{node(1, time.Now())}}, 10)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Save over garbage: %v, want ErrCorrupt", err)
	}
	st, err := Load(path)
	if err != nil || st.NodeID != ([20]byte{4}) || len(st.Nodes) != 1 {
		t.Fatalf("Load after Save: %+v, %v", st, err)
	}
}

// A file held by another bbolt handle (flock) makes Load and Save give up with ErrLocked after
// the lock timeout instead of hanging.
func TestLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routing.db")
	if err := Save(path, State{NodeID: [20]byte{1}}, 10); err != nil {
		t.Fatal(err)
	}
	holder, err := bolt.Open(path, 0o600, nil) // exclusive lock, as a running process holds it
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := Load(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("Load of a locked file: %v, want ErrLocked", err)
	}
	if err := Save(path, State{NodeID: [20]byte{2}}, 10); !errors.Is(err, ErrLocked) {
		t.Fatalf("Save to a locked file: %v, want ErrLocked", err)
	}
	holder.Close()
	if st, err := Load(path); err != nil || st.NodeID != ([20]byte{1}) {
		t.Fatalf("Load after release: %+v, %v", st, err)
	}
}

// FuzzDecodeNode checks the record decoder on arbitrary keys and values.
func FuzzDecodeNode(f *testing.F) {
	k, v := encodeNode(node(1, time.Now()))
	f.Add(k, v)
	k, v = encodeNode(Node{ID: [20]byte{1}, Addr: netip.MustParseAddrPort("[::1]:1")})
	f.Add(k, v)
	f.Add([]byte("1.2.3.4"), make([]byte, nodeValueLen))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		n, ok := decodeNode(k, v)
		if !ok {
			return
		}
		k2, v2 := encodeNode(n)
		n2, ok := decodeNode(k2, v2)
		if !ok || n2.ID != n.ID || n2.Addr != n.Addr || !n2.LastResponse.Equal(n.LastResponse) || !n2.LastQuery.Equal(n.LastQuery) {
			t.Fatalf("round trip: %+v -> %+v", n, n2)
		}
	})
}
