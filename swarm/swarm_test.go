package swarm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/magnetget/magnetget/swarm/storage"
)

var multiFiles = []testFile{
	{"a/b/deep.bin", 100<<10 + 13},
	{"empty.txt", 0},
	{"small.txt", 100},
	{"d/e.bin", 300<<10 + 7},
	{"d/empty2", 0},
	{"z.bin", 1<<20 + 3},
}

func TestDownloadFromSeveralSeeders(t *testing.T) {
	tt := makeTorrent(t, "multi", 32<<10, multiFiles, 1)
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		s.AddPeer(startSeeder(t, tt, ip, nil))
	}
	var last Progress
	s.cfg.OnProgress = func(p Progress) { last = p }
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
	if !last.Complete || last.Done != last.Total || last.Total != int64(len(multiFilesStream(tt))) {
		t.Errorf("final progress %+v", last)
	}
	if _, err := os.Stat(filepath.Join(dir, storage.ResumeName(tt.ih))); err != nil {
		t.Errorf("resume file: %v", err)
	}
}

func multiFilesStream(tt *testTorrent) []byte {
	var b []byte
	for _, d := range tt.data {
		b = append(b, d...)
	}
	return b
}

func TestSelectedFilesOnly(t *testing.T) {
	tt := makeTorrent(t, "sel", 32<<10, multiFiles, 2)
	dir := t.TempDir()
	// Only d/e.bin (index 3): pieces it shares with neighbours are fetched whole, the rest not.
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, Select: func(i int) bool { return i == 3 }})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(startSeeder(t, tt, "127.0.0.5", nil))
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "sel", "d", "e.bin"))
	if err != nil || string(got) != string(tt.data[3]) {
		t.Fatalf("selected file wrong: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "sel", "z.bin")); err == nil && fi.Size() == int64(len(tt.data[5])) {
		t.Errorf("unselected z.bin was downloaded in full")
	}
	if _, err := os.Stat(filepath.Join(dir, "sel", "empty.txt")); err == nil {
		t.Errorf("unselected empty file was created")
	}
}

func TestUnsafeNamesRefused(t *testing.T) {
	for name, files := range map[string][]testFile{
		"dotdot":      {{"../escape.txt", 10}},
		"deep dotdot": {{"a/../../escape.txt", 10}},
		"dot":         {{"./x", 10}},
		"empty":       {{"a//b", 10}},
		"nul":         {{"a\x00b", 10}},
		"backslash":   {{"..\\escape", 10}},
		"reserved":    {{"CON", 10}},
	} {
		t.Run(name, func(t *testing.T) {
			tt := makeTorrent(t, "t", 16<<10, files, 3)
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			_, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: out})
			if !errors.Is(err, storage.ErrUnsafePath) {
				t.Fatalf("New: %v, want ErrUnsafePath", err)
			}
			entries, _ := os.ReadDir(parent)
			if len(entries) != 0 {
				t.Fatalf("something was written: %v", entries)
			}
		})
	}
	for _, name := range []string{"..", ".", "/abs", "a/b"} {
		tt := makeTorrent(t, name, 16<<10, []testFile{{"f", 10}}, 3)
		parent := t.TempDir()
		if _, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: filepath.Join(parent, "out")}); !errors.Is(err, storage.ErrUnsafePath) {
			t.Errorf("torrent name %q: New: %v, want ErrUnsafePath", name, err)
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 0 {
			t.Errorf("torrent name %q: something was written: %v", name, entries)
		}
	}
}

func TestInfoHashMismatch(t *testing.T) {
	tt := makeTorrent(t, "t", 16<<10, []testFile{{"f", 10}}, 3)
	tt.ih[0] ^= 1
	if _, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: t.TempDir()}); !errors.Is(err, ErrInfoHash) {
		t.Fatalf("New: %v, want ErrInfoHash", err)
	}
}

// TestStorageErrorStopsRun: when blocks cannot be written (here a plain file sits where the
// torrent's directory must go) Run stops with ErrStorage instead of retrying forever.
func TestStorageErrorStopsRun(t *testing.T) {
	tt := makeTorrent(t, "blocked", 32<<10, []testFile{{"a/x.bin", 200 << 10}}, 9)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blocked"), []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(startSeeder(t, tt, "127.0.0.13", nil))
	if err := runUntil(t, s, context.Background()); !errors.Is(err, ErrStorage) {
		t.Fatalf("Run: %v, want ErrStorage", err)
	}
}

// TestEmptyFilesOnly: a torrent of zero-length files completes at once and creates them.
func TestEmptyFilesOnly(t *testing.T) {
	tt := makeTorrent(t, "empties", 16<<10, []testFile{{"a", 0}, {"b/c", 0}}, 10)
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
}

// TestLeechersTrade: two downloaders share a slow seeder and know each other; each uploads
// pieces to the other while still downloading.
func TestLeechersTrade(t *testing.T) {
	tt := makeTorrent(t, "trade", 32<<10, []testFile{{"x.bin", 2 << 20}}, 11)
	seed := startSeeder(t, tt, "127.0.0.14", func(c *Config) { c.UploadLimit = 512 << 10 })
	type leecher struct {
		s    *Swarm
		dir  string
		addr netip.AddrPort
		last Progress
	}
	var ls [2]*leecher
	for i := range ls {
		ln := listen(t, fmt.Sprintf("127.0.0.%d", 15+i))
		l := &leecher{dir: t.TempDir(), addr: addrOf(ln)}
		s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: l.dir, Listener: ln,
			OnProgress: func(p Progress) { l.last = p }})
		if err != nil {
			t.Fatal(err)
		}
		l.s = s
		ls[i] = l
	}
	ls[0].s.AddPeer(seed)
	ls[1].s.AddPeer(seed)
	ls[1].s.AddPeer(ls[0].addr)
	errs := make(chan error, 2)
	for _, l := range ls {
		go func() { errs <- runUntil(t, l.s, context.Background()) }()
	}
	for range ls {
		if err := <-errs; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	for _, l := range ls {
		tt.checkFiles(t, l.dir)
	}
	if ls[0].last.Up+ls[1].last.Up == 0 {
		t.Fatalf("leechers uploaded nothing to each other (progress %+v, %+v)", ls[0].last, ls[1].last)
	}
	t.Logf("leecher uploads: %d, %d bytes", ls[0].last.Up, ls[1].last.Up)
}

// TestSequentialOrder: in sequential mode pieces are started in index order.
func TestSequentialOrder(t *testing.T) {
	tt := makeTorrent(t, "seq", 16<<10, []testFile{{"x.bin", 1<<20 + 5}}, 13)
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: t.TempDir(), Sequential: true})
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	seen := map[int]bool{}
	s.onRequest = func(i int) { // called under the swarm lock: no extra locking needed
		if !seen[i] {
			seen[i] = true
			order = append(order, i)
		}
	}
	s.AddPeer(startSeeder(t, tt, "127.0.0.22", nil))
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(order) != s.layout.NumPieces() {
		t.Fatalf("requested %d distinct pieces, want %d", len(order), s.layout.NumPieces())
	}
	for i, p := range order {
		if p != i {
			t.Fatalf("piece %d started at position %d: order %v", p, i, order)
		}
	}
}

// TestOversizedFileTrimmed: a longer file already in place (stale data) ends up exactly the
// torrent's content.
func TestOversizedFileTrimmed(t *testing.T) {
	tt := makeTorrent(t, "trim", 16<<10, []testFile{{"x.bin", 100<<10 + 1}, {"y.bin", 10}}, 15)
	dir := t.TempDir()
	junk := make([]byte, 300<<10)
	for i := range junk {
		junk[i] = 0x55
	}
	if err := os.MkdirAll(filepath.Join(dir, "trim"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "trim", "x.bin"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	// The junk is not ours: only Force lets the download overwrite it (storage.ErrExists).
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	s.AddPeer(startSeeder(t, tt, "127.0.0.23", nil))
	if err := runUntil(t, s, context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tt.checkFiles(t, dir)
}
