package meta

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
)

// binDir holds the magnetget binary, built once on first use so that a
// plain `go test` (no benchmarks) builds nothing.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// magnetgetBin builds cmd/magnetget once per test binary run.
func magnetgetBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binError = os.MkdirTemp("", "magnetget-bench-meta-")
		if binError != nil {
			return
		}
		binPath = filepath.Join(binDir, "magnetget")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/magnetget/magnetget/cmd/magnetget").CombinedOutput()
		if err != nil {
			binError = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// envInt reads a positive integer knob, falling back to def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}

// envInts reads a space- or comma-separated list of integers.
func envInts(t testing.TB, name string, def []int) []int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want positive integers", name, s)
		}
		out = append(out, n)
	}
	return out
}

// envSet reads a space- or comma-separated set of words.
func envSet(name, def string) map[string]bool {
	s := os.Getenv(name)
	if s == "" {
		s = def
	}
	out := map[string]bool{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }) {
		out[f] = true
	}
	return out
}

func magnetURI(ih [20]byte) string {
	return "magnet:?xt=urn:btih:" + hex.EncodeToString(ih[:])
}

// bootMultiaddr names a DHT node as magnetget's --bootstrap wants it.
func bootMultiaddr(ap netip.AddrPort) string {
	return fmt.Sprintf("/ip4/%s/udp/%d", ap.Addr(), ap.Port())
}

// clientIP is the address of magnetget run i: 127.0.210-211.x, one per run
// so that no run is mistaken for a previous one's lingering table entry.
func clientIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(210 + (i/250)%2), byte(1 + i%250)})
}

// serveAll starts `seeders` hosts (from host index first) each serving
// every info in infos and announces them; it returns once every announce
// traversal has finished.
func serveAll(t testing.TB, nodes []*dht.Node, first, seeders int, infos [][]byte) []*seederHost {
	t.Helper()
	hosts := make([]*seederHost, seeders)
	for i := range hosts {
		hosts[i] = startHost(t, first+i, []netip.AddrPort{nodes[(first+i)*7%len(nodes)].Addr(), nodes[(first+i)*13%len(nodes)].Addr()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, h := range hosts {
		for _, info := range infos {
			ap, err := h.Serve(info)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := h.Announce(ctx, sha1.Sum(info), ap.Port()); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("announce: %v", firstErr)
	}
	return hosts
}

func cmpErr(old, e error) error {
	if old != nil {
		return old
	}
	return e
}

// quantile returns the q-quantile (nearest rank) of xs; NaN when empty.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
