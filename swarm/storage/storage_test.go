package storage

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// layoutOf builds a layout with the given file sizes and correct hashes of data.
func layoutOf(t *testing.T, pieceLen int64, sizes ...int64) (*Layout, []byte) {
	t.Helper()
	mi := &metainfo.Info{Name: "t", PieceLength: pieceLen}
	var total int64
	for i, n := range sizes {
		mi.Files = append(mi.Files, metainfo.FileInfo{Length: n, Path: []string{"d", string(rune('a' + i))}})
		total += n
	}
	data := make([]byte, total)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	for off := int64(0); off < total; off += pieceLen {
		h := sha1.Sum(data[off:min(off+pieceLen, total)])
		mi.Pieces = append(mi.Pieces, h[:]...)
	}
	l, err := NewLayout(mi)
	if err != nil {
		t.Fatal(err)
	}
	return l, data
}

func TestWriteReadAcrossFiles(t *testing.T) {
	// Odd sizes: no file starts on a page boundary; one file is empty.
	l, data := layoutOf(t, 1000, 4097, 0, 3, 12289, 1)
	dir := t.TempDir()
	s, err := Open(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateEmpty(nil); err != nil {
		t.Fatal(err)
	}
	// Write in pieces, out of order.
	for i := l.NumPieces() - 1; i >= 0; i-- {
		off := int64(i) * l.PieceLength
		if err := s.WriteAt(data[off:off+l.PieceSize(i)], off); err != nil {
			t.Fatal(err)
		}
	}
	for i := range l.NumPieces() {
		ok, err := s.HashPiece(i, make([]byte, 333))
		if err != nil || !ok {
			t.Fatalf("piece %d: ok %v err %v", i, ok, err)
		}
	}
	got := make([]byte, 5000)
	if err := s.ReadAt(got, 4000); err != nil || !bytes.Equal(got, data[4000:9000]) {
		t.Fatalf("ReadAt across files: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var off int64
	for _, f := range l.Files {
		b, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		if !bytes.Equal(b, data[off:off+f.Length]) {
			t.Fatalf("%s: wrong content", f.Path)
		}
		off += f.Length
	}
	if err := s.WriteAt([]byte{1}, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
}

func TestReadMissingFile(t *testing.T) {
	l, _ := layoutOf(t, 100, 50, 50)
	s, err := Open(t.TempDir(), l)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.ReadAt(make([]byte, 10), 0); err == nil {
		t.Fatal("read of a file never written succeeded")
	}
	if err := s.ReadAt(make([]byte, 10), 95); err == nil {
		t.Fatal("read past the end succeeded")
	}
}

func TestUnwritableDir(t *testing.T) {
	l, _ := layoutOf(t, 100, 50)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() == 0 {
		// Root ignores directory permissions; nobody, root included, can
		// create files in procfs.
		dir = "/proc/self/magnetget-unwritable"
	}
	s, err := Open(dir, l)
	if err != nil {
		return // refused up front: fine
	}
	defer s.Close()
	if err := s.WriteAt(make([]byte, 10), 0); err == nil {
		t.Fatal("write into a read-only directory succeeded")
	}
}

func TestFileAsDirectoryRefused(t *testing.T) {
	mi := &metainfo.Info{Name: "t", PieceLength: 16, Pieces: make([]byte, 20),
		Files: []metainfo.FileInfo{{Length: 1, Path: []string{"a"}}, {Length: 1, Path: []string{"a", "b"}}}}
	if _, err := NewLayout(mi); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("NewLayout: %v, want ErrUnsafePath", err)
	}
	mi.Files[1].Path = []string{"a"}
	if _, err := NewLayout(mi); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("duplicate path: %v, want ErrUnsafePath", err)
	}
}

func TestBadGeometryRefused(t *testing.T) {
	for name, mi := range map[string]*metainfo.Info{
		"no piece length": {Name: "t", Length: 10, Pieces: make([]byte, 20)},
		"too few hashes":  {Name: "t", Length: 100, PieceLength: 10, Pieces: make([]byte, 20)},
		"ragged hashes":   {Name: "t", Length: 10, PieceLength: 10, Pieces: make([]byte, 21)},
		"negative length": {Name: "t", PieceLength: 10, Files: []metainfo.FileInfo{{Length: -5, Path: []string{"x"}}}},
	} {
		if _, err := NewLayout(mi); !errors.Is(err, ErrBadInfo) {
			t.Errorf("%s: %v, want ErrBadInfo", name, err)
		}
	}
}

func TestSymlinkEscapeRefused(t *testing.T) {
	l, _ := layoutOf(t, 100, 50)
	dir := t.TempDir()
	outside := t.TempDir()
	// The torrent's directory "t" is a symlink pointing outside the output directory.
	if err := os.Symlink(outside, filepath.Join(dir, "t")); err != nil {
		t.Skip("symlinks unsupported:", err)
	}
	s, err := Open(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WriteAt(make([]byte, 10), 0); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("WriteAt through an escaping symlink: %v, want ErrUnsafePath", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written outside: %v", entries)
	}
}

func TestResumeTrustsOnlyUnchangedFiles(t *testing.T) {
	l, data := layoutOf(t, 100, 250, 250) // piece 2 spans both files
	dir := t.TempDir()
	s, err := Open(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	var ih [20]byte
	if err := s.SaveResume(ih, func(i int) bool { return i != 4 }); err != nil {
		t.Fatal(err)
	}
	st, err := s.LoadResume(ih)
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range st.Verified {
		if !st.Known[i] {
			t.Fatalf("piece %d not known right after saving", i)
		}
		if ok != (i != 4) {
			t.Fatalf("piece %d trusted=%v right after saving", i, ok)
		}
	}
	// Touch the second file: pieces overlapping it are no longer trusted.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(s.FilePath(1), later, later); err != nil {
		t.Fatal(err)
	}
	st, _ = s.LoadResume(ih)
	want := []bool{true, true, false, false, false}
	for i := range want {
		if st.Verified[i] != want[i] || st.Known[i] != want[i] {
			t.Fatalf("after touching file 1: %+v, want verified and known %v", st, want)
		}
	}
	var other [20]byte
	other[0] = 1
	if st, err := s.LoadResume(other); err != nil || st.Verified[0] || st.Known[0] {
		t.Fatalf("another infohash: %+v, err %v", st, err)
	}
	if err := os.WriteFile(s.ResumePath(ih), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := s.LoadResume(ih); err == nil || st.Verified[0] || st.Known[0] {
		t.Fatalf("damaged resume file: %+v, err %v", st, err)
	}
	s.Close()
}
