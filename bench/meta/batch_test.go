package meta

import (
	"bufio"
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
	"sync"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// BenchmarkMetaBatch resolves many magnets, all with seeders up, with one
// `magnetget meta --from FILE -o 'DIR/{infohash}.torrent'` at the default
// --jobs, from a cold data dir, and reports metadata per minute (process
// start to exit) and the per-magnet elapsed_ms.
//
// Knobs (environment): META_NODES (256), META_BATCH (magnets, 200),
// META_BATCH_HOSTS (seeder hosts the torrents are spread over, 4; each
// torrent has one seeder), META_BATCH_ARGS (extra flags, one set per
// sub-benchmark, separated by "|"; default "|--dht-rate -1" compares the
// default send rate with an unlimited one), META_TIMEOUT (seconds per
// magnet, 60). Run with -benchtime 1x.
func BenchmarkMetaBatch(b *testing.B) {
	bin := magnetgetBin(b)
	nodes := dhttest.Network(b, envInt(b, "META_NODES", 256))
	n := max(envInt(b, "META_BATCH", 200), 1)
	nhosts := max(envInt(b, "META_BATCH_HOSTS", 4), 1)
	timeout := time.Duration(envInt(b, "META_TIMEOUT", 60)) * time.Second
	variants := strings.Split("|--dht-rate -1", "|")
	if v, ok := os.LookupEnv("META_BATCH_ARGS"); ok {
		variants = strings.Split(v, "|")
	}

	// Host indexes 100.. keep clear of BenchmarkMetaLatency's when both run
	// in one process.
	hosts := make([]*seederHost, nhosts)
	for i := range hosts {
		hosts[i] = startHost(b, 100+i, []netip.AddrPort{nodes[i*7%len(nodes)].Addr(), nodes[i*13%len(nodes)].Addr()})
	}
	ihs := make([][20]byte, n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, 32)
	)
	start := time.Now()
	for i := range ihs {
		info := metadatatest.SingleFileInfo(uint64(500000+i), fmt.Sprintf("batch-%04d", i), 64<<20, 256<<10)
		ihs[i] = sha1.Sum(info)
		h := hosts[i%nhosts]
		ap, err := h.Serve(info)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := h.Announce(ctx, ihs[i], ap.Port()); err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("announce: %v", firstErr)
	}
	b.Logf("%d torrents on %d seeder hosts announced into %d nodes in %v", n, nhosts, len(nodes), time.Since(start).Round(time.Millisecond))

	list := filepath.Join(b.TempDir(), "magnets.txt")
	var sb strings.Builder
	for _, ih := range ihs {
		sb.WriteString(magnetURI(ih) + "\n")
	}
	if err := os.WriteFile(list, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}

	for vi, extra := range variants {
		name := strings.TrimSpace(extra)
		if name == "" {
			name = "defaults"
		}
		b.Run(strings.ReplaceAll(name, " ", "="), func(b *testing.B) {
			out := b.TempDir()
			args := []string{"meta", "--json", "--from", list, "-o", filepath.Join(out, "{infohash}.torrent"),
				"--timeout", timeout.String(),
				"--listen", fmt.Sprintf("/ip4/%s/udp/0", clientIP(400+vi)),
				"--bootstrap", bootMultiaddr(nodes[(vi*31+5)%len(nodes)].Addr()),
				"--data-dir", b.TempDir()}
			args = append(args, strings.Fields(extra)...)
			ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			wall := time.Since(start)
			if err != nil {
				b.Logf("magnetget meta: %v (%s)", err, strings.TrimSpace(stderr.String()))
			}
			ok, fails, ms := batchResults(b, stdout.Bytes())
			var bad int
			for _, ih := range ihs {
				if checkTorrent(filepath.Join(out, hex.EncodeToString(ih[:])+".torrent"), ih) != nil {
					bad++
				}
			}
			if bad != n-ok {
				b.Errorf("%d results OK but %d of %d .torrent files missing or wrong", ok, bad, n)
			}
			perMin := float64(ok) / wall.Minutes()
			b.ReportMetric(perMin, "metadata/min")
			b.ReportMetric(wall.Seconds(), "wall-s")
			b.ReportMetric(float64(fails), "failed")
			b.ReportMetric(quantile(ms, 0.5), "item-p50-ms")
			b.ReportMetric(quantile(ms, 0.95), "item-p95-ms")
			b.Logf("%s: %d/%d OK in %v = %.0f metadata/min; per magnet p50 %.0f ms, p95 %.0f ms, max %.0f ms",
				name, ok, n, wall.Round(time.Millisecond), perMin, quantile(ms, 0.5), quantile(ms, 0.95), quantile(ms, 1))
		})
	}
}

// batchResults reads `meta --json` lines: OK count, failures (logged, at
// most 5) and the elapsed_ms of the OK ones.
func batchResults(b *testing.B, out []byte) (ok, fails int, ms []float64) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l metaLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if !l.OK {
			if fails++; fails <= 5 {
				b.Logf("FAIL %s: %s", l.InfoHash, l.Error)
			}
			continue
		}
		ok++
		ms = append(ms, float64(l.ElapsedMS))
	}
	return ok, fails, ms
}
