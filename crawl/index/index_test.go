package index

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func ihOf(s string) [20]byte { return sha1.Sum([]byte(s)) }

func openT(t *testing.T, path string, o Options) *Index {
	t.Helper()
	if o.Now == nil {
		// Peers announced at t0 must not expire as the real clock moves on.
		o.Now = func() time.Time { return t0.Add(time.Hour) }
	}
	x, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestRestartKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crawl.db")
	x, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := ihOf("a"), ihOf("b"), ihOf("c")
	peer := netip.MustParseAddrPort("127.0.0.5:6881")
	for _, o := range []struct {
		ih   [20]byte
		how  How
		peer netip.AddrPort
		at   time.Time
	}{
		{a, Sampled, netip.AddrPort{}, t0},
		{a, Announce, peer, t0.Add(time.Minute)},
		{b, GetPeers, netip.AddrPort{}, t0.Add(2 * time.Minute)},
		{c, Sampled, netip.AddrPort{}, t0.Add(3 * time.Minute)},
	} {
		if err := x.Observe(o.ih, o.how, o.peer, o.at); err != nil {
			t.Fatal(err)
		}
	}
	md := Metadata{Name: "ubuntu.iso", Size: 30, Files: []File{{Path: []string{"dir", "x"}, Length: 10}, {Path: []string{"y"}, Length: 20}}}
	if err := x.SetFetched(a, md, t0.Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := x.SetFailed(b, 2, t0.Add(time.Hour), t0.Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}

	x = openT(t, path, Options{})
	e, ok, err := x.Get(a)
	if err != nil || !ok {
		t.Fatalf("Get(a) = %v, %v", ok, err)
	}
	// SetFetched at t0+4m is not a sighting: last seen stays t0+1m.
	if e.How != Sampled|Announce || !e.FirstSeen.Equal(t0) || !e.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Errorf("a: how %v first %v last %v", e.How, e.FirstSeen, e.LastSeen)
	}
	if len(e.Peers) != 1 || e.Peers[0] != peer {
		t.Errorf("a peers = %v", e.Peers)
	}
	if e.Meta != MetaFetched || e.Name != md.Name || e.Size != 30 || len(e.Files) != 2 || strings.Join(e.Files[0].Path, "/") != "dir/x" || e.Files[1].Length != 20 {
		t.Errorf("a metadata = %+v", e)
	}
	e, _, _ = x.Get(b)
	if e.Meta != MetaFailed || e.Attempts != 2 || !e.NextRetry.Equal(t0.Add(time.Hour)) {
		t.Errorf("b = %+v", e)
	}
	if err := x.Observe(c, Sampled, netip.AddrPort{}, t0.Add(5*time.Minute)); err != nil || x.Flush() != nil || x.Health().New != 0 {
		t.Errorf("Observe(c) after restart: err=%v health %+v, want known", err, x.Health())
	}
	st, err := x.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Infohashes: 3, WithMetadata: 1, Failed: 1, Sampled: 2, GetPeers: 1, Announced: 1, Sightings: 5, FirstSeen: t0, LastSeen: t0.Add(5 * time.Minute)}
	if st != want {
		t.Errorf("Stats = %+v\nwant    %+v", st, want)
	}
	// Fetched metadata is never due again; the failed one is due only
	// after its retry time; c (never tried) is due at once.
	due, err := x.Due(t0.Add(30*time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].InfoHash != c {
		t.Errorf("Due before retry = %v, want only c", hexes(due))
	}
	due, _ = x.Due(t0.Add(2*time.Hour), 10)
	if len(due) != 2 || due[0].InfoHash != c || due[1].InfoHash != b {
		t.Errorf("Due after retry = %v, want c then b", hexes(due))
	}
}

func hexes(es []Entry) []string {
	var s []string
	for _, e := range es {
		s = append(s, hex.EncodeToString(e.InfoHash[:4]))
	}
	return s
}

func TestFetchedIsFinal(t *testing.T) {
	x := openT(t, filepath.Join(t.TempDir(), "i.db"), Options{})
	a := ihOf("a")
	x.Observe(a, Sampled, netip.AddrPort{}, t0)
	x.SetFetched(a, Metadata{Name: "n", Size: 1, Files: []File{{Path: []string{"n"}, Length: 1}}}, t0)
	x.Flush()
	x.SetFailed(a, 1, t0.Add(time.Hour), t0)
	e, _, _ := x.Get(a)
	if e.Meta != MetaFetched || e.Name != "n" {
		t.Fatalf("after SetFailed on fetched: %+v", e)
	}
	x.Flush()
	e, _, _ = x.Get(a)
	if e.Meta != MetaFetched || e.Name != "n" {
		t.Fatalf("after commit: %+v", e)
	}
}

func TestObserveNewExactlyOnce(t *testing.T) {
	x := openT(t, filepath.Join(t.TempDir(), "i.db"), Options{BatchSize: 7})
	const n, workers = 200, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := x.Observe(ihOf(string(rune(i))), How(1<<(w%3)), netip.AddrPort{}, t0.Add(time.Duration(i)*time.Second)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st, _ := x.Stats()
	if h := x.Health(); h.New != n || h.Sightings != n*workers {
		t.Errorf("Health = %+v, want %d new, %d sightings", h, n, n*workers)
	}
	if st.Infohashes != n || st.Sampled != n || st.GetPeers != n || st.Announced != n || st.Sightings != n*workers {
		t.Errorf("Stats = %+v", st)
	}
}

func TestPeersCapped(t *testing.T) {
	x := openT(t, filepath.Join(t.TempDir(), "i.db"), Options{MaxPeers: 3, BatchSize: 2})
	a := ihOf("a")
	for i := range 10 {
		x.Observe(a, Announce, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i)), t0)
	}
	x.Observe(a, Announce, netip.MustParseAddrPort("[::1]:5"), t0)
	e, _, _ := x.Get(a)
	want := []string{"127.0.0.1:1008", "127.0.0.1:1009", "[::1]:5"}
	var got []string
	for _, p := range e.Peers {
		got = append(got, p.String())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("peers = %v, want the 3 most recent %v", got, want)
	}
}

func TestCorruptFileMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "crawl.db")
	garbage := bytes.Repeat([]byte("not a bbolt file "), 1000)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	x, err := Open(path, Options{})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(garbage) err = %v, want ErrCorrupt", err)
	}
	if x == nil {
		t.Fatal("Open(garbage) returned no index")
	}
	defer x.Close()
	checkAside(t, dir, err, garbage)
	if err := x.Observe(ihOf("a"), Sampled, netip.AddrPort{}, t0); err != nil {
		t.Fatalf("fresh index unusable: %v", err)
	}
}

func checkAside(t *testing.T, dir string, err error, want []byte) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "crawl.db.corrupt-*"))
	if len(m) != 1 {
		t.Fatalf("moved-aside files = %v", m)
	}
	if !strings.Contains(err.Error(), m[0]) {
		t.Errorf("error %q does not name %s", err, m[0])
	}
	if want != nil {
		got, _ := os.ReadFile(m[0])
		if !bytes.Equal(got, want) {
			t.Error("moved-aside file differs from the original")
		}
	}
}

func TestForeignBoltFileMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "crawl.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket([]byte("nodes"))
		return b.Put([]byte("k"), []byte("v"))
	})
	db.Close()
	x, err := Open(path, Options{})
	if !errors.Is(err, ErrCorrupt) || x == nil {
		t.Fatalf("Open(foreign) = %v, %v; want index and ErrCorrupt", x, err)
	}
	defer x.Close()
	checkAside(t, dir, err, nil)
	st, _ := x.Stats()
	if st.Infohashes != 0 {
		t.Errorf("fresh index has %d infohashes", st.Infohashes)
	}
}

func TestNewerSchemaLeftAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "crawl.db")
	db, _ := bolt.Open(path, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket(bucketMeta)
		return b.Put(keySchema, []byte("magnetget-crawl-index/7"))
	})
	db.Close()
	x, err := Open(path, Options{})
	if !errors.Is(err, ErrNewerSchema) || x != nil {
		t.Fatalf("Open(newer) = %v, %v", x, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.corrupt-*")); len(m) != 0 {
		t.Errorf("newer file was moved aside: %v", m)
	}
}

func TestLockedNeverHangs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crawl.db")
	openT(t, path, Options{})
	x, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || x != nil {
		t.Fatalf("second Open = %v, %v; want ErrLocked", x, err)
	}
}

func TestClosed(t *testing.T) {
	x, _ := Open(filepath.Join(t.TempDir(), "i.db"), Options{})
	x.Close()
	if err := x.Observe(ihOf("a"), Sampled, netip.AddrPort{}, t0); !errors.Is(err, ErrClosed) {
		t.Errorf("Observe after Close: %v", err)
	}
	if err := x.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	// Close waits for the flusher: none may be left (other tests' indexes
	// were closed by their cleanups before this test ran).
	buf := make([]byte, 1<<20)
	if st := string(buf[:runtime.Stack(buf, true)]); strings.Contains(st, "(*Index).flusher") {
		t.Errorf("a flusher goroutine outlived Close:\n%s", st)
	}
}

func fill(t *testing.T) *Index {
	x := openT(t, filepath.Join(t.TempDir(), "i.db"), Options{})
	a, b := ihOf("a"), ihOf("b")
	x.Observe(a, Sampled, netip.AddrPort{}, t0)
	x.Observe(a, Announce, netip.MustParseAddrPort("127.0.0.2:80"), t0.Add(time.Second))
	x.Observe(b, GetPeers, netip.AddrPort{}, t0)
	x.SetFetched(a, Metadata{Name: "x, \"quoted\"\nname", Size: 3, Files: []File{{Path: []string{"d", "f"}, Length: 3}}}, t0)
	x.SetFailed(b, 1, t0.Add(time.Minute), t0)
	return x
}

func TestExportJSONL(t *testing.T) {
	x := fill(t)
	var buf bytes.Buffer
	if err := x.ExportJSONL(&buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	byIH := map[string]map[string]any{}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		byIH[m["infohash"].(string)] = m
	}
	a := byIH[hexIH("a")]
	if a == nil || a["name"] != "x, \"quoted\"\nname" || a["size"] != 3.0 || a["metadata"] != "fetched" {
		t.Errorf("a = %v", a)
	}
	if got, _ := json.Marshal(a["seen_by"]); string(got) != `["sampled","announce"]` {
		t.Errorf("a seen_by = %s", got)
	}
	if got, _ := json.Marshal(a["files"]); string(got) != `[{"length":3,"path":["d","f"]}]` {
		t.Errorf("a files = %s", got)
	}
	if got, _ := json.Marshal(a["peers"]); string(got) != `["127.0.0.2:80"]` {
		t.Errorf("a peers = %s", got)
	}
	b := byIH[hexIH("b")]
	if b == nil || b["metadata"] != "failed" || b["attempts"] != 1.0 || b["next_retry"] != "2026-11-25T12:01:00Z" || b["first_seen"] != "2026-11-25T12:00:00Z" {
		t.Errorf("b = %v", b)
	}
}

func TestExportCSV(t *testing.T) {
	x := fill(t)
	var buf bytes.Buffer
	if err := x.ExportCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("rows = %q", rows)
	}
	found := 0
	for _, r := range rows[1:] {
		switch r[0] {
		case hexIH("a"):
			found++
			want := []string{r[0], "2026-11-25T12:00:00Z", "2026-11-25T12:00:01Z", "sampled|announce", "fetched", "0", "x, \"quoted\"\nname", "3", "1", "127.0.0.2:80"}
			if strings.Join(r, "\x00") != strings.Join(want, "\x00") {
				t.Errorf("a row = %q\nwant %q", r, want)
			}
		case hexIH("b"):
			found++
			if r[3] != "get_peers" || r[4] != "failed" || r[5] != "1" || r[6] != "" {
				t.Errorf("b row = %q", r)
			}
		}
	}
	if found != 2 {
		t.Errorf("rows = %q", rows)
	}
}

func hexIH(s string) string { ih := ihOf(s); return hex.EncodeToString(ih[:]) }

func TestDirectoryNotMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crawl.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	x, err := Open(path, Options{})
	if err == nil || errors.Is(err, ErrCorrupt) || x != nil {
		t.Fatalf("Open(directory) = %v, %v; want a plain error", x, err)
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Fatalf("the directory was moved: %v", err)
	}
}

func TestCSVDefusesFormulas(t *testing.T) {
	x := openT(t, filepath.Join(t.TempDir(), "i.db"), Options{})
	x.SetFetched(ihOf("f"), Metadata{Name: "=HYPERLINK(\"http://x\")", Size: 1}, t0)
	var buf bytes.Buffer
	if err := x.ExportCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, _ := csv.NewReader(&buf).ReadAll()
	if len(rows) != 2 || rows[1][6] != "'=HYPERLINK(\"http://x\")" {
		t.Fatalf("rows = %q", rows)
	}
}

// TestSchema2PeersExpire: a file written before peers had times (schema
// /2) is upgraded on open, and its records' peers expire like new ones
// (the pruner indexes the old records in batches first).
func TestSchema2PeersExpire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(port byte) []byte {
		b := []byte{2, byte(Announce), byte(MetaNone)}
		b = binary.AppendVarint(b, t0.UnixMilli())
		b = binary.AppendVarint(b, t0.UnixMilli())
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendVarint(b, t0.UnixMilli())
		b = binary.AppendUvarint(b, 1)
		b = binary.AppendUvarint(b, 1)
		return append(b, 4, 127, 0, 0, 1, 0x1a, port)
	}
	const n = 25
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		meta.Put(keySchema, []byte("magnetget-crawl-index/2"))
		ihb, _ := tx.CreateBucket(bucketIH)
		due, _ := tx.CreateBucket(bucketDue)
		for i := range n {
			ih := ihOf(strconv.Itoa(i))
			ihb.Put(ih[:], rec(byte(i)))
			due.Put(dueKey(t0, ih), nil)
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	x := openT(t, path, Options{PruneBatch: 4, PruneInterval: time.Hour, Now: func() time.Time { return now }})
	if e, _, _ := x.Get(ihOf("3")); len(e.Peers) != 1 {
		t.Fatalf("old record's peers: %v", e.Peers)
	}
	if removed, _ := x.PrunePeers(context.Background()); removed != 0 {
		t.Errorf("pruned %d peers that had not expired", removed)
	}
	now = t0.Add(8 * 24 * time.Hour)
	total := 0
	for range 100 {
		n, err := x.PrunePeers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != n {
		t.Errorf("pruned %d peers of %d old records, want all", total, n)
	}
}
