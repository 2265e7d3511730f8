package torrentfile

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/anacrolix/torrent/bencode"
)

// filePaths lists a created torrent's files as slash-joined paths with their lengths.
func filePaths(t *testing.T, dir string, o Options) []string {
	t.Helper()
	info := mustInfo(t, mustCreate(t, dir, o))
	var out []string
	for _, f := range info.Files {
		out = append(out, strings.Join(f.Path, "/"))
	}
	return out
}

func TestCreatePiecesCoverFilesInOrder(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, trickyTree)
	// The stream hashed is the files concatenated in torrent order; pieces span file boundaries.
	paths := filePaths(t, dir, Options{})
	want := []string{".h/y", "A/x", "Z z", "a-c", "a.b", "a/b", "deep/e", "deep/er/est/f", "deep/er/zero", "empty"}
	if !slices.Equal(paths, want) {
		t.Fatalf("file order %q, want %q", paths, want)
	}
	var stream []byte
	for _, p := range want {
		stream = append(stream, content(p, trickyTree[p])...)
	}
	for _, pl := range []int64{16 << 10, 64 << 10, 8 << 20} {
		for _, workers := range []int{1, 2, 7} {
			mi := mustCreate(t, dir, Options{PieceLength: pl, Workers: workers})
			info := mustInfo(t, mi)
			if info.PieceLength != pl || info.Name != filepath.Base(dir) {
				t.Fatalf("piece length %d name %q, want %d %q", info.PieceLength, info.Name, pl, filepath.Base(dir))
			}
			if !bytes.Equal(info.Pieces, referencePieces(stream, int(pl))) {
				t.Errorf("piece length %d, %d workers: pieces differ from a plain SHA-1 of the stream", pl, workers)
			}
		}
	}
}

func TestCreateLargeFileSpansChunks(t *testing.T) {
	// Several reader chunks (4 MiB) and a short last piece, hashed by several workers.
	dir := t.TempDir()
	size := 3*chunkSize + 3*16<<10 + 7
	writeTree(t, dir, map[string]int{"big": size})
	info := mustInfo(t, mustCreate(t, filepath.Join(dir, "big"), Options{PieceLength: 16 << 10, Workers: 4}))
	if info.IsDir() || info.Length != int64(size) || info.Name != "big" {
		t.Fatalf("single-file layout wrong: dir=%v length=%d name=%q", info.IsDir(), info.Length, info.Name)
	}
	if !bytes.Equal(info.Pieces, referencePieces(content("big", size), 16<<10)) {
		t.Error("pieces differ from a plain SHA-1 of the file")
	}
}

func TestCreateDeterministic(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, trickyTree)
	a := mustCreate(t, dir, Options{Workers: 1})
	b := mustCreate(t, dir, Options{Workers: 5, Comment: "other", Trackers: []string{"http://127.0.0.1:1/announce"}})
	if !bytes.Equal(a.InfoBytes, b.InfoBytes) || InfoHash(a) != InfoHash(b) {
		t.Errorf("two runs over one tree gave infohashes %x and %x", InfoHash(a), InfoHash(b))
	}
	// Touching a byte changes it: the test above can fail.
	writeTree(t, dir, map[string]int{"a.b": 2})
	if c := mustCreate(t, dir, Options{}); InfoHash(c) == InfoHash(a) {
		t.Error("changing a file kept the infohash")
	}
}

func TestCreateSymlinksAndSpecialFiles(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]int{"secret": 100})
	base := t.TempDir()
	dir := filepath.Join(base, "share")
	writeTree(t, dir, map[string]int{"real": 1000, "sub/inner": 300, ".hidden": 10, "zero": 0})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("real", filepath.Join(dir, "link-inside")))                          // followed
	must(os.Symlink("../real", filepath.Join(dir, "sub", "link-up")))                    // followed
	must(os.Symlink(filepath.Join(dir, "sub", "inner"), filepath.Join(dir, "link-abs"))) // followed
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link-out")))   // skipped
	must(os.Symlink("../../"+filepath.Base(outside), filepath.Join(dir, "link-outdir")))
	must(os.Symlink("sub", filepath.Join(dir, "link-dir")))             // skipped: directory
	must(os.Symlink("nowhere", filepath.Join(dir, "dangling")))         // skipped
	must(os.Symlink("loop", filepath.Join(dir, "loop")))                // skipped
	must(os.MkdirAll(filepath.Join(dir, "empty-dir", "deeper"), 0o755)) // leaves no trace
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))             // skipped, and never opened

	got := filePaths(t, dir, Options{})
	want := []string{".hidden", "link-abs", "link-inside", "real", "sub/inner", "sub/link-up", "zero"}
	if !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	info := mustInfo(t, mustCreate(t, dir, Options{}))
	var stream []byte
	for _, f := range info.Files {
		target := map[string]string{"link-abs": "sub/inner", "link-inside": "real", "sub/link-up": "real"}
		p := strings.Join(f.Path, "/")
		if tp, ok := target[p]; ok {
			p = tp
		}
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil || fi.Size() != f.Length {
			t.Fatalf("%q: length %d, stat %v %v", f.Path, f.Length, fi, err)
		}
		data, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		stream = append(stream, data...)
	}
	if !bytes.Equal(info.Pieces, referencePieces(stream, int(info.PieceLength))) {
		t.Error("symlinked files were not hashed with their targets' content")
	}

	// A symlink given as the path itself is resolved: the tree is its target, the name the link's.
	link := filepath.Join(base, "via-link")
	must(os.Symlink("share", link))
	viaLink := mustInfo(t, mustCreate(t, link, Options{}))
	if viaLink.Name != "via-link" || len(viaLink.Files) != len(want) {
		t.Errorf("via symlink: name %q, %d files; want via-link, %d", viaLink.Name, len(viaLink.Files), len(want))
	}
}

func TestCreateEmpty(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		setup func(p string) error
	}{
		{"empty dir", func(p string) error { return os.MkdirAll(filepath.Join(p, "a", "b"), 0o755) }},
		{"only zero-length files", func(p string) error {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(p, "z"), nil, 0o644)
		}},
		{"zero-length file", func(p string) error { return os.WriteFile(p, nil, 0o644) }},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := tc.setup(p); err != nil {
			t.Fatal(err)
		}
		if _, err := Create(context.Background(), p, Options{}); !errors.Is(err, ErrEmpty) {
			t.Errorf("%s: err %v, want ErrEmpty", tc.name, err)
		}
	}
	if _, err := Create(context.Background(), filepath.Join(dir, "missing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: err %v, want ErrNotExist", err)
	}
}

func TestCreateOptionsChecked(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{"f": 10})
	for _, o := range []Options{
		{PieceLength: 1000},
		{PieceLength: 8 << 10},
		{PieceLength: 32 << 20},
		{PieceLength: -1},
		{PieceLength: 48 << 10},
		{Name: ".."},
		{Name: "a/b"},
	} {
		if _, err := Create(context.Background(), dir, o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("Options%+v: err %v, want ErrBadOptions", o, err)
		}
	}
	info := mustInfo(t, mustCreate(t, dir, Options{Name: "renamed", PieceLength: 16 << 20}))
	if info.Name != "renamed" || info.PieceLength != 16<<20 {
		t.Errorf("name %q piece length %d", info.Name, info.PieceLength)
	}
}

func TestAutoPieceLength(t *testing.T) {
	for _, tc := range []struct{ total, want int64 }{
		{1, 16 << 10},
		{2000 * 16 << 10, 16 << 10},
		{2000*16<<10 + 1, 32 << 10},
		{1 << 30, 1 << 20},        // 1 GiB: 1024 pieces of 1 MiB
		{4 << 30, 4 << 20},        // 4 GiB: 1024 pieces of 4 MiB
		{3 << 30, 2 << 20},        // 3 GiB: 1536 pieces of 2 MiB
		{1 << 40, MaxPieceLength}, // clamped
	} {
		if got := AutoPieceLength(tc.total); got != tc.want {
			t.Errorf("AutoPieceLength(%d) = %d, want %d", tc.total, got, tc.want)
		}
		if n := (tc.total + tc.want - 1) / tc.want; tc.want > MinPieceLength && tc.want < MaxPieceLength && (n <= 1000 || n > 2000) {
			t.Errorf("AutoPieceLength(%d) gives %d pieces", tc.total, n)
		}
	}
}

func TestCreateProgressAndCancel(t *testing.T) {
	dir := t.TempDir()
	size := 5*chunkSize + 1
	writeTree(t, dir, map[string]int{"f": size})
	p := filepath.Join(dir, "f")

	var calls []int64
	mustCreate(t, p, Options{Workers: 2, Progress: func(done, total int64) {
		if total != int64(size) {
			t.Errorf("progress total %d, want %d", total, size)
		}
		calls = append(calls, done)
	}})
	if len(calls) < 2 || !slices.IsSorted(calls) || calls[len(calls)-1] != int64(size) {
		t.Errorf("progress calls %v: want several, increasing, ending at %d", calls, size)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Create(ctx, p, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before: err %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var last int64
	_, err := Create(ctx, p, Options{PieceLength: 16 << 10, Workers: 1, Progress: func(done, total int64) {
		last = done
		cancel() // stop after the first chunk
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled during: err %v", err)
	}
	if last >= int64(size) {
		t.Errorf("hashing went on to the end (%d bytes) after cancel", last)
	}
}

func TestCreateMetaInfoFields(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{"f": 10})
	mi := mustCreate(t, dir, Options{
		Comment:  "hello",
		Trackers: []string{"http://127.0.0.1:1/a", "", "udp://127.0.0.1:2", "http://127.0.0.1:1/a"},
		WebSeeds: []string{"http://127.0.0.1:3/files/"},
	})
	if mi.CreatedBy != "magnetget" || mi.CreationDate == 0 || mi.Comment != "hello" {
		t.Errorf("created by %q date %d comment %q", mi.CreatedBy, mi.CreationDate, mi.Comment)
	}
	if mi.Announce != "http://127.0.0.1:1/a" || len(mi.AnnounceList) != 2 ||
		mi.AnnounceList[0][0] != "http://127.0.0.1:1/a" || mi.AnnounceList[1][0] != "udp://127.0.0.1:2" {
		t.Errorf("announce %q list %q", mi.Announce, mi.AnnounceList)
	}
	if !slices.Equal(mi.UrlList, []string{"http://127.0.0.1:3/files/"}) {
		t.Errorf("url-list %q", mi.UrlList)
	}
	var raw map[string]bencode.Bytes
	if err := bencode.Unmarshal(mi.InfoBytes, &raw); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"files", "name", "piece length", "pieces"}) {
		t.Errorf("info keys %q: want only files, name, piece length, pieces (no private)", keys)
	}

	one := mustCreate(t, dir, Options{Trackers: []string{"http://127.0.0.1:1/a"}})
	if one.Announce != "http://127.0.0.1:1/a" || one.AnnounceList != nil {
		t.Errorf("one tracker: announce %q list %q; want announce only", one.Announce, one.AnnounceList)
	}
}

func TestHashFileShrankWhileHashing(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{"f": 1000})
	// The walk saw 5000 bytes; the file now holds 1000: the torrent would be wrong, so it fails.
	files := []entry{{osPath: filepath.Join(dir, "f"), size: 5000}}
	_, err := hashPieces(context.Background(), files, 5000, 16<<10, 2, nil)
	if err == nil || !strings.Contains(err.Error(), "shrank while hashing") {
		t.Errorf("err %v, want a shrank-while-hashing error", err)
	}
	files[0].osPath = filepath.Join(dir, "gone")
	if _, err := hashPieces(context.Background(), files, 5000, 16<<10, 2, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vanished file: err %v, want ErrNotExist", err)
	}
}
