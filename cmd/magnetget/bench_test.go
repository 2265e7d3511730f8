package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht/dhttest"
)

// BenchmarkLookupCLI runs `magnetget lookup --json --max-peers 1` as a user
// does, on a 256-node loopback network, from a fresh data dir (cold) and
// from one a previous run saved (warm). It reports the first peer's
// elapsed_ms (measured from the command's start) at p50 and p95.
func BenchmarkLookupCLI(b *testing.B) {
	nodes := dhttest.Network(b, 256)
	var ih [20]byte
	copy(ih[:], "benchmark-infohash!!")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[100].Announce(ctx, ih, 6881); err != nil {
		b.Fatal(err)
	}
	first := func(dataDir string, i int) float64 {
		cmd := exec.Command(bin, "lookup", "--json", "--max-peers", "1", "--timeout", "20s",
			"--listen", fmt.Sprintf("/ip4/127.0.210.%d/udp/0", 1+i%250), "--bootstrap", bootFlag(nodes[i%len(nodes)]),
			"--data-dir", dataDir, hex.EncodeToString(ih[:]))
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("lookup: %v", err)
		}
		var l lookupLine
		if err := json.Unmarshal([]byte(strings.SplitN(string(out), "\n", 2)[0]), &l); err != nil {
			b.Fatalf("lookup output %q: %v", out, err)
		}
		return float64(l.ElapsedMS)
	}
	for _, mode := range []string{"cold", "warm"} {
		b.Run(mode, func(b *testing.B) {
			warmDir := b.TempDir()
			if mode == "warm" {
				first(warmDir, 0) // fills routing.db
			}
			var ms []float64
			for i := 0; i < b.N; i++ {
				dir := warmDir
				if mode == "cold" {
					dir, _ = os.MkdirTemp(b.TempDir(), "cold")
				}
				ms = append(ms, first(dir, i+1))
			}
			sort.Float64s(ms)
			b.ReportMetric(ms[len(ms)/2], "p50-first-peer-ms")
			b.ReportMetric(ms[len(ms)*95/100], "p95-first-peer-ms")
		})
	}
}
