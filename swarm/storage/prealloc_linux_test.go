package storage

import (
	"bytes"
	"os"
	"syscall"
	"testing"
)

// TestPreallocateKeepsSizes checks that preallocation is invisible in file sizes (a partial
// file must still look partial to resume checks), that only the chosen file has its space
// reserved, and that data written is read back intact.
func TestPreallocateKeepsSizes(t *testing.T) {
	const big = 1 << 20
	l, data := layoutOf(t, 1<<16, big, big)
	dir := t.TempDir()
	s, err := Open(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	s.Preallocate(func(f int) bool { return f == 0 })
	supported := preallocWorks(t, dir, big)
	// The first 64 KiB of each file.
	for _, off := range []int64{0, big} {
		if err := s.WriteAt(data[off:off+1<<16], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	for f := range 2 {
		fi, err := os.Stat(s.FilePath(f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != 1<<16 {
			t.Errorf("file %d is %d bytes after writing 64 KiB, want 65536", f, fi.Size())
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		reserved := st.Blocks * 512
		if f == 0 && supported && reserved < big {
			t.Errorf("chosen file reserves %d bytes, want all %d", reserved, big)
		}
		if f == 1 && reserved >= big {
			t.Errorf("file not chosen reserves %d bytes", reserved)
		}
	}
	got := make([]byte, 1<<16)
	if err := s.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[:1<<16]) {
		t.Error("data read back differs")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// preallocWorks reports whether the filesystem under dir honours preallocation at all.
func preallocWorks(t *testing.T, dir string, n int64) bool {
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	preallocate(f, n)
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Blocks*512 >= n
}
