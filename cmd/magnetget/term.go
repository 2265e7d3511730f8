package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// esc makes an untrusted string safe to print on a terminal or a log line.
// Torrent names, file paths, client names and error texts come from
// strangers; raw, an ESC sequence in a name could move the cursor, rewrite
// earlier lines, set the window title or (on some terminals) answer back
// into the shell's input. Every control character (C0, DEL, C1), an invalid
// UTF-8 byte and the bidirectional overrides that reorder what is shown are
// written as Go escapes (\x1b, \r, \u202e); everything else, spaces and
// non-ASCII letters included, is left as it is, so ordinary names read
// naturally.
func esc(s string) string {
	clean := true
	for _, r := range s {
		if needsEscape(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case needsEscape(r):
			switch r {
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				if r < 0x80 {
					fmt.Fprintf(&b, `\x%02x`, r)
				} else {
					fmt.Fprintf(&b, `\u%04x`, r)
				}
			}
		default:
			b.WriteRune(r)
		}
		i += n
	}
	return b.String()
}

func needsEscape(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true
	case unicode.IsControl(r): // C0, DEL and C1
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		// Bidirectional overrides and marks: they reorder the rest of the line.
		return true
	}
	return false
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// termWidth returns w's width in columns, 0 when unknown.
func termWidth(w io.Writer) int {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 0
	}
	return int(ws.Col)
}

// onResize calls fn on every SIGWINCH (the terminal changed size) until stop.
func onResize(fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-ch:
				fn()
			}
		}
	}()
	return func() { signal.Stop(ch); close(quit); <-done }
}

// errBrokenPipe is the cause of a context cancelled because the reader of
// stdout or stderr went away.
var errBrokenPipe = errors.New("output pipe closed")

// pipeWatch is stdout or stderr: a write that fails with EPIPE (the reader
// is gone) cancels the command's context, so it stops the way Ctrl-C stops
// it, saving its state, instead of running on with no one listening.
type pipeWatch struct {
	*os.File
	cancel context.CancelCauseFunc
}

func (p *pipeWatch) Write(b []byte) (int, error) {
	n, err := p.File.Write(b)
	if err != nil && errors.Is(err, syscall.EPIPE) {
		p.cancel(errBrokenPipe)
	}
	return n, err
}
