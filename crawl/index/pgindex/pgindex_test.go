package pgindex

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/crawl/index/indextest"
	"github.com/magnetget/magnetget/internal/pgtest"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openT(t testing.TB, url string, o Options) *Index {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x, err := Open(ctx, url, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return x
}

// TestStoreSuite: the PostgreSQL index passes the same behaviour suite as
// the bbolt one.
func TestStoreSuite(t *testing.T) {
	indextest.Run(t, func(t *testing.T, o indextest.Options) index.Store {
		return openT(t, pgtest.New(t), Options{
			Now: o.Now, MaxPeers: o.MaxPeers, PeerRetention: o.PeerRetention,
			PruneInterval: o.PruneInterval, PruneBatch: o.PruneBatch, FlushInterval: o.FlushInterval,
		})
	})
}

// TestTwoCrawlersOneRecord: two crawlers (two handles on one database) that
// see the same infohashes record each once, sightings merged, and only one
// of them counts each as new.
func TestTwoCrawlersOneRecord(t *testing.T) {
	url := pgtest.New(t)
	a, b := openT(t, url, Options{}), openT(t, url, Options{})
	defer a.Close()
	defer b.Close()
	const n = 300
	var wg sync.WaitGroup
	for k, x := range []*Index{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				how := index.Sampled
				if k == 1 {
					how = index.GetPeers
				}
				if err := x.Observe(indextest.IH(fmt.Sprint(i)), how, netip.AddrPort{}, t0.Add(time.Duration(k)*time.Minute)); err != nil {
					t.Error(err)
				}
				if i%50 == 0 {
					x.Flush()
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(a.Flush(), b.Flush()); err != nil {
		t.Fatal(err)
	}
	st, err := a.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Infohashes != n || st.Sightings != 2*n || st.Sampled != n || st.GetPeers != n {
		t.Errorf("Stats = %+v, want %d infohashes each seen twice, both ways", st, n)
	}
	if na, nb := a.Health().New, b.Health().New; na+nb != n {
		t.Errorf("new counted %d + %d times for %d infohashes", na, nb, n)
	}
	e, _, _ := b.Get(indextest.IH("7"))
	if e.Seen != 2 || !e.FirstSeen.Equal(t0) || !e.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Errorf("merged record: %+v", e)
	}
}

// TestClaimsDisjointAcrossCrawlers: four crawlers claiming at once never get
// the same infohash; a crawler that stops without storing results (killed)
// leaves leases that come back when they end.
func TestClaimsDisjointAcrossCrawlers(t *testing.T) {
	url := pgtest.New(t)
	xs := make([]*Index, 4)
	for i := range xs {
		xs[i] = openT(t, url, Options{})
		defer xs[i].Close()
	}
	const n = 400
	for i := range n {
		xs[0].Observe(indextest.IH(fmt.Sprint(i)), index.Sampled, netip.AddrPort{}, t0)
	}
	if err := xs[0].Flush(); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	const lease = 3 * time.Second
	var mu sync.Mutex
	got := map[[20]byte]int{}
	var wg sync.WaitGroup
	for _, x := range xs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				es, err := x.Claim(context.Background(), now, 7, lease)
				if err != nil {
					t.Error(err)
					return
				}
				if len(es) == 0 {
					return
				}
				mu.Lock()
				for _, e := range es {
					got[e.InfoHash]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Errorf("claimed %d distinct of %d", len(got), n)
	}
	for ih, c := range got {
		if c != 1 {
			t.Fatalf("%x claimed %d times", ih[:4], c)
		}
	}
	// Nobody stored a result: once the leases end (on the database's
	// clock) they are due again.
	if es, _ := xs[1].Claim(context.Background(), now, n, time.Minute); len(es) != 0 {
		t.Errorf("%d claimed again while leased", len(es))
	}
	back := claimUntil(t, n, func() ([]index.Entry, error) { return xs[1].Claim(context.Background(), now, n, time.Minute) })
	if len(back) != n {
		t.Errorf("%d of %d came back after the leases ended", len(back), n)
	}
}

// TestLeasesOnDatabaseClock: two crawlers whose clocks disagree by twenty
// minutes share leases fairly: the one running ahead cannot take the
// other's leases early, nor hold its own past their length; each passes
// its own clock to Claim, as a crawler does.
func TestLeasesOnDatabaseClock(t *testing.T) {
	a, b, ahead, behind := skewedPair(t)
	ctx := context.Background()
	const n = 20
	seen := time.Now().Add(-time.Hour)
	for i := range n {
		b.Observe(indextest.IH(fmt.Sprint(i)), index.Sampled, netip.AddrPort{}, seen)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	// The crawler behind leases everything for a minute: the one ahead
	// must not see those leases as ended.
	got, err := b.Claim(ctx, behind(), n, time.Minute)
	if err != nil || len(got) != n {
		t.Fatalf("claim by the crawler behind: %d, %v", len(got), err)
	}
	if stolen, err := a.Claim(ctx, ahead(), n, time.Minute); err != nil || len(stolen) != 0 {
		t.Fatalf("the crawler 10 minutes ahead took %d leases of a 1-minute lease just taken (%v)", len(stolen), err)
	}
	// Handed back; the crawler ahead leases them for 2 s: the one behind
	// gets them when the 2 s are over, not 20 minutes later.
	for _, e := range got {
		b.SetFailed(e.InfoHash, 1, behind(), behind())
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err = a.Claim(ctx, ahead(), n, 2*time.Second)
	if err != nil || len(got) != n {
		t.Fatalf("claim by the crawler ahead: %d, %v", len(got), err)
	}
	if early, _ := b.Claim(ctx, behind().Add(time.Second), n, time.Minute); len(early) != 0 {
		t.Fatalf("the crawler behind took %d leases still held", len(early))
	}
	back := map[[20]byte]bool{}
	for deadline := time.Now().Add(20 * time.Second); len(back) < n && time.Now().Before(deadline); {
		es, err := b.Claim(ctx, behind().Add(time.Second), n, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			back[e.InfoHash] = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(back) != n {
		t.Errorf("the crawler behind got %d of %d after the 2 s leases ended: the crawler ahead kept them", len(back), n)
	}
}

// TestRetryTimesOnDatabaseClock: two crawlers whose clocks disagree by
// twenty minutes agree on when a torrent is due: a torrent one of them just
// saw is due at once for the other, a failed one is due after its back-off
// on the database's clock (the crawler ahead does not retry it early, the one
// behind does not wait twenty minutes more), and each reads the retry time
// on its own clock.
func TestRetryTimesOnDatabaseClock(t *testing.T) {
	a, b, ahead, behind := skewedPair(t)
	ctx := context.Background()
	const n = 10
	var ihs [][20]byte
	for i := range n {
		ih := indextest.IH(fmt.Sprint("retry", i))
		ihs = append(ihs, ih)
		a.Observe(ih, index.Sampled, netip.AddrPort{}, ahead())
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := b.Claim(ctx, behind(), n, time.Minute)
	if err != nil || len(got) != n {
		t.Fatalf("the crawler behind claimed %d of %d torrents the one ahead just saw (%v): new torrents are due 20 minutes late", len(got), n, err)
	}
	// The crawler behind fails them all, to be retried in 5 minutes.
	for _, e := range got {
		b.SetFailed(e.InfoHash, 1, behind().Add(5*time.Minute), behind())
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if early, err := a.Claim(ctx, ahead(), n, time.Minute); err != nil || len(early) != 0 {
		t.Fatalf("the crawler 20 minutes ahead retried %d failed torrents at once, before their 5-minute back-off (%v)", len(early), err)
	}
	if early, err := b.Claim(ctx, behind(), n, time.Minute); err != nil || len(early) != 0 {
		t.Fatalf("the crawler behind retried %d failed torrents before their back-off (%v)", len(early), err)
	}
	ea, _, errA := a.Get(ihs[0])
	eb, _, errB := b.Get(ihs[0])
	if err := errors.Join(errA, errB); err != nil {
		t.Fatal(err)
	}
	if d := ea.NextRetry.Sub(eb.NextRetry) - 20*time.Minute; d < -time.Second || d > time.Second {
		t.Errorf("retry time read by the crawler ahead %v, behind %v: want 20 minutes apart, each on its own clock", ea.NextRetry, eb.NextRetry)
	}
	// Due now; the crawler ahead takes them and fails them for 2 s: the one
	// behind gets them when the 2 s are over, not 20 minutes later.
	for _, ih := range ihs {
		b.SetFailed(ih, 2, behind(), behind())
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err = a.Claim(ctx, ahead(), n, time.Minute)
	if err != nil || len(got) != n {
		t.Fatalf("claim by the crawler ahead: %d, %v", len(got), err)
	}
	for _, e := range got {
		a.SetFailed(e.InfoHash, 3, ahead().Add(2*time.Second), ahead())
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	back := claimUntil(t, n, func() ([]index.Entry, error) { return b.Claim(ctx, behind(), n, time.Minute) })
	if len(back) != n {
		t.Errorf("the crawler behind got %d of %d after their 2 s back-off: it waits on its own clock", len(back), n)
	}
}

// TestShareRebalances: each crawler's share is its rank among the live
// ones; when one leaves (Close) or stops heart-beating (dies), the others'
// count shrinks.
func TestShareRebalances(t *testing.T) {
	url := pgtest.New(t)
	ctx := context.Background()
	var xs []*Index
	for _, id := range []string{"a", "b", "c"} {
		x := openT(t, url, Options{ID: id, CrawlerTTL: 2 * time.Second})
		defer x.Close()
		xs = append(xs, x)
	}
	for i, x := range xs {
		if _, _, err := x.Share(ctx); err != nil {
			t.Fatal(err)
		}
		_ = i
	}
	for i, x := range xs {
		r, c, err := x.Share(ctx)
		if err != nil || r != i || c != 3 {
			t.Errorf("crawler %d: share %d of %d, %v", i, r, c, err)
		}
	}
	xs[1].Close()
	if r, c, _ := xs[2].Share(ctx); r != 1 || c != 2 {
		t.Errorf("after b left: c has share %d of %d, want 1 of 2", r, c)
	}
	// c dies: no more heartbeats. After the TTL a is alone.
	time.Sleep(2500 * time.Millisecond)
	if r, c, _ := xs[0].Share(ctx); r != 0 || c != 1 {
		t.Errorf("after c died: a has share %d of %d, want 0 of 1", r, c)
	}
}

// TestOutageBuffered: while PostgreSQL is down sightings are buffered and
// the handle says it is retrying; after the restart they are all written.
// Past MaxBuffer the oldest are dropped and counted.
func TestOutageBuffered(t *testing.T) {
	url := pgtest.New(t)
	x := openT(t, url, Options{MaxBuffer: 100, FlushInterval: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	defer x.Close()
	x.Observe(indextest.IH("before"), index.Sampled, netip.AddrPort{}, t0)
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	pgtest.Stop(t)
	restarted := false
	defer func() {
		if !restarted {
			pgtest.Start(t)
		}
	}()
	for i := range 150 {
		x.Observe(indextest.IH(fmt.Sprint(i)), index.Sampled, netip.AddrPort{}, t0.Add(time.Duration(i)*time.Second))
	}
	deadline := time.Now().Add(20 * time.Second)
	for !x.Health().Retrying && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	h := x.Health()
	if !h.Retrying || h.LastError == "" || h.Pending != 100 || h.Dropped != 50 {
		t.Errorf("during the outage: %+v, want retrying, 100 pending, 50 dropped", h)
	}
	pgtest.Start(t)
	restarted = true
	deadline = time.Now().Add(30 * time.Second)
	for x.Health().Pending > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := x.Stats()
	if err != nil || st.Infohashes != 101 {
		t.Fatalf("after the restart: %+v, %v; want 101 infohashes", st, err)
	}
	for i := range 150 {
		_, ok, _ := x.Get(indextest.IH(fmt.Sprint(i)))
		if ok != (i >= 50) {
			t.Errorf("sighting %d stored=%v: the oldest 50 should be the dropped ones", i, ok)
		}
	}
	if h := x.Health(); h.Retrying || h.Dropped != 50 {
		t.Errorf("after the restart: %+v", h)
	}
}

// TestNewerSchemaRefused: an older binary meeting a newer schema refuses it
// with a message naming both versions, and changes nothing.
func TestNewerSchemaRefused(t *testing.T) {
	url := pgtest.New(t)
	x := openT(t, url, Options{})
	x.Close()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE magnetget_schema SET version = 99"); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, url, Options{})
	if !errors.Is(err, index.ErrNewerSchema) || !strings.Contains(err.Error(), "99") || !strings.Contains(err.Error(), "upgrade magnetget") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
	var v int
	conn.QueryRow(ctx, "SELECT version FROM magnetget_schema").Scan(&v)
	if v != 99 {
		t.Errorf("schema version changed to %d", v)
	}
}

// TestExportFlatMemory: ForEach streams through a cursor: the heap while
// walking 20,000 rows does not grow with the rows walked.
func TestExportFlatMemory(t *testing.T) {
	url := pgtest.New(t)
	x := openT(t, url, Options{})
	defer x.Close()
	ctx := context.Background()
	if _, err := x.pool.Exec(ctx, `INSERT INTO torrents (infohash, first_seen, last_seen, sightings, meta, name, size, nfiles, files)
SELECT substring(sha256(int4send(i)) from 1 for 20), now(), now(), 1, 1, repeat('n', 200) || i, i, 1, '[{"path":["f"],"length":1}]'
FROM generate_series(1, 20000) i`); err != nil {
		t.Fatal(err)
	}
	var at1k, peak uint64
	n := 0
	var ms runtime.MemStats
	err := x.ForEach(func(e index.Entry) bool {
		n++
		if n%2000 == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if n == 2000 {
				at1k = ms.HeapAlloc
			}
			peak = max(peak, ms.HeapAlloc)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 20000 {
		t.Fatalf("walked %d rows", n)
	}
	if peak > at1k+8<<20 {
		t.Errorf("heap grew from %d to %d bytes while walking: not streaming", at1k, peak)
	}
}

// TestGetDuringWrites: while batches are written every millisecond, Get of
// an infohash being observed always finds it, its count never goes back
// and never exceeds the sightings made (a batch in flight is neither
// missed nor counted twice).
func TestGetDuringWrites(t *testing.T) {
	x := openT(t, pgtest.New(t), Options{FlushInterval: time.Millisecond})
	defer x.Close()
	ih := indextest.IH("busy")
	const n = 300
	var made atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			x.Observe(ih, index.Sampled, netip.AddrPort{}, t0.Add(time.Duration(i)*time.Millisecond))
			made.Add(1)
			if i%3 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var last int64
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		before := made.Load()
		e, ok, err := x.Get(ih)
		after := made.Load()
		if err != nil || (!ok && before > 0) {
			t.Fatalf("Get after %d sightings: found %v, %v", before, ok, err)
		}
		if e.Seen < last || e.Seen < before || e.Seen > after {
			t.Fatalf("Get counted %d sightings (%d to %d made, %d seen before)", e.Seen, before, after, last)
		}
		last = e.Seen
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := x.Get(ih); e.Seen != n {
		t.Errorf("after the last commit: %d sightings, want %d", e.Seen, n)
	}
}

// TestPeersCapAndPruneInTable: the table itself holds at most MaxPeers
// rows per infohash, also when several crawlers add peers to one infohash
// at once, and the pruner's batch reads the peers_seen index, not the
// whole table.
func TestPeersCapAndPruneInTable(t *testing.T) {
	url := pgtest.New(t)
	o := Options{MaxPeers: 5, Now: func() time.Time { return t0.Add(time.Hour) }}
	a, b := openT(t, url, o), openT(t, url, o)
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	for k, x := range []*Index{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 20 {
				for i := range 10 {
					p := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(k), byte(r), byte(i)}), 6881)
					x.Observe(indextest.IH(fmt.Sprint(i)), index.Announce, p, t0.Add(time.Duration(r)*time.Second))
				}
				if err := x.Flush(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ctx := context.Background()
	var most int
	if err := a.pool.QueryRow(ctx, `SELECT COALESCE(max(c), 0) FROM (SELECT count(*) AS c FROM peers GROUP BY infohash) s`).Scan(&most); err != nil {
		t.Fatal(err)
	}
	if most != 5 {
		t.Errorf("an infohash has %d peer rows, want the cap of 5", most)
	}
	if _, err := a.pool.Exec(ctx, `INSERT INTO peers (infohash, addr, seen)
SELECT substring(sha256(int4send(i)) from 1 for 20), '127.0.0.1:' || (i % 60000), $1::timestamptz + make_interval(secs => i)
FROM generate_series(1, 50000) i`, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, "ANALYZE peers"); err != nil {
		t.Fatal(err)
	}
	rows, err := a.pool.Query(ctx, "EXPLAIN "+pruneSQL, t0.Add(time.Minute), 1000)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "peers_seen") || strings.Contains(text, "Seq Scan on peers") {
		t.Errorf("the prune batch does not walk peers_seen:\n%s", text)
	}
}

// TestMigrationFromVersion1: a database of schema version 1 (before peers
// expired) is upgraded on open: the peers_seen index the pruner walks is
// created and the version recorded; its peers then expire.
func TestMigrationFromVersion1(t *testing.T) {
	url := pgtest.New(t)
	ctx := context.Background()
	x := openT(t, url, Options{})
	x.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ih := indextest.IH("old")
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"DROP INDEX peers_seen", nil},
		{"UPDATE magnetget_schema SET version = 1", nil},
		{"INSERT INTO torrents (infohash, first_seen, last_seen, sightings, next_retry) VALUES ($1, $2, $2, 1, $2)", []any{ih[:], t0}},
		{"INSERT INTO peers VALUES ($1, '127.0.0.1:6881', $2)", []any{ih[:], t0}},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	x = openT(t, url, Options{Now: func() time.Time { return t0.Add(8 * 24 * time.Hour) }})
	defer x.Close()
	waitSchema(t, conn) // the index is built in the background
	if n, err := x.PrunePeers(ctx); n != 1 || err != nil {
		t.Errorf("PrunePeers on the upgraded database: %d, %v; want the 1 expired peer", n, err)
	}
}

// claimUntil claims until n distinct infohashes came back or 20 s passed, and returns them.
func claimUntil(t *testing.T, n int, claim func() ([]index.Entry, error)) map[[20]byte]bool {
	t.Helper()
	back := map[[20]byte]bool{}
	for deadline := time.Now().Add(20 * time.Second); len(back) < n && time.Now().Before(deadline); {
		es, err := claim()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			back[e.InfoHash] = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return back
}

// skewedPair opens two crawlers on one fresh database whose clocks run ten minutes ahead (a)
// and behind (b), closed at cleanup, and returns their clocks.
func skewedPair(t *testing.T) (a, b *Index, ahead, behind func() time.Time) {
	t.Helper()
	url := pgtest.New(t)
	ahead = func() time.Time { return time.Now().Add(10 * time.Minute) }
	behind = func() time.Time { return time.Now().Add(-10 * time.Minute) }
	a, b = openT(t, url, Options{Now: ahead}), openT(t, url, Options{Now: behind})
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, ahead, behind
}
