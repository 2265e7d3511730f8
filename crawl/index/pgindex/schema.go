package pgindex

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/magnetget/magnetget/crawl/index"
)

// migrations[i] takes the schema from version i to i+1. Append only: a
// released migration is never edited, and every binary refuses a database
// whose version is beyond len(migrations).
var migrations = []string{
	// 1: torrents, the peers that announced them, and the live crawlers.
	`
CREATE TABLE torrents (
	infohash    bytea PRIMARY KEY CHECK (length(infohash) = 20),
	how         smallint NOT NULL DEFAULT 0,
	first_seen  timestamptz NOT NULL,
	last_seen   timestamptz NOT NULL,
	sightings   bigint NOT NULL DEFAULT 0,
	meta        smallint NOT NULL DEFAULT 0,   -- 0 none, 1 fetched, 2 failed
	attempts    integer NOT NULL DEFAULT 0,
	next_retry  timestamptz,                   -- metadata due (meta <> 1)
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
`,
	// 2: peers expire (Options.PeerRetention): the pruner walks this index
	// from its oldest end, a bounded batch at a time.
	`
CREATE INDEX peers_seen ON peers (seen);
`,
}

// SchemaVersion is the schema version this binary writes.
var SchemaVersion = len(migrations)

// migrationLock is the pg_advisory_xact_lock key that serialises
// migrations when several crawlers start at once ("mgcrawl" in ASCII).
const migrationLock = 0x6d67637261776c

// migrate brings the database up to SchemaVersion in one transaction, or
// refuses a newer one with index.ErrNewerSchema.
func migrate(ctx context.Context, pool *pgxpool.Pool, where string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
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
		for ; v < SchemaVersion; v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
		}
		_, err = tx.Exec(ctx, "UPDATE magnetget_schema SET version = $1", v)
		return err
	})
}
