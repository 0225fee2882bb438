package connectors_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq" // the driver a service would pick; the SDK itself imports none

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// openPostgres opens an empty database of the test's own with lib/pq.
func openPostgres(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPostgresDedup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	db := openPostgres(t)

	// Replicas starting together create the table together.
	stores := make([]connectors.DedupStore, 4)
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = connectors.NewPostgresDedup(ctx, db, "") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: NewPostgresDedup = %v", i, err)
		}
	}
	a, b := stores[0], stores[1]

	cmd := commandFor()
	first := connectors.NewConfirmation(cmd, connectors.Result{
		Outcome: wire.OutcomeErased, Records: 3, Detail: "orders and invoices",
		Derived: []wire.Identifier{{Type: "stripe_customer_id", Value: "cus_123"}},
	}, time.Date(2026, 11, 25, 10, 0, 2, 123456789, time.UTC))

	if _, found, err := a.Get(ctx, cmd.CommandID); err != nil || found {
		t.Fatalf("Get before Put = found %v, %v; want nothing", found, err)
	}
	if err := a.Put(ctx, first); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, found, err := b.Get(ctx, cmd.CommandID)
	if err != nil || !found {
		t.Fatalf("Get from another replica = found %v, %v; want the recorded confirmation", found, err)
	}
	if !equalConfirmations(got, first) || got.Schema != first.Schema {
		t.Errorf("Get = %+v, want %+v", got, first)
	}

	// A second record of the same command, by another replica, changes
	// nothing: the first one wins.
	second := connectors.NewConfirmation(cmd, connectors.Result{Outcome: wire.OutcomeNotFound}, time.Now())
	if err := b.Put(ctx, second); err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if err := a.Put(ctx, first); err != nil {
		t.Fatalf("repeated Put: %v", err)
	}
	if got, _, _ := a.Get(ctx, cmd.CommandID); !equalConfirmations(got, first) {
		t.Errorf("after a second Put, Get = %+v, want the first %+v", got, first)
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+connectors.DefaultDedupTable).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("table holds %d rows (%v), want 1", rows, err)
	}
}

func TestPostgresDedupTableNames(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	db := openPostgres(t)
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA connector`); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"orders_dedup", "connector.dedup"} {
		s, err := connectors.NewPostgresDedup(ctx, db, table)
		if err != nil {
			t.Errorf("NewPostgresDedup(%q) = %v", table, err)
			continue
		}
		c := connectors.NewConfirmation(commandFor(), connectors.Result{Outcome: wire.OutcomeNotFound}, time.Now())
		if err := s.Put(ctx, c); err != nil {
			t.Errorf("Put into %s: %v", table, err)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 1 {
			t.Errorf("%s holds %d rows (%v), want 1", table, n, err)
		}
	}
	for _, table := range []string{"Orders", "a.b.c", "x; DROP TABLE y", `"quoted"`, "1st", "a_table_name_far_too_long_to_leave_room_for_its_index"} {
		if _, err := connectors.NewPostgresDedup(ctx, db, table); err == nil {
			t.Errorf("NewPostgresDedup(%q) = nil error, want the name refused", table)
		}
	}
	if _, err := connectors.NewPostgresDedup(ctx, nil, ""); err == nil {
		t.Errorf("NewPostgresDedup with a nil database = nil error")
	}
}

// TestPostgresDedupPrunesExpiredRows checks that a store deletes what it
// recorded longer ago than the retention: derived identifiers are personal
// data of an erased subject, and must not stay forever.
func TestPostgresDedupPrunesExpiredRows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	db := openPostgres(t)
	old, err := connectors.NewPostgresDedup(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	expired := connectors.NewConfirmation(commandFor(), connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, time.Now())
	if err := old.Put(ctx, expired); err != nil {
		t.Fatal(err)
	}
	age := fmt.Sprintf("%d seconds", int64((connectors.DedupRetention+time.Hour)/time.Second))
	if _, err := db.ExecContext(ctx, `UPDATE `+connectors.DefaultDedupTable+` SET recorded_at = now() - $1::interval`, age); err != nil {
		t.Fatal(err)
	}

	// A store prunes on its first record, then at most hourly.
	fresh, err := connectors.NewPostgresDedup(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	kept := connectors.NewConfirmation(newCommand(uuid.NewString()), connectors.Result{Outcome: wire.OutcomeNotFound}, time.Now())
	if err := fresh.Put(ctx, kept); err != nil {
		t.Fatal(err)
	}
	if _, found, err := fresh.Get(ctx, expired.CommandID); err != nil || found {
		t.Errorf("expired confirmation found=%v (%v), want it deleted", found, err)
	}
	if _, found, err := fresh.Get(ctx, kept.CommandID); err != nil || !found {
		t.Errorf("fresh confirmation found=%v (%v), want it kept", found, err)
	}
}

func TestPostgresDedupKeepsPendingState(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	db := openPostgres(t)
	d, err := connectors.NewPostgresDedup(ctx, db, "public.my_dedup")
	if err != nil {
		t.Fatalf("NewPostgresDedup: %v", err)
	}
	s, ok := d.(connectors.PendingStore)
	if !ok {
		t.Fatal("the PostgreSQL store is not a PendingStore")
	}
	pendingStoreContract(t, s)
	// Another replica, or the same service after a restart, sees the state.
	if err := s.PutPending(ctx, "c", []byte(`{"attempt":3}`)); err != nil {
		t.Fatal(err)
	}
	again, err := connectors.NewPostgresDedup(ctx, db, "public.my_dedup")
	if err != nil {
		t.Fatalf("NewPostgresDedup again: %v", err)
	}
	state, found, err := again.(connectors.PendingStore).GetPending(ctx, "c")
	if err != nil || !found || !strings.Contains(strings.ReplaceAll(string(state), " ", ""), `"attempt":3`) {
		t.Errorf("a new store on the table: GetPending = %s, %v, %v; want the recorded state", state, found, err)
	}
}
