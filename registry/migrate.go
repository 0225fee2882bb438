package registry

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockKey names the advisory lock that serialises migrators. Every
// process of one deployment (api, worker, relay, migrate) may run Migrate at
// start; the lock makes them take turns instead of racing on DDL.
const migrateLockKey int64 = 0x6c657468652d6d67 // "lethe-mg"

var migrationNameRe = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

type migration struct {
	version int
	name    string
	sql     string
}

// migrations reads the embedded files in version order. A misnamed file or a
// repeated version is a build mistake, reported rather than skipped.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		m := migrationNameRe.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		version, _ := strconv.Atoi(m[1])
		body, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		out = append(out, migration{version: version, name: e.Name(), sql: string(body)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a version", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// Migrate applies the embedded migrations that db has not seen yet, each in
// its own transaction. It is safe to run again and from several processes at
// once: each transaction first takes a transaction-scoped advisory lock and
// then checks schema_migrations. Afterwards it repairs the suppression
// list's positions of a database that moved to another server
// (repairFinishedXIDs).
func Migrate(ctx context.Context, db *sql.DB) error {
	return migrateTo(ctx, db, math.MaxInt)
}

// migrateTo applies the migrations up to version last, so that tests can
// build a database as an older release left it.
func migrateTo(ctx context.Context, db *sql.DB, last int) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.version > last {
			break
		}
		if err := applyMigration(ctx, db, m); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	if last < suppressionsVersion {
		return nil // the positions to repair do not exist yet
	}
	if err := repairFinishedXIDs(ctx, db, last); err != nil {
		return fmt.Errorf("repair suppression list positions: %w", err)
	}
	return nil
}

// suppressionsVersion is the migration that adds the suppression list's
// positions (0005_suppressions.sql).
const suppressionsVersion = 5

// batchesVersion is the migration that adds batches, listed by the same
// positions (0014_batches.sql).
const batchesVersion = 14

// repairFinishedXIDs moves before every new entry the suppression list's
// positions that lie in the future of this server. A position is the id of
// a transaction of the server (migration 0005), and a copy made with
// pg_dump or logical replication keeps the rows but not the server's
// transaction counter: the new server's next transactions would get smaller
// ids than the copied rows, and be listed behind positions clients already
// hold. Setting the copied positions to 0 puts them first again, and
// ListSuppressions answers cursor_expired to a cursor from the old server,
// so that its client reads the list again from its since. On the server
// that wrote them no position is in the future, and nothing changes. The
// positions of batches, once migration last has added them, are repaired
// the same way.
func repairFinishedXIDs(ctx context.Context, db *sql.DB, last int) error {
	if _, err := db.ExecContext(ctx, `
		UPDATE erasure_requests SET finished_xid = '0'
		WHERE finished_xid IS NOT NULL
			AND finished_xid >= pg_snapshot_xmax(pg_current_snapshot())`); err != nil {
		return err
	}
	if last < batchesVersion {
		return nil // no batch to repair yet
	}
	_, err := db.ExecContext(ctx, `
		UPDATE erasure_batches SET finished_xid = '0'
		WHERE finished_xid IS NOT NULL
			AND finished_xid >= pg_snapshot_xmax(pg_current_snapshot())`)
	return err
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()

	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	// Created under the lock, so two first-time migrators never race on it.
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var applied bool
	if err := tx.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version,
	).Scan(&applied); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	if applied {
		return nil
	}
	// No arguments: lib/pq sends the file with the simple query protocol,
	// which runs every statement in it.
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, m.version,
	); err != nil {
		return fmt.Errorf("record version: %w", err)
	}
	return tx.Commit()
}

// EnsureDatabase creates the database named in url when it does not exist,
// so that `lethe dev` works against a fresh PostgreSQL server. It connects to
// the server's `postgres` maintenance database with the same credentials.
// When url names no database, PostgreSQL's rule applies: the user's name.
func EnsureDatabase(ctx context.Context, url string) error {
	cfg, err := pq.NewConfig(url)
	if err != nil {
		return fmt.Errorf("parse database url: %w", withoutURL(err))
	}
	name := cfg.Database
	if name == "" {
		name = cfg.User
	}
	if name == "" {
		return errors.New("database url names neither a database nor a user")
	}

	admin := cfg.Clone()
	admin.Database = "postgres"
	connector, err := pq.NewConnectorConfig(admin)
	if err != nil {
		return fmt.Errorf("configure maintenance connection: %w", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	var exists bool
	if err := db.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name,
	).Scan(&exists); err != nil {
		return fmt.Errorf("look up database: %w", classify(err))
	}
	if exists {
		return nil
	}
	// CREATE DATABASE takes no parameters, hence the quoted identifier. A
	// concurrent creator that got there first surfaces as duplicate_database
	// or, when both inserted into pg_database at once, as a unique violation
	// on its name index: either way the database now exists.
	_, err = db.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(name))
	if err != nil && pq.As(err, pqerror.DuplicateDatabase, pqerror.UniqueViolation) == nil {
		return fmt.Errorf("create database: %w", classify(err))
	}
	return nil
}
