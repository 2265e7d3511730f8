package main

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/magnetget/magnetget/internal/clitest"
)

// openPTY opens a pseudo-terminal cols columns wide. What is written to
// the returned terminal end collects in out (as a terminal would show it,
// newlines as CRLF); both ends are closed at cleanup.
func openPTY(t *testing.T, cols int) (term *os.File, out *clitest.SyncBuffer) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: 24}); err != nil {
		t.Fatal(err)
	}
	out = &clitest.SyncBuffer{}
	done := make(chan struct{})
	go func() { io.Copy(out, m); close(done) }()
	t.Cleanup(func() { s.Close(); m.Close(); <-done })
	return s, out
}
