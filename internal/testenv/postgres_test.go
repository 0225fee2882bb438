package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPostgresGivesMigratedDatabaseAndDropsIt(t *testing.T) {
	var name string
	t.Run("use", func(t *testing.T) {
		db, dbURL := Postgres(t)
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", dbURL, err)
		}
		name = strings.TrimPrefix(u.Path, "/")
		if !strings.HasPrefix(name, "lethe_test_") {
			t.Errorf("database name = %q, want prefix lethe_test_", name)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var current string
		if err := db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&current); err != nil {
			t.Fatalf("current_database: %v", err)
		}
		if current != name {
			t.Errorf("pool is on %q, url names %q", current, name)
		}
		var versions int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions); err != nil {
			t.Fatalf("count schema_migrations: %v", err)
		}
		if versions == 0 {
			t.Errorf("schema_migrations is empty, want the migrations applied")
		}
	})
	if exists(t, name) {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestPostgresURLGivesEmptyDatabase(t *testing.T) {
	var (
		name   string
		leaked *sql.DB
	)
	t.Run("use", func(t *testing.T) {
		dbURL := PostgresURL(t)
		u, _ := url.Parse(dbURL)
		name = strings.TrimPrefix(u.Path, "/")
		db, err := sql.Open("postgres", dbURL)
		if err != nil {
			t.Fatal(err)
		}
		// Left open past the test on purpose: the drop must end it.
		leaked = db
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var tables int
		if err := db.QueryRowContext(ctx,
			`SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`,
		).Scan(&tables); err != nil {
			t.Fatalf("count tables: %v", err)
		}
		if tables != 0 {
			t.Errorf("public tables = %d, want 0", tables)
		}
	})
	defer leaked.Close()
	if exists(t, name) {
		t.Errorf("database %s still exists after its test ended, with a connection open", name)
	}
}

func TestUnreachablePostgresFailsWithHowToStartIt(t *testing.T) {
	ft := &fatalTB{TB: t}
	var wg sync.WaitGroup
	wg.Go(func() {
		createDatabase(ft, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5")
	})
	wg.Wait()
	if !ft.failed {
		t.Fatalf("createDatabase on an unreachable server did not fail the test")
	}
	if !strings.Contains(ft.msg, "pg_ctlcluster 15 main start") {
		t.Errorf("failure message = %q, want it to say how to start PostgreSQL", ft.msg)
	}
}

// fatalTB records Fatalf instead of failing the real test, and stops the
// calling goroutine the way testing.T does.
type fatalTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func exists(t *testing.T, name string) bool {
	t.Helper()
	base := os.Getenv("LETHE_TEST_DATABASE_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
	db, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var found bool
	if err := db.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name,
	).Scan(&found); err != nil {
		t.Fatalf("look up database %s: %v", name, err)
	}
	return found
}

// TestSettleTransactionsWaitsForOlderTransactions holds a transaction open
// and checks that SettleTransactions returns only once it has ended.
func TestSettleTransactionsWaitsForOlderTransactions(t *testing.T) {
	db, _ := Postgres(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	// The transaction ends a moment later, from another goroutine, while
	// this one waits in SettleTransactions.
	var committed atomic.Bool
	commitErr := make(chan error, 1)
	time.AfterFunc(300*time.Millisecond, func() {
		committed.Store(true)
		commitErr <- tx.Commit()
	})
	SettleTransactions(t, db)
	if !committed.Load() {
		t.Fatal("SettleTransactions returned while an older transaction was running")
	}
	if err := <-commitErr; err != nil {
		t.Fatal(err)
	}
}
