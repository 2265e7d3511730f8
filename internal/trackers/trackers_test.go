package trackers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// startOpentracker runs Debian's opentracker on a free loopback port,
// serving HTTP and UDP on the same number.
//
// Debian builds opentracker in whitelist mode: only the infohashes given are
// tracked.
func startOpentracker(t *testing.T, ihs ...[20]byte) int {
	t.Helper()
	bin, err := exec.LookPath("opentracker")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("opentracker is missing in CI: .ci/run installs it")
		}
		t.Skip("opentracker not installed (apt-get install opentracker)")
	}
	// Find a port free for both TCP and UDP.
	var port int
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			break
		}
	}
	// opentracker chroots into -d and drops to user nobody: the directory
	// must be readable by nobody.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var wl strings.Builder
	for _, ih := range ihs {
		fmt.Fprintf(&wl, "%x\n", ih)
	}
	if err := os.WriteFile(filepath.Join(dir, "whitelist.txt"), []byte(wl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-i", "127.0.0.1", "-p", fmt.Sprint(port), "-P", fmt.Sprint(port), "-d", dir, "-w", "/whitelist.txt") // read after the chroot
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Up, and the whitelist loaded (opentracker reads it in a thread of its own after it
		// starts listening, and answers "stopped" before it checks the whitelist): a "started"
		// announce is accepted; the "stopped" after it takes the probe out of the swarm again.
		url := fmt.Sprintf("http://127.0.0.1:%d/announce", port)
		probe := Request{InfoHash: ihs[0], PeerID: [20]byte{'p', 'r', 'o', 'b', 'e'}, Port: 1, Event: Started}
		_, _, err := Announce(context.Background(), url, probe)
		if err == nil {
			probe.Event = Stopped
			if _, _, err = Announce(context.Background(), url, probe); err == nil {
				return port
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("opentracker did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAnnounceHTTPAndUDP(t *testing.T) {
	ih := [20]byte{1, 2, 3}
	port := startOpentracker(t, ih)
	for _, scheme := range []string{"http", "udp"} {
		t.Run(scheme, func(t *testing.T) {
			url := fmt.Sprintf("%s://127.0.0.1:%d/announce", scheme, port)
			ctx := context.Background()
			a := Request{InfoHash: ih, PeerID: [20]byte{'a', byte(scheme[0])}, Port: 40001, Left: 0}
			if scheme == "udp" {
				a.Port = 40002
			}
			if _, _, err := Announce(ctx, url, a); err != nil {
				t.Fatalf("seeder announce: %v", err)
			}
			b := Request{InfoHash: ih, PeerID: [20]byte{'b', byte(scheme[0])}, Port: 40003, Left: 100}
			peers, interval, err := Announce(ctx, url, b)
			if err != nil {
				t.Fatalf("leecher announce: %v", err)
			}
			want := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", a.Port))
			found := false
			for _, p := range peers {
				found = found || p == want
			}
			if !found || interval <= 0 {
				t.Fatalf("peers %v interval %v: want %v among them and an interval", peers, interval, want)
			}
		})
	}
}

func TestFeedDeliversPeersAndStops(t *testing.T) {
	ih := [20]byte{9}
	port := startOpentracker(t, ih)
	url := fmt.Sprintf("http://127.0.0.1:%d/announce", port)
	if _, _, err := Announce(context.Background(), url, Request{InfoHash: ih, PeerID: [20]byte{'s'}, Port: 41000}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan netip.AddrPort, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Feed(ctx, []string{url, "wss://127.0.0.1:1/announce"}, func() Request {
			return Request{InfoHash: ih, PeerID: [20]byte{'l'}, Port: 41001, Left: 1}
		}, func(p netip.AddrPort) { got <- p }, nil)
	}()
	// opentracker may list the asker too; the seeder must be among them.
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case p := <-got:
			seen = p.Port() == 41000
		case <-timeout:
			t.Fatal("the seeder's address never came from the tracker")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Feed did not stop after cancel")
	}
}

func TestUnsupportedScheme(t *testing.T) {
	_, _, err := Announce(context.Background(), "wss://127.0.0.1:1/x", Request{})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported", err)
	}
}

// Issue 10: a seed bound to 127.0.231.7 was listed by the tracker as 127.0.0.1, where nothing
// listens. With Client.LocalAddr the announce leaves from the listen address and the tracker lists
// that.
func TestLocalAddrListedByOpentracker(t *testing.T) {
	ih := [20]byte{4, 5, 6}
	port := startOpentracker(t, ih)
	seedAddr := netip.MustParseAddr("127.0.231.7")
	for i, scheme := range []string{"http", "udp"} {
		t.Run(scheme, func(t *testing.T) {
			url := fmt.Sprintf("%s://127.0.0.1:%d/announce", scheme, port)
			seed := &Client{LocalAddr: seedAddr}
			seedPort := uint16(42000 + i)
			if _, err := seed.Announce(context.Background(), url, Request{InfoHash: ih, PeerID: [20]byte{'s', byte(i)}, Port: seedPort, Event: Started}); err != nil {
				t.Fatal(err)
			}
			res, err := (&Client{}).Announce(context.Background(), url, Request{InfoHash: ih, PeerID: [20]byte{'l', byte(i)}, Port: 42100, Left: 1, Event: Started})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(res.Peers, netip.AddrPortFrom(seedAddr, seedPort)) {
				t.Fatalf("tracker lists %v, want %v:%d among them", res.Peers, seedAddr, seedPort)
			}
		})
	}
}
