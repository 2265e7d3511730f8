package swarm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/peerwire"
)

// hostileConns opens connections to addr from the given local IPs (one each), sends each
// opening (typically a handshake and a few bytes) and then keeps it open, reading and
// discarding what we send, until the test ends. keepalive > 0 sends a keepalive that often.
func hostileConns(t testing.TB, ips []string, addr netip.AddrPort, opening []byte, keepalive time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, ip := range ips {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		nc, err := d.DialContext(ctx, "tcp", addr.String())
		if err != nil {
			t.Fatalf("hostile dial from %s: %v", ip, err)
		}
		context.AfterFunc(ctx, func() { nc.Close() })
		if _, err := nc.Write(opening); err != nil {
			t.Fatalf("hostile write: %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, nc)
		}()
		if keepalive > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(keepalive)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
						if _, err := nc.Write([]byte{0, 0, 0, 0}); err != nil {
							return
						}
					}
				}
			}()
		}
	}
}

// handshakeBytes is a peer's BEP 3 handshake for ih with a distinct peer id.
func handshakeBytes(ih [20]byte, n int) []byte {
	var id [20]byte
	copy(id[:], fmt.Sprintf("-XX0001-%012d", n))
	var res [8]byte
	res[7] = 0x04 // fast extension
	return peerwire.AppendHandshake(nil, peerwire.Handshake{Reserved: res, InfoHash: ih, PeerID: id})
}

// ipRange returns n addresses 127.0.<third>.1 .. 127.0.<third>.n.
func ipRange(third, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.%d.%d", third, i+1)
	}
	return out
}

// waitPeers waits (bounded) until s has at least n connected peers.
func waitPeers(t testing.TB, s *Swarm, n int) {
	t.Helper()
	for range 500 {
		if len(s.PeerStats()) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d peers connected, want %d", len(s.PeerStats()), n)
}

// startRun runs s in the background and returns a function that waits for its result.
func startRun(t testing.TB, s *Swarm, timeout time.Duration) func() error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	var once sync.Once
	var err error
	wait := func() error {
		once.Do(func() { err = <-errc; cancel() })
		return err
	}
	t.Cleanup(func() { cancel(); wait() })
	return wait
}

// TestStallingPieceHeadsDoNotStall is issue 9, row 4: 16 connections each sending a
// handshake and the 13-byte head of a Piece message nobody asked for, then silence, pinned
// all 16 shared run buffers and stopped the download until the 3-minute idle deadline. The
// download from an honest seeder must complete beside them.
func TestStallingPieceHeadsDoNotStall(t *testing.T) {
	tt := makeTorrent(t, "stall", 32<<10, []testFile{{"s.bin", 4 << 20}}, 21)
	seed := startSeeder(t, tt, "127.0.20.1", nil)
	ln := listen(t, "127.0.20.2")
	dir := t.TempDir()
	s, err := New(Config{InfoHash: tt.ih, Info: tt.info, Dir: dir, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	wait := startRun(t, s, 60*time.Second)
	for i, ip := range ipRange(21, maxRuns) {
		head := binary.BigEndian.AppendUint32(nil, 9+blockSize)
		head = append(head, peerwire.Piece, 0, 0, 0, 0, 0, 0, 0, 0)
		hostileConns(t, []string{ip}, addrOf(ln), append(handshakeBytes(tt.ih, i), head...), 0)
	}
	waitPeers(t, s, maxRuns)
	time.Sleep(200 * time.Millisecond) // let every head be read
	s.AddPeer(seed)
	if err := wait(); err != nil {
		t.Fatalf("Run beside %d stalling peers: %v", maxRuns, err)
	}
	tt.checkFiles(t, dir)
}
