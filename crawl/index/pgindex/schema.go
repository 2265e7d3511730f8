package pgindex

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/magnetget/magnetget/crawl/index"
)

// migration takes the schema from one version to the next: either SQL run
// in the migration transaction, or an index built with CREATE INDEX
// CONCURRENTLY outside any transaction (see finishMigrations).
type migration struct {
	sql string
	// index and on name an index and its "table (columns)". A plain CREATE
	// INDEX locks the table against writes until it is built, which on a
	// table of billions of rows pauses every crawler for as long; built
	// concurrently, writes go on.
	index, on string
}

// migrations[i] takes the schema from version i to i+1. Append only: a
// released migration's result is never changed, and every binary refuses a
// database whose version is beyond len(migrations).
var migrations = []migration{
	// 1: torrents, the peers that announced them, and the live crawlers.
	{sql: `
CREATE TABLE torrents (
	infohash    bytea PRIMARY KEY CHECK (length(infohash) = 20),
	how         smallint NOT NULL DEFAULT 0,
	first_seen  timestamptz NOT NULL,
	last_seen   timestamptz NOT NULL,
	sightings   bigint NOT NULL DEFAULT 0,
	meta        smallint NOT NULL DEFAULT 0,   -- 0 none, 1 fetched, 2 failed
	attempts    integer NOT NULL DEFAULT 0,
	next_retry  timestamptz,                   -- metadata due (meta <> 1), on the database's clock
	lease_until timestamptz,                   -- a crawler is fetching it until then
	lease_owner text,
	name        text,
	size        bigint,
	nfiles      integer,
	files       jsonb,                         -- [{"path": [...], "length": n}]
	search      tsvector                       -- words of the name and file paths
);
CREATE INDEX torrents_due ON torrents (next_retry) WHERE meta <> 1;
CREATE INDEX torrents_search ON torrents USING gin (search);
CREATE INDEX torrents_leased ON torrents (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE peers (
	infohash bytea NOT NULL,
	addr     text NOT NULL,
	seen     timestamptz NOT NULL,
	PRIMARY KEY (infohash, addr)
);
CREATE TABLE crawlers (
	id        text PRIMARY KEY,
	host      text NOT NULL DEFAULT '',
	started   timestamptz NOT NULL DEFAULT now(),
	heartbeat timestamptz NOT NULL DEFAULT now()
);
`},
	// 2: peers expire (Options.PeerRetention): the pruner walks this index
	// from its oldest end, a bounded batch at a time.
	{index: "peers_seen", on: "peers (seen)"},
}

// SchemaVersion is the schema version this binary writes.
var SchemaVersion = len(migrations)

// Two advisory locks serialise migrations among crawlers that start at
// once. migrationLock (a transaction lock) is held by the short migration
// transactions only; buildLock (a session lock) by the one crawler building
// a concurrent index, for as long as that takes. They are apart because
// CREATE INDEX CONCURRENTLY waits for every transaction older than it to
// end: a crawler starting meanwhile and waiting for the builder's lock
// inside its migration transaction would be such a transaction (a deadlock).
// Nobody waits for buildLock: it is only tried.
const (
	migrationLock = 0x6d67637261776c // "mgcrawl" in ASCII
	buildLock     = migrationLock + 1
)

// buildRetry is how often a crawler whose migrations wait for an index
// build checks whether the builder is still at it (a builder that died
// released its lock, and its half-built index is rebuilt).
const buildRetry = 30 * time.Second

// migrate brings the database as far toward SchemaVersion as one
// transaction can, and returns the version reached, or refuses a newer
// database with index.ErrNewerSchema. A fresh database is created whole
// (its indexes on empty tables take no time); an existing one stops before
// a concurrent index, which finishMigrations builds in the background.
func migrate(ctx context.Context, pool *pgxpool.Pool, where string) (reached int, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS magnetget_schema (version integer NOT NULL)`); err != nil {
			return err
		}
		v := 0
		err := tx.QueryRow(ctx, "SELECT version FROM magnetget_schema").Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, "INSERT INTO magnetget_schema VALUES (0)"); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		if v > SchemaVersion {
			return fmt.Errorf("crawl index %s: %w: it has schema version %d, this magnetget knows up to %d; upgrade magnetget", where, index.ErrNewerSchema, v, SchemaVersion)
		}
		fresh := v == 0
		for ; v < SchemaVersion; v++ {
			m := migrations[v]
			q := m.sql
			if m.index != "" {
				if !fresh {
					break
				}
				q = "CREATE INDEX IF NOT EXISTS " + m.index + " ON " + m.on
			}
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
		}
		reached = v
		_, err = tx.Exec(ctx, "UPDATE magnetget_schema SET version = $1", v)
		return err
	})
	return reached, err
}

// finishMigrations runs until the schema is at SchemaVersion (then marks
// the index ready) or ctx ends: the migrations migrate left, each index
// built concurrently by whichever crawler holds buildLock, the others
// checking back every buildRetry.
func (x *Index) finishMigrations(ctx context.Context) {
	defer close(x.buildDone)
	for {
		done, err := x.migrateConcurrently(ctx)
		if done {
			x.ready.Store(true)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			x.log.Warn("crawl index: building an index failed; will retry", "err", err, "retry_in", buildRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(buildRetry):
		}
	}
}

// migrateConcurrently applies what is left of the migrations if it gets
// buildLock, and reports whether the schema is at SchemaVersion.
func (x *Index) migrateConcurrently(ctx context.Context) (done bool, err error) {
	conn, err := x.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	var v int
	if err := conn.QueryRow(ctx, "SELECT version FROM magnetget_schema").Scan(&v); err != nil {
		return false, err
	}
	if v >= SchemaVersion {
		return true, nil // another crawler finished it
	}
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(buildLock)).Scan(&got); err != nil {
		return false, err
	}
	if !got {
		return false, nil // another crawler is building
	}
	defer func() {
		// On a fresh context: ctx may have ended. A connection that cannot
		// say so still holds the lock: close it rather than pool it.
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", int64(buildLock)); err != nil {
			conn.Conn().Close(uctx)
		}
	}()
	for {
		if err := conn.QueryRow(ctx, "SELECT version FROM magnetget_schema").Scan(&v); err != nil {
			return false, err
		}
		if v >= SchemaVersion {
			return true, nil
		}
		m := migrations[v]
		if m.index != "" {
			if err := x.buildIndex(ctx, conn.Conn(), m.index, m.on); err != nil {
				return false, fmt.Errorf("migration %d: %w", v+1, err)
			}
		}
		// Recorded once: under the migration lock, and only from v.
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
				return err
			}
			var now int
			if err := tx.QueryRow(ctx, "SELECT version FROM magnetget_schema").Scan(&now); err != nil || now != v {
				return err // moved on meanwhile: read it again
			}
			if m.index == "" {
				if _, err := tx.Exec(ctx, m.sql); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, "UPDATE magnetget_schema SET version = $1 WHERE version = $2", v+1, v)
			return err
		})
		if err != nil {
			return false, fmt.Errorf("migration %d: %w", v+1, err)
		}
		x.log.Info("crawl index: schema migrated", "version", v+1)
	}
}

// buildIndex creates index name ON on with CREATE INDEX CONCURRENTLY,
// first dropping an invalid one: a concurrent build that was interrupted (a
// crawler killed or closed, a failure) leaves its index in place, marked
// invalid, and IF NOT EXISTS would then keep that useless index forever.
func (x *Index) buildIndex(ctx context.Context, conn *pgx.Conn, name, on string) error {
	var valid bool
	err := conn.QueryRow(ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1::text)", name).Scan(&valid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return err
	case !valid:
		x.log.Warn("crawl index: dropping the invalid index an interrupted build left; building it again", "index", name)
		if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+name); err != nil {
			return err
		}
	default:
		return nil // built, not yet recorded
	}
	x.log.Info("crawl index: building an index concurrently (writes go on meanwhile)", "index", name)
	began := time.Now()
	if _, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY IF NOT EXISTS "+name+" ON "+on); err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1::text)", name).Scan(&valid); err != nil || !valid {
		return fmt.Errorf("index %s still not valid after its build (%v)", name, err)
	}
	x.log.Info("crawl index: index built", "index", name, "took", time.Since(began).Round(time.Millisecond))
	return nil
}
