//go:build unix

package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bothResolvers runs fn with openat2 and with the per-element walk used where openat2 is absent.
func bothResolvers(t *testing.T, fn func(t *testing.T, walk bool)) {
	for _, walk := range []bool{false, true} {
		name := "openat2"
		if walk {
			name = "walk"
		}
		t.Run(name, func(t *testing.T) { fn(t, walk) })
	}
}

func openWalk(t *testing.T, dir string, l *Layout, o Options, walk bool) *Storage {
	t.Helper()
	s, err := OpenOptions(dir, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if s.tree != nil {
		s.tree.noOpenat2 = walk
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// outsideFile writes a file of n bytes outside the output directory and returns a check that
// it still holds exactly those bytes.
func outsideFile(t *testing.T, n int) (dir string, check func()) {
	t.Helper()
	dir = t.TempDir()
	want := bytes.Repeat([]byte("precious "), n/9+1)[:n]
	p := filepath.Join(dir, "a")
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, func() {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the file outside the output directory changed (err %v)", err)
		}
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// Issue 9 row 5: a symlinked directory already inside the output directory (t/d -> outside)
// holding a file of the right size. The read path used to open it through the link and the
// write path reused that handle: the file outside was overwritten.
func TestSymlinkedDirInsideOutputNotWritten(t *testing.T) {
	bothResolvers(t, func(t *testing.T, walk bool) {
		l, data := layoutOf(t, 100, 250, 250)
		out := t.TempDir()
		outside, check := outsideFile(t, 250)
		// Relative, as `ln -s` users make them: out and outside are siblings.
		mustSymlink(t, "../../"+filepath.Base(outside), filepath.Join(out, "t", "d"))
		if _, err := os.Stat(filepath.Join(out, "t", "d", "a")); err != nil {
			t.Fatal(err)
		}
		s := openWalk(t, out, l, Options{}, walk)
		// The read path first, as the swarm's check of existing pieces does.
		if ok, _ := s.HashPiece(0, make([]byte, 64)); ok {
			t.Fatal("a piece verified through a symlink")
		}
		if err := s.ReadAt(make([]byte, 10), 0); err == nil {
			t.Fatal("read through a symlinked directory succeeded")
		}
		if st := s.Stat(0); st.Size != -1 {
			t.Fatalf("Stat through a symlink: %+v, want absent", st)
		}
		if err := s.WriteAt(data, 0); !errors.Is(err, ErrUnsafePath) {
			t.Fatalf("WriteAt through a symlinked directory: %v, want ErrUnsafePath", err)
		}
		if err := s.TrimFiles(nil); err != nil && !errors.Is(err, ErrUnsafePath) {
			t.Fatalf("TrimFiles: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		check()
	})
}

func TestSymlinkedFileNotWritten(t *testing.T) {
	bothResolvers(t, func(t *testing.T, walk bool) {
		l, data := layoutOf(t, 100, 250, 250)
		out := t.TempDir()
		outside, check := outsideFile(t, 250)
		mustSymlink(t, filepath.Join(outside, "a"), filepath.Join(out, "t", "d", "a"))
		s := openWalk(t, out, l, Options{}, walk)
		if err := s.ReadAt(make([]byte, 10), 0); err == nil {
			t.Fatal("read through a symlinked file succeeded")
		}
		if err := s.WriteAt(data[:250], 0); !errors.Is(err, ErrUnsafePath) {
			t.Fatalf("WriteAt through a symlinked file: %v, want ErrUnsafePath", err)
		}
		// The other file, reached without a link, is written.
		if err := s.WriteAt(data[250:], 250); err != nil {
			t.Fatalf("WriteAt beside the link: %v", err)
		}
		s.Close()
		check()
	})
}

// A symlink put in place after the download started, even one pointing inside the output
// directory, is not followed either: only the descriptors resolve names.
func TestSymlinkSwappedInAfterStart(t *testing.T) {
	bothResolvers(t, func(t *testing.T, walk bool) {
		l, data := layoutOf(t, 100, 250, 250)
		out := t.TempDir()
		outside, check := outsideFile(t, 250)
		s := openWalk(t, out, l, Options{}, walk)
		if err := s.WriteAt(data[:100], 0); err != nil { // creates t/d and t/d/a
			t.Fatal(err)
		}
		s.mu.Lock()
		s.evictLocked() // the handle of a is idle: closed, so the next write opens again
		s.mu.Unlock()
		if err := os.Rename(filepath.Join(out, "t", "d"), filepath.Join(out, "t", "moved")); err != nil {
			t.Fatal(err)
		}
		mustSymlink(t, outside, filepath.Join(out, "t", "d"))
		if err := s.WriteAt(data[100:], 100); !errors.Is(err, ErrUnsafePath) {
			t.Fatalf("WriteAt after a symlink was swapped in: %v, want ErrUnsafePath", err)
		}
		s.Close()
		check()
		if ents, _ := os.ReadDir(outside); len(ents) != 1 {
			t.Fatalf("created outside: %v", ents)
		}
	})
}

// A FIFO (or device) in a file's place must neither hang us nor be written.
func TestSpecialFileInPlaceRefused(t *testing.T) {
	bothResolvers(t, func(t *testing.T, walk bool) {
		l, data := layoutOf(t, 100, 250)
		out := t.TempDir()
		if err := os.MkdirAll(filepath.Join(out, "t", "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(filepath.Join(out, "t", "d", "a"), 0o644); err != nil {
			t.Skip("no FIFOs here:", err)
		}
		s := openWalk(t, out, l, Options{}, walk)
		done := make(chan error, 1)
		go func() {
			if err := s.ReadAt(make([]byte, 10), 0); err == nil {
				done <- errors.New("read from a FIFO succeeded")
				return
			}
			done <- s.WriteAt(data, 0)
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("WriteAt into a FIFO: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("I/O on a FIFO in a file's place hangs")
		}
	})
}

// A hard link to a file outside, planted before the download: no symlink rule catches it, but
// the file is not ours (nothing claims it, its content does not verify), so it is not written.
func TestHardLinkInOutputNotWritten(t *testing.T) {
	info, ih, l, data := infoOf(t, 100, 250, 250)
	out := t.TempDir()
	outside, check := outsideFile(t, 250)
	if err := os.MkdirAll(filepath.Join(out, "t", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(outside, "a"), filepath.Join(out, "t", "d", "a")); err != nil {
		t.Skip("no hard links across these directories:", err)
	}
	s := openWalk(t, out, l, Options{InfoHash: ih, Info: info}, false)
	if err := s.CheckMissing(hashAll(t, s)); !errors.Is(err, ErrExists) {
		t.Fatalf("CheckMissing: %v, want ErrExists", err)
	}
	if err := s.WriteAt(data, 0); !errors.Is(err, ErrExists) {
		t.Fatalf("WriteAt into a hard link: %v, want ErrExists", err)
	}
	s.Close()
	check()
}
