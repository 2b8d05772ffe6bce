package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// rolloutLockKey is the PostgreSQL advisory lock every rollout change
// takes: one key for the whole fleet, because every change re-signs the
// one targets file of the repository.
const rolloutLockKey = 0x7071666c656574 // "pqfleet"

// OpenSQLite opens (creating if needed) an embedded store in one file.
// WAL with synchronous=NORMAL: a power cut may lose the last reports, never
// corrupt the file. BEGIN IMMEDIATE takes the write lock at the start of
// every transaction, which is what serializes rollout changes.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)", "foreign_keys(ON)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and this keeps readers
	// from ever seeing SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	s := &sqlStore{db: db, d: dialect{name: "sqlite", blob: "BLOB", serial: "INTEGER PRIMARY KEY AUTOINCREMENT"}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// OpenPostgres connects to PostgreSQL (a pgx connection string, e.g.
// "host=/run/postgresql dbname=pqfleet" or "postgres://...").
func OpenPostgres(ctx context.Context, dsn string) (Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	s := &sqlStore{db: db, d: dialect{name: "postgres", blob: "BYTEA", serial: "BIGSERIAL PRIMARY KEY", dollar: true,
		lockStmt: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", rolloutLockKey)}}
	// Schema creation races when several processes start at once; the
	// same advisory lock makes it one at a time.
	if _, err := db.ExecContext(ctx, fmt.Sprintf("SELECT pg_advisory_lock(%d)", rolloutLockKey)); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	err = s.migrate(ctx)
	db.ExecContext(ctx, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", rolloutLockKey))
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Open picks the implementation from a URL-ish name: "postgres://..." or
// "postgresql://..." or a string with "host=" is PostgreSQL; anything else
// is a SQLite file path.
func Open(ctx context.Context, name string) (Store, error) {
	if strings.HasPrefix(name, "postgres://") || strings.HasPrefix(name, "postgresql://") || strings.Contains(name, "host=") {
		return OpenPostgres(ctx, name)
	}
	return OpenSQLite(ctx, name)
}
