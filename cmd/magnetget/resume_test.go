package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht/dhttest"
)

type progressEvent struct {
	Event    string `json:"event"`
	Done     int64  `json:"done"`
	Total    int64  `json:"total"`
	Down     int64  `json:"down"`
	Complete bool   `json:"complete"`
	OK       bool   `json:"ok"`
	Error    string `json:"error"`
}

// seedOne starts `magnetget seed` on a fresh file of size bytes and
// returns its magnet (with x.pe) and the file's bytes.
func seedOne(t *testing.T, size int, ip string, boot string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	data := randBytes(size)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, _ := startBin(t, "seed", filepath.Join(dir, "big.bin"), "-o", filepath.Join(dir, "big.torrent"), "--print-peer",
		"--piece-length", "16K", "--listen", "/ip4/"+ip+"/udp/0", "--bootstrap", boot, "--data-dir", t.TempDir())
	return firstMagnet(t, out), data
}

// TestInterruptAndResume kills a download halfway (SIGINT, as Ctrl-C) and
// reruns the same command: it completes, and the second run downloads no
// more than what the first had not verified.
func TestInterruptAndResume(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	const size = 4 << 20
	uri, data := seedOne(t, size, "127.0.205.1", bootFlag(nodes[0]))
	out := t.TempDir()
	args := []string{"get", uri, "-o", out, "--json", "--listen", "/ip4/127.0.205.2/udp/0", "--bootstrap", bootFlag(nodes[1]), "--data-dir", t.TempDir()}

	// First run, slowed down, interrupted once a third is verified.
	cmd := exec.Command(bin, append(args, "--download-limit", "1M")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var done1 int64
	sc := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	for sc.Scan() {
		var ev progressEvent
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "progress" && ev.Done >= size/3 {
			cmd.Process.Signal(syscall.SIGINT)
			break
		}
	}
	for sc.Scan() { // the last progress figures before it stopped
		var ev progressEvent
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "progress" {
			done1 = ev.Done
		}
	}
	err = cmd.Wait()
	deadline.Stop()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted run: %v, want exit 130\n%s", err, errb.String())
	}
	if done1 == 0 || done1 >= size {
		t.Fatalf("interrupted run verified %d of %d bytes; the test needs a partial download", done1, size)
	}
	if !strings.Contains(errb.String(), "resume") {
		t.Errorf("the interrupted run does not tell the user how to resume:\n%s", errb.String())
	}

	// Second run: completes and fetches only what was missing.
	r := runBin(t, 90*time.Second, args...)
	if r.code != 0 {
		t.Fatalf("resumed run: exit %d\n%s", r.code, r.stderr)
	}
	last := lastProgress(r.stdout)
	if !last.Complete || last.Done != size {
		t.Fatalf("resumed run ended at %+v", last)
	}
	t.Logf("first run verified %d of %d bytes; the rerun downloaded %d", done1, size, last.Down)
	if last.Down > size-done1 {
		t.Errorf("resumed run downloaded %d bytes; only %d were missing after the first run verified %d", last.Down, size-done1, done1)
	}
	got, err := os.ReadFile(filepath.Join(out, "big.bin"))
	if err != nil || string(got) != string(data) {
		t.Fatalf("downloaded file differs from the original (err %v)", err)
	}
}

// TestFullDiskEndsWithClearError downloads into a 1 MiB filesystem: the
// command must stop with a one-line reason naming the problem, not hang or
// panic. Mounting needs root (as in CI).
func TestFullDiskEndsWithClearError(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test mounts a small tmpfs")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	small := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", small).Run() })

	nodes := dhttest.Network(t, 8)
	uri, _ := seedOne(t, 3<<20, "127.0.206.1", bootFlag(nodes[0]))
	r := runBin(t, 90*time.Second, "get", uri, "-o", small, "--listen", "/ip4/127.0.206.2/udp/0",
		"--bootstrap", bootFlag(nodes[1]), "--data-dir", t.TempDir())
	if r.code == 0 {
		t.Fatal("a 3 MiB download into a 1 MiB filesystem succeeded")
	}
	t.Logf("exit %d: %s", r.code, r.stderr)
	if !strings.Contains(r.stderr, "no space left on device") || strings.Contains(r.stderr, "panic") {
		t.Fatalf("want a clear 'no space left' error, got exit %d:\n%s", r.code, r.stderr)
	}
}

// lastProgress returns the last "progress" event of a --json run's output.
func lastProgress(stdout string) progressEvent {
	var last progressEvent
	for _, l := range strings.Split(stdout, "\n") {
		var ev progressEvent
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Event == "progress" {
			last = ev
		}
	}
	return last
}
