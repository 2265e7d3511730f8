package interop

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/clitest"
	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// bin is the magnetget binary TestMain builds.
var bin string

func TestMain(m *testing.M) {
	b, cleanup, err := clitest.Build("../cmd/magnetget")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = b
	code := m.Run()
	closeWorld()
	cleanup()
	os.Exit(code)
}

// procTimeout bounds every magnetget run and every wait in these tests.
const procTimeout = 60 * time.Second

var lastIP atomic.Uint32

// nextIP returns a loopback address no other process of this package uses.
func nextIP() netip.Addr {
	n := lastIP.Add(1)
	return netip.AddrFrom4([4]byte{127, 77, byte(n >> 8), byte(n)})
}

// listenOn returns a fresh address with a port free for UDP and TCP, and
// the --listen flag for it (the DHT socket; the peer listener gets the
// same port): tests must know both to introduce the node to libtorrent or
// aria2.
func listenOn(t *testing.T) (netip.AddrPort, string) {
	t.Helper()
	ip := nextIP()
	port, err := realclient.FreePort(ip)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.AddrPortFrom(ip, uint16(port))
	return ap, maddr.FromAddrPort(ap, "udp").String()
}

// dhtArgs are the flags that join a magnetget process to the given
// libtorrent nodes, from a fresh data dir and a fresh address.
func dhtArgs(t *testing.T, boot []netip.AddrPort) []string {
	t.Helper()
	_, listen := listenOn(t)
	args := []string{"--listen", listen, "--data-dir", t.TempDir()}
	for _, b := range boot {
		args = append(args, "--bootstrap", maddr.FromAddrPort(b, "udp").String())
	}
	return args
}

type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// runBin runs magnetget to completion within timeout.
func runBin(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("magnetget %s: still running after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), timeout, r.stdout, r.stderr)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("magnetget %v: %v", args, err)
	}
	return r
}

// mustRun is runBin that fails t unless magnetget exits 0.
func mustRun(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	r := runBin(t, timeout, args...)
	if r.code != 0 {
		t.Fatalf("magnetget %s: exit %d after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
	}
	return r
}

// running is a long-lived magnetget process (seed, node).
type running struct {
	cmd       *exec.Cmd
	out, errb *syncBuffer
	done      chan struct{}
}

// startBin starts a long-running magnetget command; t.Cleanup interrupts it
// and waits (then kills it after 10 s).
func startBin(t *testing.T, args ...string) *running {
	t.Helper()
	r := &running{cmd: exec.Command(bin, args...), out: &syncBuffer{}, errb: &syncBuffer{}, done: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.errb
	r.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.cmd.Process.Signal(os.Interrupt)
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
			t.Errorf("magnetget %v did not stop on SIGINT within 10s\nstderr:\n%s", args, r.errb.String())
		}
	})
	return r
}

// waitLine waits until the process prints a line starting with prefix on
// stdout (or stderr when onStderr) and returns it.
func (r *running) waitLine(t *testing.T, prefix string, onStderr bool) string {
	t.Helper()
	buf := r.out
	if onStderr {
		buf = r.errb
	}
	deadline := time.Now().Add(procTimeout)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.HasPrefix(l, prefix) {
				return strings.TrimSpace(l)
			}
		}
		select {
		case <-r.done:
			t.Fatalf("magnetget exited before printing %q\nstdout:\n%s\nstderr:\n%s", prefix, r.out.String(), r.errb.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("magnetget printed no %q within %v\nstdout:\n%s\nstderr:\n%s", prefix, procTimeout, r.out.String(), r.errb.String())
	return ""
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer = clitest.SyncBuffer

// world is one libtorrent DHT and one libtorrent seeder of a v1 multi-file
// payload announced into it, shared by every test in the package: starting
// them takes 10-15 s of the two cores, and the tests only read from them.
var world struct {
	once    sync.Once
	err     error
	dir     string
	dht     *realclient.LibtorrentDHT
	seeder  *realclient.LibtorrentSeeder
	payload *realclient.Payload
}

// worldNodes is the size of the shared libtorrent DHT.
const worldNodes = 24

func logger() *slog.Logger {
	if os.Getenv("REALCLIENT_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// sharedDHT returns the shared libtorrent DHT, starting it on first use.
func sharedDHT(t *testing.T) *realclient.LibtorrentDHT {
	t.Helper()
	d, _, _ := sharedWorld(t)
	return d
}

// sharedWorld returns the shared DHT and a libtorrent seeder whose announce
// is visible in it.
func sharedWorld(t *testing.T) (*realclient.LibtorrentDHT, *realclient.LibtorrentSeeder, *realclient.Payload) {
	t.Helper()
	rctest.Require(t, realclient.LibtorrentAvailable)
	world.once.Do(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), rctest.StartTimeout)
		defer cancel()
		if world.dir, world.err = os.MkdirTemp("", "magnetget-interop-world-"); world.err != nil {
			return
		}
		world.payload, world.err = realclient.MakePayload(world.dir, realclient.PayloadSpec{
			Name: "ltseed", PieceLength: 32 << 10, Seed: 4101,
			Files: []realclient.FileSpec{
				{Path: "a.bin", Size: 1<<20 + 12345},
				{Path: "empty", Size: 0},
				{Path: "sub/b.txt", Size: 54321},
			},
		})
		if world.err != nil {
			return
		}
		world.dht, world.err = realclient.StartLibtorrentDHT(ctx, realclient.DHTConfig{Nodes: worldNodes, Logger: logger()})
		if world.err != nil {
			return
		}
		if world.err = world.dht.WaitNodes(ctx, 8); world.err != nil {
			world.err = fmt.Errorf("%w (tables %v)", world.err, world.dht.NodeCounts())
			return
		}
		world.seeder, world.err = realclient.StartLibtorrentSeeder(ctx, realclient.SeederConfig{
			Torrent: world.payload.Torrent, DataDir: world.payload.DataDir, Bootstrap: world.dht.Addrs()[:4], Logger: logger(),
		})
		if world.err != nil {
			return
		}
		world.err = world.seeder.WaitAnnounced(ctx)
		fmt.Fprintf(os.Stderr, "interop: shared libtorrent DHT (%d nodes) and seeder ready after %v\n", worldNodes, time.Since(start).Round(time.Millisecond))
	})
	if world.err != nil {
		t.Fatalf("shared libtorrent network: %v", world.err)
	}
	return world.dht, world.seeder, world.payload
}

func closeWorld() {
	if world.seeder != nil {
		world.seeder.Close()
	}
	if world.dht != nil {
		world.dht.Close()
	}
	if world.dir != "" {
		os.RemoveAll(world.dir)
	}
}

// some returns n of the DHT's nodes starting at i (wrapping): different
// tests bootstrap from different nodes.
func some(addrs []netip.AddrPort, i, n int) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, n)
	for k := range n {
		out = append(out, addrs[(i+k)%len(addrs)])
	}
	return out
}
