package registry_test

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

func openDB(t *testing.T, dbURL string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// schema lists the tables and triggers Migrate is expected to leave.
func schema(t *testing.T, ctx context.Context, db *sql.DB) (tables []string, versions int) {
	t.Helper()
	rows, err := db.QueryContext(ctx,
		`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions); err != nil {
		t.Fatalf("count schema_migrations: %v", err)
	}
	return tables, versions
}

var wantTables = []string{
	"api_tokens", "audit_chain_head", "audit_events", "batch_certificates", "batch_chunks", "batch_ledger_writes", "batch_outcomes",
	"batch_subject_digests", "batch_subjects", "bulk_retries", "erasure_batches", "erasure_certificates", "erasure_requests", "erasure_systems",
	"ledger_batches", "legal_hold_subjects", "legal_holds", "pull_commands", "request_holds", "request_subjects", "schema_migrations", "system_credentials", "systems",
}

// wantVersions is how many migrations are embedded.
const wantVersions = 17

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	db := openDB(t, testenv.PostgresURL(t))

	for i := range 2 {
		if err := registry.Migrate(ctx, db); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	tables, versions := schema(t, ctx, db)
	if strings.Join(tables, ",") != strings.Join(wantTables, ",") {
		t.Errorf("tables = %v, want %v", tables, wantTables)
	}
	if versions != wantVersions {
		t.Errorf("schema_migrations has %d rows, want %d (each migration applied once)", versions, wantVersions)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dbURL := testenv.PostgresURL(t)

	// Separate pools, as separate processes would have.
	const migrators = 6
	errs := make([]error, migrators)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i := range migrators {
		db := openDB(t, dbURL)
		wg.Go(func() {
			<-ready
			errs[i] = registry.Migrate(ctx, db)
		})
	}
	close(ready)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	tables, versions := schema(t, ctx, openDB(t, dbURL))
	if strings.Join(tables, ",") != strings.Join(wantTables, ",") {
		t.Errorf("tables = %v, want %v", tables, wantTables)
	}
	if versions != wantVersions {
		t.Errorf("schema_migrations has %d rows, want %d", versions, wantVersions)
	}
}

func TestEnsureDatabase(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	// A server-side home for the test: the new database is created next to
	// it and dropped from it.
	homeURL := testenv.PostgresURL(t)
	home := openDB(t, homeURL)

	u, err := url.Parse(homeURL)
	if err != nil {
		t.Fatal(err)
	}
	// A name that only survives if it is quoted as an identifier.
	name := strings.TrimPrefix(u.Path, "/") + ` New-"DB"`
	u.Path = "/" + name
	target := u.String()
	t.Cleanup(func() {
		if _, err := home.ExecContext(context.Background(),
			`DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(name)+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})

	exists := func() bool {
		t.Helper()
		var found bool
		if err := home.QueryRowContext(ctx,
			`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name,
		).Scan(&found); err != nil {
			t.Fatal(err)
		}
		return found
	}

	if exists() {
		t.Fatalf("database %q exists before EnsureDatabase", name)
	}
	t.Run("creates a missing database", func(t *testing.T) {
		if err := registry.EnsureDatabase(ctx, target); err != nil {
			t.Fatalf("EnsureDatabase: %v", err)
		}
		if !exists() {
			t.Fatalf("database %q does not exist after EnsureDatabase", name)
		}
		// The URL works as given: Migrate can run on it.
		if err := registry.Migrate(ctx, openDB(t, target)); err != nil {
			t.Errorf("Migrate on the new database: %v", err)
		}
	})
	t.Run("is a no-op when it exists", func(t *testing.T) {
		if err := registry.EnsureDatabase(ctx, target); err != nil {
			t.Fatalf("EnsureDatabase again: %v", err)
		}
		var versions int
		if err := openDB(t, target).QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions); err != nil {
			t.Fatalf("the existing database lost its contents: %v", err)
		}
	})
}

func TestEnsureDatabaseConcurrently(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	homeURL := testenv.PostgresURL(t)
	home := openDB(t, homeURL)
	u, _ := url.Parse(homeURL)
	name := strings.TrimPrefix(u.Path, "/") + "_race"
	u.Path = "/" + name
	t.Cleanup(func() {
		home.ExecContext(context.Background(), `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(name)+` WITH (FORCE)`)
	})

	const callers = 4
	errs := make([]error, callers)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-ready
			errs[i] = registry.EnsureDatabase(ctx, u.String())
		})
	}
	close(ready)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
}
