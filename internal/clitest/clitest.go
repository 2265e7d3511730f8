// Package clitest helps tests that run the magnetget binary as users do:
// it builds the binary once per test package and collects a child's output
// safely while the test reads it. Only tests import it.
package clitest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// Build compiles the magnetget command in pkgDir (a path relative to the
// calling test's package directory, e.g. "../cmd/magnetget") into a
// temporary directory. cleanup removes it.
func Build(pkgDir string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "magnetget-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "magnetget")
	if out, err := exec.Command("go", "build", "-o", bin, pkgDir).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building magnetget: %w\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// SyncBuffer is a bytes.Buffer that a child process writes while the test
// reads it.
type SyncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
