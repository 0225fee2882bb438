package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/postgres"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// schema is the billing service of example.yaml, plus a table whose key is
// an integer for the error tests.
const schema = `
CREATE TABLE customers (stripe_customer_id text PRIMARY KEY, user_id text NOT NULL, email text);
CREATE TABLE invoices  (id bigserial PRIMARY KEY, user_id text NOT NULL, amount_cents bigint NOT NULL);
CREATE TABLE payments  (id bigserial PRIMARY KEY, user_id text NOT NULL, amount_cents bigint NOT NULL,
                        card_holder text, email text);
CREATE TABLE accounts  (account_no integer PRIMARY KEY, user_id text NOT NULL);
CREATE TABLE audit     (note text);
`

// billingDB returns the URL of a fresh database with schema, and a pool on it.
func billingDB(t *testing.T) (context.Context, *sql.DB, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	url := testenv.PostgresURL(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	return ctx, db, url
}

// seedCustomer gives user one customer, two invoices and one payment.
func seedCustomer(ctx context.Context, t *testing.T, db *sql.DB, user, customer string) {
	t.Helper()
	if err := seed(ctx, db, user, customer); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func seed(ctx context.Context, db *sql.DB, user, customer string) error {
	_, err := db.ExecContext(ctx, `
		WITH c AS (INSERT INTO customers VALUES ($2, $1, $1 || '@example.com')),
		     i AS (INSERT INTO invoices (user_id, amount_cents) VALUES ($1, 100), ($1, 250))
		INSERT INTO payments (user_id, amount_cents, card_holder, email) VALUES ($1, 350, 'Ada Lovelace', $1 || '@example.com')`,
		user, customer)
	return err
}

// holdings counts what the service still holds for user: customers,
// invoices and payments not yet anonymised.
func holdings(ctx context.Context, t *testing.T, db *sql.DB, user string) (customers, invoices, payments int64) {
	t.Helper()
	err := db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM customers WHERE user_id = $1),
		(SELECT count(*) FROM invoices WHERE user_id = $1),
		(SELECT count(*) FROM payments WHERE user_id = $1 AND (card_holder IS NOT NULL OR email IS NOT NULL))`,
		user).Scan(&customers, &invoices, &payments)
	if err != nil {
		t.Fatalf("count holdings: %v", err)
	}
	return customers, invoices, payments
}

func parse(t *testing.T, yaml string) postgres.Config {
	t.Helper()
	cfg, err := postgres.ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return cfg
}

func exampleConfig(t *testing.T) postgres.Config {
	t.Helper()
	cfg, err := postgres.LoadConfig("example.yaml")
	if err != nil {
		t.Fatalf("LoadConfig(example.yaml): %v", err)
	}
	return cfg
}

func newConnector(ctx context.Context, t *testing.T, db *sql.DB, cfg postgres.Config) *postgres.Connector {
	t.Helper()
	c, err := postgres.New(ctx, db, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// request is a new command, with ids of its own.
func request(dryRun bool, ids ...wire.Identifier) connectors.Request {
	now := time.Now()
	return connectors.Request{
		CommandID: uuid.NewString(), RequestID: uuid.NewString(),
		System: "billing", Attempt: 1, Identifiers: ids, DryRun: dryRun, IssuedAt: now, ConfirmBy: now.Add(time.Hour),
	}
}

func id(idType, value string) wire.Identifier { return wire.Identifier{Type: idType, Value: value} }

func TestEraseAcrossTablesInOneTransaction(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	seedCustomer(ctx, t, db, "u-2", "cus_2")
	c := newConnector(ctx, t, db, exampleConfig(t))

	res, err := c.Erase(ctx, request(false, id("user_id", "u-1")))
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	// Two invoices deleted and one payment anonymised.
	if res.Outcome != wire.OutcomeErased || res.Records != 3 {
		t.Errorf("got %s with %d records, want erased with 3", res.Outcome, res.Records)
	}
	if want := []wire.Identifier{id("stripe_customer_id", "cus_1")}; !slices.Equal(res.Derived, want) {
		t.Errorf("derived %v, want %v", res.Derived, want)
	}
	if strings.Contains(res.Detail, "u-1") || strings.Contains(res.Detail, "cus_1") {
		t.Errorf("detail %q quotes an identifier value", res.Detail)
	}
	if cu, inv, pay := holdings(ctx, t, db, "u-1"); cu != 1 || inv != 0 || pay != 0 {
		t.Errorf("after erasing by user_id: %d customers, %d invoices, %d payments; want 1, 0, 0 (the customer goes by stripe_customer_id)", cu, inv, pay)
	}
	var kept int64
	if err := db.QueryRowContext(ctx, `SELECT amount_cents FROM payments WHERE user_id = 'u-1'`).Scan(&kept); err != nil || kept != 350 {
		t.Errorf("the anonymised payment's amount is %d (%v), want 350 kept for accounting", kept, err)
	}

	res, err = c.Erase(ctx, request(false, id("stripe_customer_id", "cus_1")))
	if err != nil || res.Outcome != wire.OutcomeErased || res.Records != 1 {
		t.Errorf("erase by stripe_customer_id: %+v, %v; want erased with 1 record", res, err)
	}
	if cu, _, _ := holdings(ctx, t, db, "u-1"); cu != 0 {
		t.Errorf("%d customers left, want 0", cu)
	}
	if cu, inv, pay := holdings(ctx, t, db, "u-2"); cu != 1 || inv != 2 || pay != 1 {
		t.Errorf("the bystander holds %d, %d, %d; want 1, 2, 1 untouched", cu, inv, pay)
	}

	// Erasing again finds nothing: the guarded UPDATE counts no row twice.
	res, err = c.Erase(ctx, request(false, id("user_id", "u-1"), id("stripe_customer_id", "cus_1")))
	if err != nil || res.Outcome != wire.OutcomeNotFound || res.Records != 0 || len(res.Derived) != 0 {
		t.Errorf("second erasure: %+v, %v; want not_found, 0 records, nothing derived", res, err)
	}
}

func TestEraseRevealsBeforeErasing(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	if _, err := db.ExecContext(ctx, `INSERT INTO customers VALUES ('cus_1b', 'u-1', NULL), ('cus_1c', 'u-1', NULL)`); err != nil {
		t.Fatal(err)
	}
	// The user_id statements delete the customers the reveal query reads,
	// and the query returns one customer twice and one NULL: the derived
	// identifiers must still be all the customers, each once, without the
	// one the request carries.
	cfg := parse(t, `
system: billing
database_url: postgres://unused
identifiers:
  user_id:
    erase:
      - DELETE FROM customers WHERE user_id = $1
    reveal:
      - type: stripe_customer_id
        query: SELECT stripe_customer_id FROM customers WHERE user_id = $1 ORDER BY 1
      - type: stripe_customer_id
        query: SELECT stripe_customer_id FROM customers WHERE user_id = $1 UNION ALL SELECT NULL
      - type: email
        query: SELECT email FROM customers WHERE user_id = $1
  stripe_customer_id:
    erase:
      - |
        -- a comment before the statement
        /* and another */ DELETE FROM customers WHERE stripe_customer_id = $1
`)
	c := newConnector(ctx, t, db, cfg)
	res, err := c.Erase(ctx, request(false, id("user_id", "u-1"), id("stripe_customer_id", "cus_1b")))
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	want := []wire.Identifier{id("stripe_customer_id", "cus_1"), id("stripe_customer_id", "cus_1c"), id("email", "u-1@example.com")}
	if !slices.Equal(res.Derived, want) {
		t.Errorf("derived %v, want %v", res.Derived, want)
	}
	if res.Outcome != wire.OutcomeErased || res.Records != 3 {
		t.Errorf("got %s with %d records, want erased with 3", res.Outcome, res.Records)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	c := newConnector(ctx, t, db, exampleConfig(t))

	dry, err := c.Erase(ctx, request(true, id("user_id", "u-1")))
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if cu, inv, pay := holdings(ctx, t, db, "u-1"); cu != 1 || inv != 2 || pay != 1 {
		t.Fatalf("after the dry run: %d, %d, %d; want everything kept (1, 2, 1)", cu, inv, pay)
	}
	if !strings.Contains(dry.Detail, "dry run") {
		t.Errorf("dry run detail %q does not say so", dry.Detail)
	}
	real, err := c.Erase(ctx, request(false, id("user_id", "u-1")))
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if dry.Outcome != real.Outcome || dry.Records != real.Records || !slices.Equal(dry.Derived, real.Derived) {
		t.Errorf("dry run reported %s/%d/%v, the erasure %s/%d/%v; want the same", dry.Outcome, dry.Records, dry.Derived, real.Outcome, real.Records, real.Derived)
	}

	dry, err = c.Erase(ctx, request(true, id("user_id", "u-nobody")))
	if err != nil || dry.Outcome != wire.OutcomeNotFound {
		t.Errorf("dry run for an unknown subject: %+v, %v; want not_found", dry, err)
	}
}

func TestEraseIgnoresUnconfiguredTypes(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	c := newConnector(ctx, t, db, exampleConfig(t))

	res, err := c.Erase(ctx, request(false, id("email", "u-1@example.com")))
	if err != nil || res.Outcome != wire.OutcomeNotFound || res.Records != 0 {
		t.Errorf("only an unconfigured type: %+v, %v; want not_found", res, err)
	}
	res, err = c.Erase(ctx, request(false, id("email", "u-1@example.com"), id("user_id", "u-1")))
	if err != nil || res.Outcome != wire.OutcomeErased || res.Records != 3 {
		t.Errorf("with user_id too: %+v, %v; want erased with 3 records", res, err)
	}
}

func TestFailingStatementRollsBackTheOthers(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	if _, err := db.ExecContext(ctx, `INSERT INTO accounts VALUES (7, 'u-1')`); err != nil {
		t.Fatal(err)
	}
	// The second statement casts the value to an integer, which fails for
	// u-1 once the first has already deleted the invoices.
	cfg := parse(t, `
system: billing
database_url: postgres://unused
identifiers:
  user_id:
    erase:
      - DELETE FROM invoices WHERE user_id = $1
      - DELETE FROM accounts WHERE account_no = $1::integer
`)
	c := newConnector(ctx, t, db, cfg)
	_, err := c.Erase(ctx, request(false, id("user_id", "u-1")))
	if err == nil {
		t.Fatal("Erase succeeded, want the second statement's error")
	}
	if !strings.Contains(err.Error(), "identifiers.user_id.erase[1]") || !strings.Contains(err.Error(), "22P02") {
		t.Errorf("error %q should name the statement and the SQLSTATE", err)
	}
	if strings.Contains(err.Error(), "u-1") {
		t.Errorf("error %q quotes the identifier value", err)
	}
	var pqErr interface{ SQLState() string }
	if !errors.As(err, &pqErr) || pqErr.SQLState() != "22P02" {
		t.Errorf("the driver's error is not reachable through errors.As: %v", err)
	}
	if _, inv, _ := holdings(ctx, t, db, "u-1"); inv != 2 {
		t.Errorf("%d invoices left, want the 2 the first statement deleted back", inv)
	}
}

func TestRevealQueriesCannotWriteAtRunTime(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	// A STRICT function is not called with the NULL of the start-up check,
	// so only the read-only savepoint stops it writing for a real value.
	if _, err := db.ExecContext(ctx, `
		CREATE FUNCTION sneaky(v text) RETURNS text STRICT LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO audit VALUES ('revealed'); RETURN v; END $$`); err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, `
system: billing
database_url: postgres://unused
identifiers:
  user_id:
    erase:
      - DELETE FROM invoices WHERE user_id = $1
    reveal:
      - type: email
        query: SELECT sneaky(email) FROM customers WHERE user_id = $1
`)
	c := newConnector(ctx, t, db, cfg)
	_, err := c.Erase(ctx, request(false, id("user_id", "u-1")))
	if err == nil || !strings.Contains(err.Error(), "identifiers.user_id.reveal[0]") || !strings.Contains(err.Error(), "25006") {
		t.Errorf("Erase error %v, want the reveal query refused as a read-only violation (25006)", err)
	}
	var notes, invoices int64
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM audit), (SELECT count(*) FROM invoices)`).Scan(&notes, &invoices); err != nil {
		t.Fatal(err)
	}
	if notes != 0 || invoices != 2 {
		t.Errorf("%d audit rows and %d invoices, want 0 and 2: nothing may change", notes, invoices)
	}
}

func TestEraseStopsWithTheContext(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	c := newConnector(ctx, t, db, exampleConfig(t))

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Erase(canceled, request(false, id("user_id", "u-1"))); err == nil {
		t.Error("Erase with a canceled context succeeded")
	}

	// A statement blocked on a lock is abandoned when the context ends, and
	// its transaction rolled back.
	lock, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, `LOCK TABLE payments IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.Erase(short, request(false, id("user_id", "u-1")))
		done <- err
	}()
	awaitLockWaits(ctx, t, db, 1)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Erase succeeded although its context ended while it waited")
		}
	case <-ctx.Done():
		t.Fatal("Erase did not return after its context ended")
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, inv, _ := holdings(ctx, t, db, "u-1"); inv != 2 {
		t.Errorf("%d invoices left, want the canceled erasure rolled back (2)", inv)
	}
}

// awaitLockWaits returns once n sessions of the database wait for a lock.
func awaitLockWaits(ctx context.Context, t *testing.T, db *sql.DB, n int) {
	t.Helper()
	for {
		var waiting int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			t.Fatalf("watch locks: %v", err)
		}
		if waiting >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d erasure(s) waiting for a lock, want %d", waiting, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
