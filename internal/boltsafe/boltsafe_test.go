package boltsafe

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Guard turns a real SIGBUS (a mapped page past the end of a truncated file) into ErrCorrupt.
// Without SetPanicOnFault this is "fatal error: fault" and the process dies.
func TestGuardRecoversFault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	psz := os.Getpagesize()
	if err := os.WriteFile(path, make([]byte, 4*psz), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, 4*psz, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	var sink byte
	err = Guard(func() error { sink = m[3*psz]; return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Guard = %v (read %d), want ErrCorrupt", err, sink)
	}
	if err := Guard(func() error { panic("bbolt assertion") }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Guard(panic) = %v", err)
	}
	want := errors.New("plain")
	if err := Guard(func() error { return want }); err != want {
		t.Fatalf("Guard passes errors through: %v", err)
	}
}

func TestOpenFreshAndValid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.db")
	db, err := Open(path, nil) // missing: created
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("b"))
		if err != nil {
			return err
		}
		for i := range 2000 {
			if err := b.Put([]byte{byte(i), byte(i >> 8)}, make([]byte, 100)); err != nil {
				return err
			}
		}
		in, err := b.CreateBucket([]byte("inline"))
		if err != nil {
			return err
		}
		return in.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := Check(path); err != nil {
		t.Fatalf("Check of a valid file: %v", err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(empty, nil); err != nil {
		t.Fatalf("Open(empty) = %v", err)
	} else {
		db.Close()
	}
	if _, err := Open(filepath.Join(dir, "missing.db"), &bolt.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only Open of a missing file succeeded")
	}
}

func TestOpenDamaged(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"text":      []byte("not a database"),
		"one page":  make([]byte, 4096),
		"zeros":     make([]byte, 64<<10),
		"odd bytes": make([]byte, 4*4096+1),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Open = %v, want ErrCorrupt", name, err)
		}
		aside, err := MoveAside(path)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(aside); len(b) != len(content) {
			t.Errorf("%s: moved aside, %d bytes kept of %d", name, len(b), len(content))
		}
	}
}

// BenchmarkCheck: the cost Open adds, on a file of 20,000 keys (about 1,000 pages).
func BenchmarkCheck(b *testing.B) {
	path := filepath.Join(b.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := range 20000 {
			if err := bk.Put([]byte{byte(i), byte(i >> 8), byte(i >> 16)}, make([]byte, 150)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	for b.Loop() {
		if err := Check(path); err != nil {
			b.Fatal(err)
		}
	}
}
