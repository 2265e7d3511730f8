package storage

import (
	"bytes"
	"errors"
	"github.com/magnetget/magnetget/internal/alloctest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func allPieces(l *Layout) []int {
	m := make([]int, l.NumPieces())
	for i := range m {
		m[i] = i
	}
	return m
}

// hashAll hashes every piece as the swarm's check of existing pieces does; it returns the
// pieces that did not verify.
func hashAll(t *testing.T, s *Storage) (missing []int) {
	t.Helper()
	for i := range s.layout.NumPieces() {
		if ok, _ := s.HashPiece(i, make([]byte, 64)); !ok {
			missing = append(missing, i)
		}
	}
	return missing
}

// Issue 9 row 14: two downloads of one torrent into one directory both wrote the data and the
// resume file. The second is refused while the first runs, and may go once it has ended.
func TestSecondDownloadIsBusy(t *testing.T) {
	info, ih, l, _ := infoOf(t, 100, 250, 250)
	dir := t.TempDir()
	s1, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	want := "another magnetget is downloading t into " + dir
	if !errors.Is(err, ErrBusy) || err.Error() != want {
		t.Fatalf("second download: %v, want ErrBusy %q", err, want)
	}
	// Another torrent into the same directory is fine.
	var other [20]byte
	other[0] = 1
	s3, err := OpenOptions(dir, l, Options{InfoHash: other})
	if err != nil {
		t.Fatalf("another torrent into the same directory: %v", err)
	}
	s3.Close()
	s1.Close()
	if _, err := os.Lstat(filepath.Join(dir, LockName(ih))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file left behind: %v", err)
	}
	s2, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatalf("after the first ended: %v", err)
	}
	s2.Close()
}

// Issue 9 row 14: a file of the same name that is not ours was overwritten silently.
func TestForeignFileNeverOverwritten(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	dir := t.TempDir()
	theirs := bytes.Repeat([]byte("their notes\n"), 30)[:250]
	p := filepath.Join(dir, "t", "d", "a")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, theirs, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	missing := hashAll(t, s)
	err = s.CheckMissing(missing)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("CheckMissing: %v, want ErrExists naming %s and --force", err, p)
	}
	if err := s.WriteAt(data, 0); !errors.Is(err, ErrExists) {
		t.Fatalf("WriteAt over their file: %v, want ErrExists", err)
	}
	if err := s.TrimFiles(nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A rerun does not take it for ours either (the resume state does not claim it).
	s, err = OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckMissing(hashAll(t, s)); !errors.Is(err, ErrExists) {
		t.Fatalf("rerun: %v, want ErrExists", err)
	}
	s.Close()
	if got, _ := os.ReadFile(p); !bytes.Equal(got, theirs) {
		t.Fatal("their file changed")
	}
	// With Force it is overwritten.
	s, err = OpenOptions(dir, l, Options{InfoHash: ih, Info: info, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckMissing(hashAll(t, s)); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data[:250]) {
		t.Fatal("--force did not overwrite")
	}
}

// A torrent's empty file over a non-empty file of theirs: creating it would not harm, but
// trimming it once complete would.
func TestForeignFileInPlaceOfEmptyOne(t *testing.T) {
	info, ih, l, _ := infoOf(t, 100, 250, 0)
	dir := t.TempDir()
	p := filepath.Join(dir, "t", "d", "b")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateEmpty(nil); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateEmpty: %v, want ErrExists", err)
	}
	if err := s.TrimFiles(nil); !errors.Is(err, ErrExists) {
		t.Fatalf("TrimFiles: %v, want ErrExists", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "keep me" {
		t.Fatal("their file changed")
	}
}

// A user re-downloading into a directory that holds the complete data (no resume state):
// the files verify, so they are adopted, not refused; a longer one is trimmed.
func TestExistingDataAdopted(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "t", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "t", "d", "a"), data[:250], 0o644)
	os.WriteFile(filepath.Join(dir, "t", "d", "b"), append(bytes.Clone(data[250:]), "older tail"...), 0o644)
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	missing := hashAll(t, s)
	if len(missing) != 0 {
		t.Fatalf("pieces %v did not verify", missing)
	}
	if err := s.CheckMissing(missing); err != nil {
		t.Fatal(err)
	}
	if err := s.TrimFiles(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(data[:10], 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got, _ := os.ReadFile(filepath.Join(dir, "t", "d", "b")); !bytes.Equal(got, data[250:]) {
		t.Fatal("not trimmed")
	}
}

// Files are claimed in the resume state before they are created, so a crash right after the
// first bytes are written (no resume save yet, nothing verifiable) leaves files a rerun owns.
func TestClaimedBeforeCreated(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	dir := t.TempDir()
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(data[:30], 0); err != nil {
		t.Fatal(err)
	}
	s.Close() // as a kill would: no SaveResume
	s, err = OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CheckMissing(hashAll(t, s)); err != nil {
		t.Fatalf("rerun after a crash: %v", err)
	}
	if err := s.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
}

// Temporary files an interrupted save left are removed when the download opens again; other
// files are left alone.
func TestStaleTempFilesRemoved(t *testing.T) {
	_, ih, l, _ := infoOf(t, 100, 250)
	dir := t.TempDir()
	stale := []string{ResumeName(ih) + ".tmp12345", InfoName(ih) + ".tmpabc"}
	keep := []string{"notes.tmp", ResumeName([20]byte{9}) + ".tmp1"}
	for _, n := range append(stale, keep...) {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644)
	}
	s, err := OpenOptions(dir, l, Options{InfoHash: ih})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, n := range stale {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s left", n)
		}
	}
	for _, n := range keep {
		if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s removed", n)
		}
	}
}

// seedDir writes the torrent's files as a user's own copy and returns a snapshot check.
func seedDir(t *testing.T, data []byte) (dir string, snapshot func() map[string]string) {
	t.Helper()
	dir = t.TempDir()
	os.MkdirAll(filepath.Join(dir, "t", "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "t", "d", "a"), data[:250], 0o644)
	os.WriteFile(filepath.Join(dir, "t", "d", "b"), data[250:], 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "t", "d", "a"), old, old)
	os.Chtimes(filepath.Join(dir, "t", "d", "b"), old, old)
	return dir, func() map[string]string {
		m := map[string]string{}
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil {
				b, _ := os.ReadFile(p)
				m[p] = fi.Mode().String() + fi.ModTime().String() + string(b)
			}
			return nil
		})
		return m
	}
}

func sameSnapshot(t *testing.T, a, b map[string]string) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("the user's directory changed: %d entries, was %d", len(b), len(a))
	}
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("the user's %s changed", k)
		}
	}
}

// Issue 9 row 13: seeding must never change the user's files.
func TestReadOnlyChangesNothing(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	dir, snap := seedDir(t, data)
	before := snap()
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := hashAll(t, s); len(m) != 0 {
		t.Fatalf("pieces %v did not verify", m)
	}
	if err := s.CreateEmpty(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(data[:10], 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt: %v, want ErrReadOnly", err)
	}
	if err := s.TrimFiles(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveResume(ih, func(int) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, before, snap())
}

// The file grew since the torrent was made: it used to be truncated back silently.
func TestReadOnlyGrownFile(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	dir, snap := seedDir(t, data)
	p := filepath.Join(dir, "t", "d", "b")
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(make([]byte, 50))
	f.Close()
	before := snap()
	_, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info, ReadOnly: true})
	want := p + ": 300 bytes, the torrent says 250: wrong directory?"
	if !errors.Is(err, ErrMismatch) || err.Error() != want {
		t.Fatalf("got %v, want ErrMismatch %q", err, want)
	}
	sameSnapshot(t, before, snap())
}

// The wrong directory used to get new empty files, a resume file and "0 B verified" seeding.
func TestReadOnlyWrongDirectory(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "unrelated"), []byte("x"), 0o644)
	_, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info, ReadOnly: true})
	want := "none of the torrent's 2 files is in " + dir + ": wrong directory?"
	if !errors.Is(err, ErrMismatch) || err.Error() != want {
		t.Fatalf("got %v, want ErrMismatch %q", err, want)
	}
	// One file missing of two.
	dir, snap := seedDir(t, data)
	os.Remove(filepath.Join(dir, "t", "d", "a"))
	before := snap()
	_, err = OpenOptions(dir, l, Options{InfoHash: ih, Info: info, ReadOnly: true})
	want = filepath.Join(dir, "t", "d", "a") + ": missing: wrong directory?"
	if !errors.Is(err, ErrMismatch) || err.Error() != want {
		t.Fatalf("got %v, want ErrMismatch %q", err, want)
	}
	sameSnapshot(t, before, snap())
}

// Same sizes, other bytes: verification says so and names the file; nothing is fetched.
func TestReadOnlyChangedContent(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	dir, _ := seedDir(t, data)
	p := filepath.Join(dir, "t", "d", "b")
	b := bytes.Clone(data[250:])
	b[100] ^= 1
	os.WriteFile(p, b, 0o644)
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.CheckMissing(hashAll(t, s))
	if !errors.Is(err, ErrMismatch) || !strings.HasPrefix(err.Error(), p+": 1 of its pieces differ") {
		t.Fatalf("got %v, want ErrMismatch naming %s", err, p)
	}
}

// A user's own tree may hold symlinks inside it (torrentfile.Create follows those): seeding
// reads through them, but never through one leading out of the directory.
func TestReadOnlyInnerSymlinks(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	dir, _ := seedDir(t, data)
	a := filepath.Join(dir, "t", "d", "a")
	os.Rename(a, filepath.Join(dir, "real-a"))
	os.Symlink("../../real-a", a)
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := hashAll(t, s); len(m) != 0 {
		t.Fatalf("pieces %v did not verify through an inner symlink", m)
	}
	s.Close()
	out := t.TempDir()
	os.Rename(filepath.Join(dir, "real-a"), filepath.Join(out, "real-a"))
	os.Remove(a)
	os.Symlink(filepath.Join(out, "real-a"), a)
	if _, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info, ReadOnly: true}); err == nil {
		t.Fatal("a symlink leading out of the seeded directory was followed")
	}
}

// A resume file of any size is read only up to what this torrent's could be.
func TestHugeResumeFileBounded(t *testing.T) {
	info, ih, l, _ := infoOf(t, 100, 250, 250)
	dir := t.TempDir()
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Truncate(s.ResumePath(ih), 1<<30); err != nil {
		t.Fatal(err)
	}
	var st ResumeState
	n := alloctest.Bytes(func() { st, err = s.LoadResume(ih) })
	if !errors.Is(err, ErrDamaged) || st.Verified[0] {
		t.Fatalf("1 GiB resume file: %v", err)
	}
	if n > 1<<20 {
		t.Fatalf("%d bytes allocated reading a 1 GiB resume file", n)
	}
}
