package realclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Sentinel errors.
var (
	// ErrNotInstalled: the client binary or python module is missing.
	// Tests skip on it (unless CI=true).
	ErrNotInstalled = errors.New("client not installed")
	// ErrClient: the client reported a failure of its own.
	ErrClient = errors.New("client failed")
	// ErrExited: the process exited before doing what was asked.
	ErrExited = errors.New("client exited")
	// ErrClosed: Close was called.
	ErrClosed = errors.New("client closed")
	// ErrNotLoopback: a config names an address or tracker outside
	// 127.0.0.0/8 or ::1; nothing here may leave the machine.
	ErrNotLoopback = errors.New("address is not loopback")
)

// Python is the interpreter that has python3-libtorrent (Debian's package is
// built for the system python, not whatever python3 is first in PATH).
const Python = "/usr/bin/python3"

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discard
	}
	return l
}

var (
	ltOnce sync.Once
	ltErr  error
)

// LibtorrentAvailable reports whether /usr/bin/python3 can import
// libtorrent; the error wraps ErrNotInstalled when not.
func LibtorrentAvailable() error {
	ltOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, Python, "-c", "import libtorrent; print(libtorrent.__version__)").CombinedOutput()
		if err != nil {
			ltErr = fmt.Errorf("%w: %s -c 'import libtorrent': %v: %s (apt-get install python3-libtorrent)",
				ErrNotInstalled, Python, err, strings.TrimSpace(string(out)))
		}
	})
	return ltErr
}

func lookPath(bin, pkg string) error {
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("%w: %s: %v (apt-get install %s)", ErrNotInstalled, bin, err, pkg)
	}
	return nil
}

// Aria2Available reports whether aria2c is in PATH.
func Aria2Available() error { return lookPath("aria2c", "aria2") }

// TransmissionAvailable reports whether transmission-show and
// transmission-cli are in PATH.
func TransmissionAvailable() error {
	if err := lookPath("transmission-show", "transmission-cli"); err != nil {
		return err
	}
	return lookPath("transmission-cli", "transmission-cli")
}

// MktorrentAvailable reports whether mktorrent is in PATH.
func MktorrentAvailable() error { return lookPath("mktorrent", "mktorrent") }
