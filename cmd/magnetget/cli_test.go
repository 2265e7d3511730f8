package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/clitest"
	"github.com/magnetget/magnetget/internal/maddr"
)

// bin is the magnetget binary the tests run as users do, built once.
var bin string

func TestMain(m *testing.M) {
	b, cleanup, err := clitest.Build(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = b
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer = clitest.SyncBuffer

type result struct {
	stdout, stderr string
	code           int
}

// runBin runs the binary to completion within timeout.
func runBin(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("magnetget %v: still running after %v\nstderr:\n%s", args, timeout, errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("magnetget %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// startBin starts a long-running command (seed, node); it is interrupted
// and waited for at cleanup.
func startBin(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, errb := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errb
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("magnetget %v did not stop on SIGINT within 10s\nstderr:\n%s", args, errb.String())
		}
	})
	return cmd, out, errb
}

func bootFlag(n *dht.Node) string { return maddr.FromAddrPort(n.Addr(), "udp").String() }

func randomIH(t *testing.T) [20]byte {
	var ih [20]byte
	rand.Read(ih[:])
	return ih
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLookupFindsAnnouncedPeer(t *testing.T) {
	nodes := dhttest.Network(t, 24)
	ih := randomIH(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A peer on 127.0.250.9 announces itself through one node of the network.
	if err := nodes[7].Announce(ctx, ih, 51413); err != nil {
		t.Fatalf("announce: %v", err)
	}
	want := maddr.FromAddrPort(netip.AddrPortFrom(nodes[7].Addr().Addr(), 51413), "tcp").String()

	r := runBin(t, 60*time.Second, "lookup", "--listen", "/ip4/127.0.200.1/udp/0", "--bootstrap", bootFlag(nodes[0]),
		"--data-dir", t.TempDir(), "--timeout", "30s", hex.EncodeToString(ih[:]))
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("lookup: exit %d, want %s in stdout\nstdout:\n%s\nstderr:\n%s", r.code, want, r.stdout, r.stderr)
	}

	// --json gives the same peer with the node that gave it.
	r = runBin(t, 60*time.Second, "lookup", "--json", "--max-peers", "1", "--listen", "/ip4/127.0.200.2/udp/0",
		"--bootstrap", bootFlag(nodes[3]), "--data-dir", t.TempDir(), "magnet:?xt=urn:btih:"+hex.EncodeToString(ih[:]))
	if r.code != 0 || !strings.Contains(r.stdout, `"peer":"`+want+`"`) || !strings.Contains(r.stdout, `"from":"/ip4/127.0.`) {
		t.Fatalf("lookup --json: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestLookupNoPeersExitsOne(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	ih := randomIH(t)
	r := runBin(t, 60*time.Second, "lookup", "--listen", "/ip4/127.0.200.3/udp/0", "--bootstrap", bootFlag(nodes[0]),
		"--data-dir", t.TempDir(), "--timeout", "3s", hex.EncodeToString(ih[:]))
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "no peers found") {
		t.Fatalf("want exit 1 with a reason, got %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
		t.Errorf("want a one-line reason, got:\n%s", r.stderr)
	}
}

func TestLookupRejectsBadInput(t *testing.T) {
	for _, arg := range []string{"1234", "magnet:?dn=nohash", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"} {
		r := runBin(t, 10*time.Second, "lookup", "--bootstrap", "/ip4/127.0.0.1/udp/9", arg)
		if r.code != 2 || !strings.Contains(r.stderr, "magnetget:") {
			t.Errorf("lookup %q: want exit 2 with an error, got %d\nstderr:\n%s", arg, r.code, r.stderr)
		}
	}
}

func TestBadBootstrapLinesAreReported(t *testing.T) {
	nodes := dhttest.Network(t, 8)
	f := filepath.Join(t.TempDir(), "boot.txt")
	content := "# test list\n/ip4/127.0.0.1/udp/notaport\n" + bootFlag(nodes[0]) + "\n/dns4/no-such-host.invalid/udp/6881\n"
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	ih := randomIH(t)
	r := runBin(t, 60*time.Second, "lookup", "--listen", "/ip4/127.0.200.4/udp/0", "--bootstrap-file", f,
		"--data-dir", t.TempDir(), "--timeout", "5s", hex.EncodeToString(ih[:]))
	if !strings.Contains(r.stderr, "line 2") {
		t.Errorf("bad line not reported with its number:\n%s", r.stderr)
	}
	if r.code != 1 || !strings.Contains(r.stderr, "no peers found") {
		t.Errorf("want the lookup to run on the good line and find nothing (exit 1), got %d:\n%s", r.code, r.stderr)
	}
}

func TestNodeServesAndSavesState(t *testing.T) {
	nodes := dhttest.Network(t, 12)
	data := t.TempDir()
	cmd, _, errb := startBin(t, "node", "--listen", "/ip4/127.0.200.5/udp/0", "--bootstrap", bootFlag(nodes[0]),
		"--data-dir", data, "--status-addr", "/ip4/127.0.0.1/tcp/0", "--status-interval", "1s")
	url := statusURL(t, errb)
	waitFor(t, 20*time.Second, "a status line", func() bool { return strings.Contains(errb.String(), "good/total") })

	// The node is a real DHT node: one of the network pings it through a
	// find_node, and the figures show up over HTTP.
	var status map[string]float64
	waitFor(t, 20*time.Second, "nodes in /status", func() bool {
		resp, err := http.Get(url + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		status = nil
		return json.NewDecoder(resp.Body).Decode(&status) == nil && status["dht_nodes"] >= 4
	})
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "# TYPE magnetget_dht_nodes gauge") || !strings.Contains(string(body), "magnetget_dht_queries_out_total ") {
		t.Errorf("/metrics is not Prometheus text:\n%s", body)
	}

	// SIGINT saves the table: routing.db exists, and a restart with no
	// bootstrap node at all still reaches the network from it.
	cmd.Process.Signal(os.Interrupt)
	waitFor(t, 10*time.Second, "exit", func() bool { return strings.Contains(errb.String(), "stopping") })
	waitFor(t, 10*time.Second, "routing.db", func() bool { _, err := os.Stat(filepath.Join(data, "routing.db")); return err == nil })
	time.Sleep(500 * time.Millisecond)
	ih := randomIH(t)
	if err := nodes[5].Announce(context.Background(), ih, 6000); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, 60*time.Second, "lookup", "--listen", "/ip4/127.0.200.5/udp/0", "--bootstrap-file", os.DevNull,
		"--data-dir", data, "--timeout", "20s", hex.EncodeToString(ih[:]))
	if r.code != 0 || !strings.Contains(r.stdout, "/tcp/6000") {
		t.Fatalf("warm lookup from the saved table: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// statusURL waits for the "status on http://..." line and returns the URL.
func statusURL(t *testing.T, errb *syncBuffer) string {
	t.Helper()
	var url string
	waitFor(t, 20*time.Second, "the status address", func() bool {
		for _, l := range strings.Split(errb.String(), "\n") {
			if rest, ok := strings.CutPrefix(l, "status on "); ok {
				url = strings.TrimSuffix(strings.TrimSpace(rest), "/metrics")
				return true
			}
		}
		return false
	})
	return url
}

func TestGetRejectsBadTargetsClearly(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"magnet:?xt=urn:btih:zz":        "bad infohash",
		"magnet:?xt=urn:btmh:1220abcd":  "v2 infohash of 1220 and 64 hex",
		filepath.Join(dir, "x.torrent"): "no such file",
		dir:                             "is a directory",
		"/etc/hostname":                 "not a bencoded dictionary",
	}
	for arg, want := range cases {
		r := runBin(t, 10*time.Second, "get", arg, "--bootstrap", "/ip4/127.0.0.1/udp/9", "--data-dir", t.TempDir())
		if r.code != 2 || !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("get %q: exit %d, want 2 and a one-line error with %q:\n%s", arg, r.code, want, r.stderr)
		}
	}
}

// TestTwoProcessesShareADataDir: two nodes on one data dir both run, both
// save at exit without hanging on the file lock, and the table they leave
// serves a warm lookup.
func TestTwoProcessesShareADataDir(t *testing.T) {
	nodes := dhttest.Network(t, 12)
	data := t.TempDir()
	var errs []*syncBuffer
	var cmds []*exec.Cmd
	for i := range 2 {
		cmd, _, errb := startBin(t, "node", "--listen", fmt.Sprintf("/ip4/127.0.209.%d/udp/0", i+1), "--bootstrap", bootFlag(nodes[i]),
			"--data-dir", data, "--status-interval", "300ms")
		cmds, errs = append(cmds, cmd), append(errs, errb)
	}
	for i, errb := range errs {
		waitFor(t, 20*time.Second, fmt.Sprintf("node %d's status line", i), func() bool { return strings.Contains(errb.String(), "good/total") })
	}
	for _, cmd := range cmds {
		cmd.Process.Signal(os.Interrupt)
	}
	for i, errb := range errs {
		waitFor(t, 15*time.Second, fmt.Sprintf("node %d to stop", i), func() bool { return strings.Contains(errb.String(), "stopping") })
		if strings.Contains(errb.String(), "locked") {
			t.Errorf("node %d met a locked routing.db:\n%s", i, errb.String())
		}
	}
	ih := randomIH(t)
	if err := nodes[4].Announce(context.Background(), ih, 6001); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "routing.db", func() bool { _, err := os.Stat(filepath.Join(data, "routing.db")); return err == nil })
	time.Sleep(time.Second) // both finish saving
	r := runBin(t, 60*time.Second, "lookup", "--listen", "/ip4/127.0.209.3/udp/0", "--bootstrap-file", os.DevNull,
		"--data-dir", data, "--timeout", "20s", hex.EncodeToString(ih[:]))
	if r.code != 0 || !strings.Contains(r.stdout, "/tcp/6001") {
		t.Fatalf("lookup from the shared table: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
