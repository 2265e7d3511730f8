package meta

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// Clients in the order each round runs them.
var latencyClients = []string{"magnetget-cold", "magnetget-warm", "libtorrent", "aria2"}

// metaLine is the part of `magnetget meta --json` output we read.
type metaLine struct {
	InfoHash  string `json:"infohash"`
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	File      string `json:"file"`
	ElapsedMS int64  `json:"elapsed_ms"`
}

// BenchmarkMetaLatency measures magnet -> written .torrent, from process
// start, for magnetget, libtorrent and aria2 on one loopback DHT. Each
// (round, client) fetches its own infohash, so no run meets the dead peer
// entries an earlier client announced.
//
// Knobs (environment): META_NODES (DHT size, 256), META_ROUNDS (5),
// META_ARIA2_ROUNDS (2; aria2 spends ~12 s a run on its DHT timers),
// META_SEEDERS ("1 8"), META_TIMEOUT (seconds a run may take, 60),
// META_LARGE_BYTES (info dict size of the large case, 4 MiB), META_CLIENTS
// (default "magnetget libtorrent aria2"). Run with -benchtime 1x: the
// rounds are counted by META_ROUNDS, not b.N.
func BenchmarkMetaLatency(b *testing.B) {
	bin := magnetgetBin(b)
	nodes := dhttest.Network(b, envInt(b, "META_NODES", 256))
	rounds := max(envInt(b, "META_ROUNDS", 5), 1)
	aria2Rounds := envInt(b, "META_ARIA2_ROUNDS", 2)
	largeBytes := envInt(b, "META_LARGE_BYTES", 4<<20)
	timeout := time.Duration(envInt(b, "META_TIMEOUT", 60)) * time.Second
	want := envSet("META_CLIENTS", "magnetget libtorrent aria2")
	use := map[string]bool{
		"magnetget-cold": want["magnetget"],
		"magnetget-warm": want["magnetget"],
		"libtorrent":     want["libtorrent"] && available(b, "libtorrent", realclient.LibtorrentAvailable),
		"aria2":          want["aria2"] && available(b, "aria2", realclient.Aria2Available),
	}
	sizes := []struct {
		name string
		info func(seed uint64) []byte
	}{
		{"small", func(seed uint64) []byte {
			return metadatatest.SingleFileInfo(seed, "small", 100<<20, 256<<10) // 8 KiB: one BEP 9 piece
		}},
		{"large", func(seed uint64) []byte { return metadatatest.LargeInfo(seed, largeBytes) }},
	}
	host := 0
	for _, size := range sizes {
		for _, seeders := range envInts(b, "META_SEEDERS", []int{1, 8}) {
			b.Run(fmt.Sprintf("info=%s/seeders=%d", size.name, seeders), func(b *testing.B) {
				// One infohash per (round, client) plus one to warm magnetget's data dir.
				n := rounds*len(latencyClients) + 1
				infos := make([][]byte, n)
				for i := range infos {
					infos[i] = size.info(uint64(host*1000 + i))
				}
				serveAll(b, nodes, host, seeders, infos)
				host += seeders
				title := fmt.Sprintf("info dict %d bytes, %d seeder(s), %d DHT nodes", len(infos[0]), seeders, len(nodes))
				r := latencyRun{b: b, bin: bin, nodes: nodes, warmDir: b.TempDir(), timeout: timeout, inner: map[string][]float64{}}
				if use["magnetget-warm"] {
					if _, _, err := r.magnetget(infos[n-1], r.warmDir, 0); err != nil {
						b.Fatalf("warming magnetget's data dir: %v", err)
					}
				}
				ms := map[string][]float64{}
				fails := map[string]int{}
				for round := range rounds {
					for k, client := range latencyClients {
						if !use[client] || (client == "aria2" && round >= aria2Rounds) {
							continue
						}
						d, err := r.run(client, infos[round*len(latencyClients)+k], round)
						if err != nil {
							fails[client]++
							b.Logf("%s round %d: %v", client, round, err)
							continue
						}
						ms[client] = append(ms[client], float64(d.Microseconds())/1000)
					}
				}
				report(b, title, ms, fails, r.inner)
			})
		}
	}
}

// available reports whether a real client can run; under CI=true a
// missing one fails the benchmark.
func available(b *testing.B, name string, avail func() error) bool {
	if err := avail(); err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatalf("CI=true and %s is missing: %v", name, err)
		}
		b.Logf("leaving out %s: %v", name, err)
		return false
	}
	return true
}

type latencyRun struct {
	b       *testing.B
	bin     string
	nodes   []*dht.Node
	warmDir string
	timeout time.Duration // per run
	seq     int
	// inner collects the time each client measures itself: magnetget's
	// elapsed_ms (fetchOne's start to the file written: no process start,
	// DHT join or exit) and lt.py's session start to metadata complete.
	inner map[string][]float64
}

// boot is the one DHT entry point every client of a round gets.
func (r *latencyRun) boot(round int) netip.AddrPort {
	return r.nodes[(round*37+11)%len(r.nodes)].Addr()
}

func (r *latencyRun) run(client string, info []byte, round int) (time.Duration, error) {
	ih := sha1.Sum(info)
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	dir := r.b.TempDir()
	var (
		d       time.Duration
		torrent string
		err     error
	)
	switch client {
	case "magnetget-cold":
		d, inner, err := r.magnetget(info, r.b.TempDir(), round)
		r.inner[client] = append(r.inner[client], inner)
		return d, err
	case "magnetget-warm":
		d, inner, err := r.magnetget(info, r.warmDir, round)
		r.inner[client] = append(r.inner[client], inner)
		return d, err
	case "libtorrent":
		var inner time.Duration
		d, inner, torrent, err = ltMetadata(ctx, magnetURI(ih), dir, r.boot(round), r.timeout)
		if err == nil {
			r.inner[client] = append(r.inner[client], float64(inner.Microseconds())/1000)
		}
	case "aria2":
		var res realclient.Aria2Result
		res, err = realclient.Aria2Download(ctx, realclient.Aria2Config{
			URI: magnetURI(ih), Dir: dir, DHTEntry: r.boot(round),
			MetadataOnly: true, MaxLifetime: r.timeout, Logger: rctest.Logger(r.b),
		})
		d, torrent = res.Elapsed, res.Torrent
		if err != nil {
			err = fmt.Errorf("%w; output: %s", err, strings.TrimSpace(res.Output))
		}
	default:
		return 0, fmt.Errorf("unknown client %q", client)
	}
	if err != nil {
		return 0, err
	}
	return d, checkTorrent(torrent, ih)
}

// magnetget runs `magnetget meta` once and returns the process's wall time
// (start to exit, the .torrent written and the routing table saved).
func (r *latencyRun) magnetget(info []byte, dataDir string, round int) (time.Duration, float64, error) {
	ih := sha1.Sum(info)
	out := r.b.TempDir()
	r.seq++
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, "meta", "--json", "--timeout", r.timeout.String(),
		"--listen", fmt.Sprintf("/ip4/%s/udp/0", clientIP(r.seq)),
		"--bootstrap", bootMultiaddr(r.boot(round)), "--data-dir", dataDir,
		"-o", filepath.Join(out, "{infohash}.torrent"), magnetURI(ih))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("magnetget meta: %w: %s %s", err, stdout.Bytes(), stderr.Bytes())
	}
	var l metaLine
	if err := json.Unmarshal(stdout.Bytes(), &l); err != nil || !l.OK {
		return 0, 0, fmt.Errorf("magnetget meta output %q: %v", stdout.Bytes(), err)
	}
	return d, float64(l.ElapsedMS), checkTorrent(l.File, ih)
}

// checkTorrent verifies that path is a .torrent of ih: a fast wrong answer
// must not count.
func checkTorrent(path string, ih [20]byte) error {
	mi, err := metainfo.LoadFromFile(path)
	if err != nil {
		return fmt.Errorf("reading the written torrent: %w", err)
	}
	if got := mi.HashInfoBytes(); got != ih {
		return fmt.Errorf("%s has infohash %s, want %s", path, got.HexString(), hex.EncodeToString(ih[:]))
	}
	return nil
}

// report logs a table of p50/p95 per client and the ratio of magnetget's
// p50 to the fastest other client's, and reports them as metrics.
func report(b *testing.B, title string, ms map[string][]float64, fails map[string]int, inner map[string][]float64) {
	best, bestName := 0.0, ""
	for _, c := range []string{"libtorrent", "aria2"} {
		if p := quantile(ms[c], 0.5); len(ms[c]) > 0 && (bestName == "" || p < best) {
			best, bestName = p, c
		}
	}
	var sb strings.Builder
	sb.WriteString(title + "\n")
	fmt.Fprintf(&sb, "%-15s %5s %9s %9s %9s %s\n", "client", "runs", "p50 ms", "p95 ms", "max ms", "fails")
	for _, c := range latencyClients {
		xs := ms[c]
		if len(xs) == 0 && fails[c] == 0 {
			continue
		}
		fmt.Fprintf(&sb, "%-15s %5d %9.1f %9.1f %9.1f %d\n", c, len(xs), quantile(xs, 0.5), quantile(xs, 0.95), quantile(xs, 1), fails[c])
		if len(xs) > 0 {
			b.ReportMetric(quantile(xs, 0.5), c+"-p50-ms")
			b.ReportMetric(quantile(xs, 0.95), c+"-p95-ms")
		}
	}
	// At most 10 lines in all: the testing package truncates longer
	// benchmark logs.
	sb.WriteString("in-process p50/p95 ms:")
	for _, c := range latencyClients {
		if xs := inner[c]; len(xs) > 0 {
			fmt.Fprintf(&sb, " %s %.0f/%.0f", c, quantile(xs, 0.5), quantile(xs, 0.95))
		}
	}
	sb.WriteString("\n")
	if bestName != "" {
		fmt.Fprintf(&sb, "p50 / %s p50:", bestName)
		for _, c := range []string{"magnetget-cold", "magnetget-warm"} {
			if len(ms[c]) > 0 {
				ratio := quantile(ms[c], 0.5) / best
				fmt.Fprintf(&sb, " %s %.2f", c, ratio)
				b.ReportMetric(ratio, c+"/best-other-p50")
			}
		}
	}
	b.Log(sb.String())
}
