// Package testenv starts and tears down the real dependencies that Lethe's
// integration tests run against. Helpers fail the test loudly, saying how to
// start what is missing, rather than skip it: a skipped integration test
// proves nothing and is easy to miss.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe/registry"
)

// DefaultPostgresURL is the server the tests use when LETHE_TEST_DATABASE_URL
// is not set: the local PostgreSQL 15 with trust authentication.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// postgresSetupTimeout bounds creating, migrating and dropping a database, so
// that a hung server fails the test instead of hanging it.
const postgresSetupTimeout = time.Minute

// testPoolSize bounds each test database's pool, as production's pools are
// bounded (see registry.Open).
const testPoolSize = 16

// Postgres returns a pool on a new, migrated database of its own, and that
// database's URL for code that opens its own pool. The database is dropped
// when the test ends, so tests may run in parallel and leave nothing behind.
func Postgres(t testing.TB) (db *sql.DB, url string) {
	t.Helper()
	url = PostgresURL(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatalf("testenv: open test database: %v", err)
	}
	// Registered after PostgresURL's drop, so it runs before it.
	t.Cleanup(func() { db.Close() })
	// Test packages run side by side against one server whose
	// max_connections is 100: a bounded pool makes a burst wait for a
	// connection instead of failing with too_many_connections.
	db.SetMaxOpenConns(testPoolSize)

	ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
	defer cancel()
	if err := registry.Migrate(ctx, db); err != nil {
		t.Fatalf("testenv: migrate test database: %v", err)
	}
	return db, url
}

// PostgresURL creates an empty database of the test's own and returns its
// URL, for tests of EnsureDatabase and Migrate themselves. The database is
// dropped when the test ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("LETHE_TEST_DATABASE_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
	return createDatabase(t, base)
}

func createDatabase(t testing.TB, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		t.Fatalf("testenv: LETHE_TEST_DATABASE_URL must be a postgres:// URL")
	}
	var random [8]byte
	rand.Read(random[:])
	name := "lethe_test_" + hex.EncodeToString(random[:])

	ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
	defer cancel()
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("testenv: open %s: %v", u.Redacted(), err)
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("testenv: PostgreSQL is unreachable at %s: %v\n"+
			"Start it with `pg_ctlcluster 15 main start`, or point LETHE_TEST_DATABASE_URL at a server.",
			u.Redacted(), err)
	}
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(name)); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, base, name) })

	test := *u
	test.Path = "/" + name
	return test.String()
}

// dropDatabase runs after the test, when its pools should be closed; FORCE
// ends any connection a failed test left open.
func dropDatabase(t testing.TB, base, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
	defer cancel()
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Errorf("testenv: drop database %s: %v", name, err)
		return
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(name)+` WITH (FORCE)`); err != nil {
		t.Errorf("testenv: drop database %s: %v", name, err)
	}
}

// SettleTransactions waits until no transaction that began before the call
// is still running on the server, in any of its databases (other tests'
// included). The suppression list serves only entries that no running
// transaction can precede (registry.ListSuppressions), so a test waits here
// before it expects what it wrote to be listed.
func SettleTransactions(t testing.TB, db *sql.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), postgresSetupTimeout)
	defer cancel()
	var mark string
	if err := db.QueryRowContext(ctx, `SELECT pg_current_xact_id()::text`).Scan(&mark); err != nil {
		t.Fatalf("testenv: read a transaction id: %v", err)
	}
	for {
		var settled bool
		if err := db.QueryRowContext(ctx,
			`SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8`, mark).Scan(&settled); err != nil {
			t.Fatalf("testenv: a transaction older than %s is still running after %v: %v", mark, postgresSetupTimeout, err)
		}
		if settled {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
