package torrentfile

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
)

// needTool returns the path of an external program, skipping the test when it is missing unless
// CI=true, where a missing client must fail the run rather than silently shrink it.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (required with CI=true): %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

const pythonPath = "/usr/bin/python3"

// needLibtorrent skips (or fails under CI=true) when python3-libtorrent cannot be imported.
func needLibtorrent(t testing.TB) {
	t.Helper()
	out, err := exec.Command(pythonPath, "-c", "import libtorrent").CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 libtorrent not importable (required with CI=true): %v: %s", err, out)
		}
		t.Skipf("python3 libtorrent not importable: %v: %s", err, out)
	}
}

// runPython runs a python3 script with args and returns its trimmed stdout.
func runPython(t testing.TB, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command(pythonPath, append([]string{"-c", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// content returns n deterministic pseudo-random bytes derived from seed.
func content(seed string, n int) []byte {
	var s [32]byte
	copy(s[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

// writeTree creates files (slash-separated paths relative to dir) with content(path, size).
func writeTree(t testing.TB, dir string, files map[string]int) {
	t.Helper()
	for p, size := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, content(p, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustCreate(t testing.TB, path string, o Options) *metainfo.MetaInfo {
	t.Helper()
	mi, err := Create(context.Background(), path, o)
	if err != nil {
		t.Fatalf("Create(%s): %v", path, err)
	}
	return mi
}

func mustInfo(t testing.TB, mi *metainfo.MetaInfo) *metainfo.Info {
	t.Helper()
	info, err := ParseInfo(mi.InfoBytes)
	if err != nil {
		t.Fatalf("ParseInfo: %v", err)
	}
	return info
}

// writeFile writes mi to a .torrent file in dir and returns its path.
func writeFile(t testing.TB, dir, name string, mi *metainfo.MetaInfo) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, mi); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func hexHash(h [20]byte) string { return hex.EncodeToString(h[:]) }

// referencePieces hashes the concatenation of data independently of hashPieces.
func referencePieces(data []byte, pieceLen int) []byte {
	var out []byte
	for off := 0; off < len(data); off += pieceLen {
		s := sha1.Sum(data[off:min(off+pieceLen, len(data))])
		out = append(out, s[:]...)
	}
	return out
}
