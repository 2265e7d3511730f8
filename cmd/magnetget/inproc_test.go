package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/clitest"
)

// inproc is one in-process run of the CLI through run().
type inproc struct {
	stdout, stderr *clitest.SyncBuffer
	done           chan int
	cancel         context.CancelFunc
}

// startIn runs magnetget args in-process in the background; cancelling
// stands for Ctrl-C. It is cancelled and waited for at cleanup.
func startIn(t *testing.T, args ...string) *inproc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inproc{stdout: &clitest.SyncBuffer{}, stderr: &clitest.SyncBuffer{}, done: make(chan int, 1), cancel: cancel}
	go func() { p.done <- run(ctx, append([]string{"magnetget"}, args...), p.stdout, p.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-p.done:
			p.done <- code
		case <-time.After(15 * time.Second):
			t.Errorf("magnetget %v did not stop within 15s of cancel\nstderr:\n%s", args, p.stderr.String())
		}
	})
	return p
}

// wait waits up to d for the run to end and returns its exit status.
func (p *inproc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case code := <-p.done:
		p.done <- code
		return code
	case <-time.After(d):
		t.Fatalf("still running after %v\nstdout:\n%s\nstderr:\n%s", d, p.stdout.String(), p.stderr.String())
		return -1
	}
}

// runIn runs magnetget args in-process to completion within d.
func runIn(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	p := startIn(t, args...)
	code := p.wait(t, d)
	return result{p.stdout.String(), p.stderr.String(), code}
}

// offline are flags that keep a command off any DHT: no bootstrap node and
// a fresh data dir.
func offline(t *testing.T) []string {
	return []string{"--bootstrap-file", "/dev/null", "--data-dir", t.TempDir(), "--listen", "/ip4/127.0.0.1/udp/0"}
}

func args(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			out = append(out, v)
		case []string:
			out = append(out, v...)
		}
	}
	return out
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// magnetLine waits for the magnet a seed prints.
func magnetLine(t *testing.T, p *inproc) string {
	t.Helper()
	var line string
	waitFor(t, 30*time.Second, "the magnet", func() bool {
		for _, l := range lines(p.stdout.String()) {
			if strings.HasPrefix(l, "magnet:?") {
				line = l
				return true
			}
		}
		return false
	})
	return line
}
