package pgindex

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/magnetget/magnetget/internal/pgtest"
)

// version1 returns a database at schema version 1 (before peers_seen) with
// rows in torrents and peers, and a connection to it.
func version1(t *testing.T, peers int) (string, *pgx.Conn) {
	t.Helper()
	url := pgtest.New(t)
	openT(t, url, Options{}).Close()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for _, q := range []string{
		"DROP INDEX peers_seen",
		"UPDATE magnetget_schema SET version = 1",
		`INSERT INTO torrents (infohash, first_seen, last_seen, sightings, next_retry)
			SELECT substr(sha256(i::text::bytea), 1, 20), now(), now(), 1, now() FROM generate_series(1, 100) i`,
		fmt.Sprintf(`INSERT INTO peers SELECT substr(sha256('x'::bytea), 1, 20), '127.0.0.1:' || i, now() - i * interval '1 second'
			FROM generate_series(1, %d) i`, peers),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return url, conn
}

// schemaState reads the recorded versions (rows of magnetget_schema) and
// peers_seen's state.
func schemaState(t *testing.T, conn *pgx.Conn) (versions []int, exists, valid, unique bool) {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, "SELECT version FROM magnetget_schema")
	if err != nil {
		t.Fatal(err)
	}
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	err = conn.QueryRow(ctx, "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = to_regclass('peers_seen')").Scan(&valid, &unique)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	return versions, err == nil, valid, unique
}

// waitSchema waits until the schema is at SchemaVersion, recorded once,
// with a valid peers_seen.
func waitSchema(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		versions, exists, valid, unique := schemaState(t, conn)
		if len(versions) == 1 && versions[0] == SchemaVersion && exists && valid && !unique {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("schema versions %v, peers_seen exists %v valid %v unique %v; want version %d recorded once and a valid peers_seen",
				versions, exists, valid, unique, SchemaVersion)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMigrationWritesGoOn: upgrading a database to version 2 builds
// peers_seen without pausing the writes of the crawlers already running.
// A transaction holding a write to peers keeps the build waiting (as a busy
// crawler's would, only longer); meanwhile another write to peers must go
// through, and Open must not wait for the build. A plain CREATE INDEX in
// the migration transaction queued behind that transaction, blocking Open
// and every write after it.
func TestMigrationWritesGoOn(t *testing.T) {
	url, conn := version1(t, 1000)
	ctx := context.Background()
	busy, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close(ctx)
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO peers VALUES (substr(sha256('busy'::bytea), 1, 20), '127.0.0.2:1', now())"); err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	x, err := Open(octx, url, Options{})
	if err != nil {
		t.Fatalf("Open while a crawler's write is in flight: %v (it waited for the index build)", err)
	}
	defer x.Close()
	// The build is under way, waiting for the busy transaction.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var waiting int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE 'CREATE INDEX%peers_seen%' AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the index build never started")
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := conn.Exec(wctx, "INSERT INTO peers VALUES (substr(sha256('other'::bytea), 1, 20), '127.0.0.3:1', now())"); err != nil {
		t.Fatalf("a write to peers during the index build: %v (writes paused)", err)
	}
	if versions, _, _, _ := schemaState(t, conn); len(versions) != 1 || versions[0] != 1 {
		t.Fatalf("versions %v recorded before the index was built, want [1]", versions)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitSchema(t, conn)
}

// TestMigrationTwoCrawlersAtOnce: two crawlers opening a version-1
// database at once build peers_seen once, valid, and record the version
// once; opening it again changes nothing.
func TestMigrationTwoCrawlersAtOnce(t *testing.T) {
	url, conn := version1(t, 5000)
	var wg sync.WaitGroup
	xs := make([]*Index, 2)
	for i := range xs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			xs[i] = openT(t, url, Options{})
		}()
	}
	wg.Wait()
	waitSchema(t, conn)
	for _, x := range xs {
		if x != nil {
			x.Close()
		}
	}
	x := openT(t, url, Options{})
	if !x.ready.Load() {
		t.Error("a database at the current version is not ready at Open")
	}
	x.Close()
	waitSchema(t, conn)
	var n int
	conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_indexes WHERE tablename = 'peers'").Scan(&n)
	if n != 2 {
		t.Errorf("%d indexes on peers, want the primary key and peers_seen", n)
	}
}

// TestMigrationRepairsInvalidIndex: a concurrent build that was interrupted
// leaves peers_seen in place but invalid (here: a unique build that failed
// on duplicate times). The migration drops it and builds it again, where
// CREATE INDEX IF NOT EXISTS would keep the invalid one forever and a plain
// CREATE INDEX fails on the name.
func TestMigrationRepairsInvalidIndex(t *testing.T) {
	url, conn := version1(t, 100)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "INSERT INTO peers SELECT substr(sha256('y'::bytea), 1, 20), addr, seen FROM peers"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE UNIQUE INDEX CONCURRENTLY peers_seen ON peers (seen)"); err == nil {
		t.Fatal("test setup: the unique build did not fail")
	}
	if _, exists, valid, _ := schemaState(t, conn); !exists || valid {
		t.Fatalf("test setup: peers_seen exists %v, valid %v; want an invalid index", exists, valid)
	}
	x := openT(t, url, Options{Now: func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }})
	defer x.Close()
	waitSchema(t, conn)
	// And the pruner works on it.
	if n, err := x.PrunePeers(ctx); n == 0 || err != nil {
		t.Errorf("PrunePeers after the repair: %d, %v; want expired peers deleted", n, err)
	}
}
