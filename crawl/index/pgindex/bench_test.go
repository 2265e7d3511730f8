package pgindex

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/internal/pgtest"
)

func benchIH(i int) [20]byte {
	var ih [20]byte
	binary.BigEndian.PutUint64(ih[:], uint64(i)*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(ih[8:], uint64(i))
	return ih
}

// BenchmarkIngest measures sightings/s one crawler's handle writes into
// PostgreSQL: b.N sightings, a quarter of them repeats of earlier
// infohashes, every eighth an announce with a peer, then Flush. Target:
// >= 50,000 sightings/s. Run with -benchtime 500000x.
func BenchmarkIngest(b *testing.B) {
	x := openT(b, pgtest.New(b), Options{})
	defer x.Close()
	peer := netip.MustParseAddrPort("127.0.0.9:6881")
	at := time.Now()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		id := i
		if i%4 == 3 {
			id = i / 2
		}
		how, p := index.Sampled, netip.AddrPort{}
		if i%8 == 0 {
			how, p = index.Announce, peer
		}
		x.Observe(benchIH(id), how, p, at)
	}
	if err := x.Flush(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	if h := x.Health(); h.Sightings != int64(b.N) || h.Dropped != 0 {
		b.Fatalf("health %+v after %d sightings", h, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "sightings/s")
}

// BenchmarkSearch1M fills a database with 1,000,000 torrents with
// metadata (synthetic names and paths from a 20,000-word vocabulary with a
// Zipf distribution, loaded with COPY) and measures `crawl search`
// latency over two-word queries: p50 and p95. Target: p50 < 50 ms. Opt-in
// like every benchmark; setup takes a minute or two.
func BenchmarkSearch1M(b *testing.B) {
	const rows = 1_000_000
	url := pgtest.New(b)
	x := openT(b, url, Options{})
	defer x.Close()
	ctx := context.Background()
	t0 := time.Now()
	vocab := make([]string, 20_000)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%x", i*7919)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(len(vocab)-1))
	word := func() string { return vocab[zipf.Uint64()] }
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE UNLOGGED TABLE gen (infohash bytea, name text, words text, files jsonb, sightings bigint)"); err != nil {
		b.Fatal(err)
	}
	src := pgx.CopyFromFunc(func() ([]any, error) { return nil, nil })
	i := 0
	src = pgx.CopyFromFunc(func() ([]any, error) {
		if i == rows {
			return nil, nil
		}
		i++
		ih := benchIH(i)
		name := strings.Join([]string{word(), word(), word(), word()}, " ")
		path := []string{word(), word() + ".mkv"}
		files := fmt.Sprintf(`[{"path":["%s","%s"],"length":%d}]`, path[0], path[1], i)
		words := searchText(index.Metadata{Name: name, Files: []index.File{{Path: path}}})
		return []any{ih[:], name, words, files, int64(1 + i%50)}, nil
	})
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"gen"}, []string{"infohash", "name", "words", "files", "sightings"}, src); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO torrents (infohash, first_seen, last_seen, sightings, meta, name, size, nfiles, files, search)
SELECT infohash, now(), now(), sightings, 1, name, 1000, 1, files, to_tsvector('simple', words) FROM gen;
DROP TABLE gen; ANALYZE torrents`); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d torrents in %v", rows, time.Since(t0).Round(time.Second))
	var lat []time.Duration
	b.ResetTimer()
	for range max(b.N, 200) {
		q := word() + " " + word()
		s := time.Now()
		if _, err := x.Search(ctx, q, 20); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(s))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}

// BenchmarkPrunePeers measures how fast expired peers are deleted in
// PruneBatch-row transactions: 200,000 peers of 20,000 infohashes, half
// expired, pruned to the end. Run with -benchtime 1x.
func BenchmarkPrunePeers(b *testing.B) {
	for range b.N {
		b.StopTimer()
		x := openT(b, pgtest.New(b), Options{Now: func() time.Time { return t0.Add(8 * 24 * time.Hour) }})
		ctx := context.Background()
		if _, err := x.pool.Exec(ctx, `INSERT INTO peers (infohash, addr, seen)
SELECT substring(sha256(int4send(i / 10)) from 1 for 20), '127.0.0.1:' || (i % 10 + 1000),
	$1::timestamptz + make_interval(days => (i % 2) * 5)
FROM generate_series(0, 199999) i`, t0); err != nil {
			b.Fatal(err)
		}
		x.pool.Exec(ctx, "ANALYZE peers")
		b.StartTimer()
		start := time.Now()
		total := 0
		for {
			n, err := x.PrunePeers(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			total += n
		}
		el := time.Since(start)
		b.StopTimer()
		if total != 100000 {
			b.Fatalf("pruned %d peers, want 100000", total)
		}
		b.ReportMetric(float64(total)/el.Seconds(), "peers/s")
		b.ReportMetric(float64(el.Microseconds())/float64(total/x.opts.PruneBatch)/1000, "ms/batch")
		x.Close()
	}
}
