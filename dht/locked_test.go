//go:build unix

package dht_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/routing"
)

// A routing.db locked by another process (bbolt holds an flock; this test takes the same lock
// the way a second magnetget would) does not hang New: the node warns and starts fresh.
func TestLockedStateFile(t *testing.T) {
	state := filepath.Join(t.TempDir(), "routing.db")
	savedID := randomID(t)
	if err := routing.Save(state, routing.State{NodeID: savedID}, 10); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock: %v", err)
	}

	start := time.Now()
	if _, err := routing.Load(state); !errors.Is(err, routing.ErrLocked) {
		t.Fatalf("Load of a locked file: %v, want ErrLocked", err)
	}
	t.Logf("Load gave up after %v", time.Since(start))

	var logs logBuffer
	n, err := dht.New(dht.Config{Addr: addrFor(242), StateFile: state, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("New with a locked state file: %v", err)
	}
	if n.ID() == savedID || n.ID() == ([20]byte{}) {
		t.Fatalf("node id %x: want a fresh random id", n.ID())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "locked") {
		t.Fatalf("no warning about the lock: %q", logs.String())
	}
	// The node runs from memory and leaves the other process's file alone.
	if err := n.Save(); err != nil {
		t.Fatalf("Save of an in-memory node: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if st, err := routing.Load(state); err != nil || st.NodeID != savedID {
		t.Fatalf("Load after unlock: id %x (want the other process's %x), %v", st.NodeID, savedID, err)
	}
}
