package main

import (
	"bufio"
	"bytes"
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

// dirSnapshot maps every path under root to its mode, size, mtime and content.
func dirSnapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		b, _ := os.ReadFile(p)
		m[p] = fi.Mode().String() + " " + fi.ModTime().String() + " " + string(b)
		return nil
	})
	return m
}

func sameDir(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s: %s changed or went away", what, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s was created", what, p)
		}
	}
}

// Issue 9 row 13: `seed --torrent X.torrent DIR` on a directory whose file grew truncated it
// back silently; on the wrong directory it created empty files and a resume file and seeded
// "0 B verified". Seeding never changes the user's files and says what is wrong.
func TestSeedNeverChangesUserFiles(t *testing.T) {
	nodes := dhttest.Network(t, 4)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	os.MkdirAll(data, 0o755)
	x := filepath.Join(data, "x.bin")
	if err := os.WriteFile(x, randBytes(1_000_000), 0o644); err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(tmp, "x.torrent")
	if r := runBin(t, 30*time.Second, "create", x, "-o", tf, "--piece-length", "16K"); r.code != 0 {
		t.Fatalf("create: %s", r.stderr)
	}
	f, _ := os.OpenFile(x, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(randBytes(48_576))
	f.Close()
	old := time.Now().Add(-time.Hour)
	os.Chtimes(x, old, old)

	before := dirSnapshot(t, data)
	r := runBin(t, 60*time.Second, "seed", "--torrent", tf, data, "--listen", "/ip4/127.0.231.1/udp/0",
		"--bootstrap", bootFlag(nodes[0]), "--data-dir", t.TempDir())
	want := x + ": 1048576 bytes, the torrent says 1000000: wrong directory?"
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("seed of a grown file: exit %d, want an error saying %q\nstderr:\n%s", r.code, want, r.stderr)
	}
	sameDir(t, "seed of a grown file", before, dirSnapshot(t, data))

	wrong := filepath.Join(tmp, "wrong")
	os.MkdirAll(wrong, 0o755)
	os.WriteFile(filepath.Join(wrong, "notes.txt"), []byte("mine"), 0o644)
	before = dirSnapshot(t, wrong)
	r = runBin(t, 60*time.Second, "seed", "--torrent", tf, wrong, "--listen", "/ip4/127.0.231.2/udp/0",
		"--bootstrap", bootFlag(nodes[1]), "--data-dir", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "x.bin: missing: wrong directory?") {
		t.Errorf("seed of the wrong directory: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	sameDir(t, "seed of the wrong directory", before, dirSnapshot(t, wrong))
}

// Issue 9 row 5: a symlinked directory already inside --output (out/pack -> ../outside)
// holding a same-size file: `get` exited 0 having overwritten the file outside --output.
func TestGetNeverWritesThroughSymlinkInOutput(t *testing.T) {
	nodes := dhttest.Network(t, 6)
	tmp := t.TempDir()
	share := filepath.Join(tmp, "share", "pack")
	os.MkdirAll(share, 0o755)
	os.WriteFile(filepath.Join(share, "a.bin"), randBytes(200_000), 0o644)
	_, out, errb := startBin(t, "seed", share, "-o", filepath.Join(tmp, "pack.torrent"), "--print-peer", "--piece-length", "16K",
		"--listen", "/ip4/127.0.232.1/udp/0", "--bootstrap", bootFlag(nodes[0]), "--data-dir", t.TempDir())
	uri := firstMagnet(t, out)

	outside := filepath.Join(tmp, "outside")
	os.MkdirAll(outside, 0o755)
	precious := bytes.Repeat([]byte("precious "), 200_000/9+1)[:200_000]
	os.WriteFile(filepath.Join(outside, "a.bin"), precious, 0o644)
	dl := filepath.Join(tmp, "out")
	os.MkdirAll(dl, 0o755)
	if err := os.Symlink("../outside", filepath.Join(dl, "pack")); err != nil {
		t.Fatal(err)
	}
	before := dirSnapshot(t, outside)
	r := runBin(t, 90*time.Second, "get", uri, "-o", dl, "--listen", "/ip4/127.0.232.2/udp/0",
		"--bootstrap", bootFlag(nodes[3]), "--data-dir", t.TempDir())
	if r.code == 0 {
		t.Errorf("get through a symlinked directory in --output exited 0\nstderr:\n%s\nseeder:\n%s", r.stderr, errb.String())
	}
	if !strings.Contains(r.stderr, "symlink") {
		t.Errorf("the error does not name the symlink:\n%s", r.stderr)
	}
	sameDir(t, "outside --output", before, dirSnapshot(t, outside))
}

// Issue 9 row 14: two `get`s into one output directory both wrote the data and the resume
// file; a file of the same name that is not ours was overwritten silently.
func TestGetLocksAndKeepsOthersFiles(t *testing.T) {
	nodes := dhttest.Network(t, 6)
	const size = 2 << 20
	uri, data := seedOne(t, size, "127.0.233.1", bootFlag(nodes[0]))

	dl := t.TempDir()
	first, _, errb1 := startBin(t, "get", uri, "-o", dl, "--download-limit", "256K", "--listen", "/ip4/127.0.233.2/udp/0",
		"--bootstrap", bootFlag(nodes[1]), "--data-dir", t.TempDir())
	waitFor(t, 60*time.Second, "the first download to start writing", func() bool {
		fi, err := os.Stat(filepath.Join(dl, "big.bin"))
		return err == nil && fi.Size() > 0
	})
	r := runBin(t, 60*time.Second, "get", uri, "-o", dl, "--listen", "/ip4/127.0.233.3/udp/0",
		"--bootstrap", bootFlag(nodes[2]), "--data-dir", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "another magnetget is downloading big.bin into "+dl) {
		t.Errorf("second get into the same directory: exit %d\nstderr:\n%s\nfirst:\n%s", r.code, r.stderr, errb1.String())
	}
	first.Process.Signal(os.Interrupt)

	theirs := bytes.Repeat([]byte("not a download\n"), size/15+1)[:size]
	dl2 := t.TempDir()
	os.WriteFile(filepath.Join(dl2, "big.bin"), theirs, 0o644)
	before := dirSnapshot(t, filepath.Join(dl2, "big.bin"))
	r = runBin(t, 60*time.Second, "get", uri, "-o", dl2, "--listen", "/ip4/127.0.233.4/udp/0",
		"--bootstrap", bootFlag(nodes[3]), "--data-dir", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, filepath.Join(dl2, "big.bin")) || !strings.Contains(r.stderr, "--force") {
		t.Errorf("get over a file that is not ours: exit %d, want an error naming it and --force\nstderr:\n%s", r.code, r.stderr)
	}
	sameDir(t, "their file", before, dirSnapshot(t, filepath.Join(dl2, "big.bin")))
	r = runBin(t, 60*time.Second, "get", uri, "-o", dl2, "--force", "--listen", "/ip4/127.0.233.6/udp/0",
		"--bootstrap", bootFlag(nodes[5]), "--data-dir", t.TempDir())
	if got, _ := os.ReadFile(filepath.Join(dl2, "big.bin")); r.code != 0 || !bytes.Equal(got, data) {
		t.Errorf("get --force over a file that is not ours: exit %d, right bytes %v\n%s", r.code, bytes.Equal(got, data), r.stderr)
	}

	// The same data already there (no resume state): adopted, not refused.
	dl3 := t.TempDir()
	os.WriteFile(filepath.Join(dl3, "big.bin"), data, 0o644)
	r = runBin(t, 60*time.Second, "get", uri, "-o", dl3, "--json", "--listen", "/ip4/127.0.233.5/udp/0",
		"--bootstrap", bootFlag(nodes[4]), "--data-dir", t.TempDir())
	if r.code != 0 {
		t.Errorf("get into a directory holding the complete data: exit %d\n%s", r.code, r.stderr)
	}
}

// A kill -9 in the middle of a download (no clean shutdown, no last resume save): the rerun
// completes with the right bytes and does not fetch again what was verified on disk.
func TestKill9ThenResume(t *testing.T) {
	nodes := dhttest.Network(t, 6)
	const size = 4 << 20
	uri, data := seedOne(t, size, "127.0.234.1", bootFlag(nodes[0]))
	out := t.TempDir()
	args := []string{"get", uri, "-o", out, "--json", "--listen", "/ip4/127.0.234.2/udp/0", "--bootstrap", bootFlag(nodes[1]), "--data-dir", t.TempDir()}

	cmd := exec.Command(bin, append(args, "--download-limit", "1M")...)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	var done1 int64
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var ev progressEvent
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "progress" && ev.Done >= size/3 {
			done1 = ev.Done
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	cmd.Wait()
	deadline.Stop()
	if done1 == 0 || done1 >= size {
		t.Fatalf("killed run verified %d of %d bytes; the test needs a partial download\n%s", done1, size, errb.String())
	}

	r := runBin(t, 90*time.Second, args...)
	if r.code != 0 {
		t.Fatalf("rerun after kill -9: exit %d\n%s", r.code, r.stderr)
	}
	last := lastProgress(r.stdout)
	if !last.Complete || last.Done != size {
		t.Fatalf("rerun ended at %+v", last)
	}
	t.Logf("killed at %d of %d bytes verified; the rerun downloaded %d", done1, size, last.Down)
	if last.Down > size-done1 {
		t.Errorf("the rerun downloaded %d bytes; only %d were missing when the first run was killed", last.Down, size-done1)
	}
	got, err := os.ReadFile(filepath.Join(out, "big.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs from the original (err %v)", err)
	}
}
