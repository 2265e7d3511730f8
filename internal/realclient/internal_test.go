package realclient

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckMagnetRefusesOffMachineTargets(t *testing.T) {
	ih := "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"
	for _, m := range []string{
		ih,
		ih + "&tr=http://127.0.0.1:8000/announce",
		ih + "&tr=udp://[::1]:6969",
		ih + "&x.pe=127.0.100.1:6881",
	} {
		if err := checkMagnet(m); err != nil {
			t.Errorf("checkMagnet(%q) = %v, want nil", m, err)
		}
	}
	for _, m := range []string{
		ih + "&tr=http://tracker.example.org/announce", // a name: never resolved
		ih + "&tr=udp://10.0.0.1:6969",
		ih + "&ws=http://192.0.2.1/file",
		ih + "&x.pe=8.8.8.8:6881",
		ih + "&x.pe=somehost:6881",
	} {
		if err := checkMagnet(m); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("checkMagnet(%q) = %v, want ErrNotLoopback", m, err)
		}
	}
	if err := checkMagnet("http://127.0.0.1/"); err == nil {
		t.Error("checkMagnet accepted an http URL")
	}
}

func TestConfigsRefuseNonLoopback(t *testing.T) {
	ctx := t.Context()
	if _, err := LibtorrentDownload(ctx, DownloadConfig{Magnet: "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567", Dir: t.TempDir(), Peers: parseAddrs([]string{"192.0.2.1:1"})}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("LibtorrentDownload with a public peer: %v, want ErrNotLoopback", err)
	}
	if _, err := StartLibtorrentDHT(ctx, DHTConfig{Nodes: 2, Bootstrap: parseAddrs([]string{"192.0.2.1:6881"})}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("StartLibtorrentDHT with a public bootstrap node: %v, want ErrNotLoopback", err)
	}
	if _, err := Aria2Download(ctx, Aria2Config{URI: "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&tr=http://192.0.2.1/a", Dir: t.TempDir()}); err == nil {
		t.Error("Aria2Download accepted a public tracker")
	}
}

func shProc(t *testing.T, ctx context.Context, script string, lifetime time.Duration) *proc {
	t.Helper()
	p, err := startProc(ctx, procConfig{name: "sh", path: "/bin/sh", args: []string{"-c", script}, lifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Close kills the whole process group, including children the client
// forked, and waits.
func TestProcCloseKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	p := shProc(t, t.Context(), "sleep 300 & echo $! > "+pidFile+"; wait", time.Minute)
	var child int
	for range 200 {
		b, err := os.ReadFile(pidFile)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			if _, err := fmt.Sscan(string(b), &child); err == nil {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("child pid never written")
	}
	p.Close()
	// The child was killed with the group: give the kernel a moment to
	// reap it (it is re-parented), then it must be gone.
	deadline := time.Now().Add(5 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d still alive after Close", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie (killed, not yet reaped by
// whatever pid 1 is here) counts as dead.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...; comm may hold spaces, so cut at ')'.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func TestProcLifetimeAndErrors(t *testing.T) {
	p := shProc(t, t.Context(), "sleep 300", 200*time.Millisecond)
	if err := p.Wait(t.Context()); err == nil {
		t.Fatal("a process that outlived its lifetime reported success")
	}
	p = shProc(t, t.Context(), "echo boom >&2; exit 3", time.Minute)
	err := p.Wait(t.Context())
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Wait = %v, want ErrExited with the output", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	p = shProc(t, context.Background(), "sleep 300", time.Minute)
	if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with an expiring ctx = %v, want DeadlineExceeded", err)
	}
}

// A JSON "error" event becomes ErrClient with its text; lines that are
// not events are kept for error messages.
func TestProcEvents(t *testing.T) {
	var got []string
	p, err := startProc(t.Context(), procConfig{
		name: "sh", path: "/bin/sh", json: true,
		args:    []string{"-c", `echo '{"ev":"ready","t":0.1}'; echo 'not json'; echo '{"ev":"error","error":"disk full"}'; exit 3`},
		onEvent: func(ev event) { got = append(got, ev.Ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Wait(t.Context())
	if !errors.Is(err, ErrClient) || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "not json") {
		t.Fatalf("Wait = %v, want ErrClient naming the failure and the output", err)
	}
	if strings.Join(got, ",") != "ready,error" {
		t.Fatalf("events %v", got)
	}
}

func TestPayloadCompare(t *testing.T) {
	p, err := MakePayload(t.TempDir(), PayloadSpec{Name: "x", Files: []FileSpec{{Path: "a", Size: 300000}, {Path: "d/empty", Size: 0}}, PieceLength: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Compare(p.DataDir); err != nil {
		t.Fatalf("payload differs from itself: %v", err)
	}
	// Same spec, same bytes and infohash: content is a function of the spec.
	q, err := MakePayload(t.TempDir(), PayloadSpec{Name: "x", Files: []FileSpec{{Path: "a", Size: 300000}, {Path: "d/empty", Size: 0}}, PieceLength: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if q.InfoHash != p.InfoHash {
		t.Fatal("same spec gave different infohashes")
	}
	if err := p.Compare(q.DataDir); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(q.DataDir, "x", "a")
	b, _ := os.ReadFile(f)
	b[123456] ^= 1
	os.WriteFile(f, b, 0o644)
	if err := p.Compare(q.DataDir); !errors.Is(err, ErrContentMismatch) {
		t.Fatalf("flipped bit: Compare = %v, want ErrContentMismatch", err)
	}
	os.WriteFile(f, b[:1000], 0o644)
	if err := p.Compare(q.DataDir); !errors.Is(err, ErrContentMismatch) {
		t.Fatalf("truncated file: Compare = %v, want ErrContentMismatch", err)
	}
	os.Remove(filepath.Join(q.DataDir, "x", "d", "empty"))
	os.WriteFile(f, b, 0o644)
	if err := p.Compare(q.DataDir); !errors.Is(err, ErrContentMismatch) {
		t.Fatalf("missing empty file: Compare = %v, want ErrContentMismatch", err)
	}
}
