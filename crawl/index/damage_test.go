package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/magnetget/magnetget/internal/alloctest"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bigIndex writes an index of n records with metadata and returns its path.
func bigIndex(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crawl.db")
	x, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		ih := ihOf(fmt.Sprint(i))
		x.Observe(ih, Sampled, netip.AddrPort{}, t0)
		x.SetFetched(ih, Metadata{Name: strings.Repeat("n", 40), Size: 1, Files: []File{{Path: []string{"f"}, Length: 1}}}, t0)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// inChild runs fn in a fresh copy of the test binary, so a fatal fault
// (SIGBUS cannot be recovered) fails the test instead of killing the run.
// It returns the child's combined output and whether it exited 0.
func inChild(t *testing.T, name string, path string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CRAWL_DAMAGE_CHILD="+name, "CRAWL_DAMAGE_PATH="+path)
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// TestMain runs the child half of the damage tests when inChild starts the
// test binary for it, and the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv("CRAWL_DAMAGE_CHILD") != "" {
		damageChild()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// damageChild opens the index, reads it through every path (Get, Stats,
// export, Claim) and closes it, printing the errors.
func damageChild() {
	path := os.Getenv("CRAWL_DAMAGE_PATH")
	x, err := Open(path, Options{})
	fmt.Printf("open: %v\n", err)
	if x == nil {
		return
	}
	_, _, err = x.Get(ihOf("7"))
	fmt.Printf("get: %v\n", err)
	_, err = x.Stats()
	fmt.Printf("stats: %v\n", err)
	fmt.Printf("export: %v\n", x.ExportJSONL(io.Discard))
	fmt.Printf("csv: %v\n", x.ExportCSV(io.Discard))
	fmt.Printf("close: %v\n", x.Close())
}

// TestTruncatedFileMovedAside: a crawl.db cut short (issue 9 row 6) used to
// die with "fatal error: fault" (SIGBUS from bbolt's mmap) on every run. It
// is detected before bbolt maps it, moved aside with its bytes intact (the
// error names where), and a fresh index is used.
func TestTruncatedFileMovedAside(t *testing.T) {
	path := bigIndex(t, 3000)
	fi, _ := os.Stat(path)
	if fi.Size() < 64<<10 {
		t.Fatalf("index only %d bytes", fi.Size())
	}
	if err := os.Truncate(path, 32<<10); err != nil {
		t.Fatal(err)
	}
	damaged, _ := os.ReadFile(path)
	out, ok := inChild(t, "truncated", path)
	if !ok || strings.Contains(out, "fatal error") {
		t.Fatalf("opening a truncated index crashed:\n%s", out)
	}
	if !strings.Contains(out, "moved aside to") || !strings.Contains(out, "truncated") {
		t.Errorf("the error does not say the file was truncated and where it went:\n%s", out)
	}
	asides, _ := filepath.Glob(path + ".corrupt-*")
	if len(asides) != 1 {
		t.Fatalf("moved-aside files: %v", asides)
	}
	if b, _ := os.ReadFile(asides[0]); !bytes.Equal(b, damaged) {
		t.Error("the moved-aside file does not hold the damaged bytes")
	}
	x := openT(t, path, Options{})
	if st, err := x.Stats(); err != nil || st.Infohashes != 0 {
		t.Errorf("fresh index: %+v, %v", st, err)
	}
}

// TestDamagedPagesNoPanic: garbage over the index's data pages (meta pages
// intact) must not crash open, get, stats or export; whatever is found
// damaged is reported and the file moved aside, never deleted.
func TestDamagedPagesNoPanic(t *testing.T) {
	for _, fill := range []byte{0x00, 0xff, 0x5a} {
		t.Run(fmt.Sprintf("fill%02x", fill), func(t *testing.T) {
			path := bigIndex(t, 3000)
			b, _ := os.ReadFile(path)
			for i := 4 << 12; i < len(b)-4096; i += 3 << 12 {
				for j := 0; j < 4096; j++ {
					b[i+j] = fill ^ byte(j*7)
				}
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			out, ok := inChild(t, "pages", path)
			if !ok || strings.Contains(out, "panic") || strings.Contains(out, "fatal error") {
				t.Fatalf("reading a damaged index crashed:\n%s", out)
			}
			if strings.Contains(out, "ErrCorrupt") || strings.Contains(out, "corrupt") {
				asides, _ := filepath.Glob(path + ".corrupt-*")
				if len(asides) != 1 {
					t.Errorf("reported damage but kept no copy aside: %v\n%s", asides, out)
				}
			}
			t.Logf("%s", out)
		})
	}
}

// FuzzOpenFile: whole crawl.db files. Opening, reading and exporting any
// bytes must not crash, and must not allocate more than a small multiple
// of the file (plus bbolt's fixed costs).
func FuzzOpenFile(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.db")
	x, err := Open(seed, Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 20 {
		x.Observe(ihOf(fmt.Sprint(i)), Announce, netip.MustParseAddrPort("127.0.0.1:1"), t0)
	}
	x.SetFetched(ihOf("1"), Metadata{Name: "n", Size: 1, Files: []File{{Path: []string{"a"}, Length: 1}}}, t0)
	x.Close()
	b, _ := os.ReadFile(seed)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "crawl.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		alloc := alloctest.Bytes(func() {
			x, err := Open(path, Options{NoSync: true})
			if x == nil {
				if err == nil {
					t.Fatal("no index and no error")
				}
				return
			}
			x.Stats()
			x.ExportJSONL(io.Discard)
			x.PrunePeers(context.Background()) // walks peerexp and rewrites records
			if err := x.Close(); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("close: %v", err)
			}
		})
		if limit := uint64(64*len(data) + 4<<20); alloc > limit {
			t.Fatalf("%d-byte file: %d bytes allocated (limit %d)", len(data), alloc, limit)
		}
	})
}
