package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/postgres"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

func commandRows(ctx context.Context, t *testing.T, db *sql.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestRepeatedCommandIsAnsweredFromTheRecord(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	c := newConnector(ctx, t, db, exampleConfig(t))

	req := request(false, id("user_id", "u-1"))
	first, err := c.Erase(ctx, req)
	if err != nil || first.Outcome != wire.OutcomeErased || first.Records != 3 {
		t.Fatalf("Erase: %+v, %v; want erased with 3 records", first, err)
	}
	// New data for the subject after the erasure: a repeated command must
	// not touch it, since Lethe asked once.
	if _, err := db.ExecContext(ctx, `INSERT INTO invoices (user_id, amount_cents) VALUES ('u-1', 999)`); err != nil {
		t.Fatal(err)
	}
	req.Attempt = 2
	again, err := c.Erase(ctx, req)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if again.Outcome != first.Outcome || again.Records != first.Records || again.Detail != first.Detail {
		t.Errorf("repeat answered %+v, want the first answer %+v", again, first)
	}
	// The customer row is still there, so the reveal query finds it again.
	if !slices.Equal(again.Derived, first.Derived) {
		t.Errorf("repeat derived %v, want %v", again.Derived, first.Derived)
	}
	if _, inv, _ := holdings(ctx, t, db, "u-1"); inv != 1 {
		t.Errorf("%d invoices, want the 1 added after the erasure untouched", inv)
	}

	// The same command id for another request is refused, not run.
	other := req
	other.RequestID = uuid.NewString()
	res, err := c.Erase(ctx, other)
	if err != nil || res.Outcome != wire.OutcomeFailed || res.Retryable {
		t.Errorf("command id reused by another request: %+v, %v; want a definitive failure", res, err)
	}
	if _, inv, _ := holdings(ctx, t, db, "u-1"); inv != 1 {
		t.Errorf("%d invoices, want 1: the reused command id must not run", inv)
	}

	var stored string
	if err := db.QueryRowContext(ctx, `SELECT concat_ws(' ', command_id, request_id, outcome, records, detail) FROM lethe_connector_commands`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, "u-1") || strings.Contains(stored, "cus_1") {
		t.Errorf("the commands table stores an identifier value: %q", stored)
	}
}

func TestOnlyCommittedErasuresAreRecorded(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	c := newConnector(ctx, t, db, parse(t, `
system: billing
database_url: postgres://unused
identifiers:
  user_id:
    erase:
      - DELETE FROM invoices WHERE user_id = $1
      - DELETE FROM accounts WHERE account_no = $1::integer
`))
	if _, err := c.Erase(ctx, request(true, id("user_id", "u-1"))); err == nil {
		t.Fatal("dry run succeeded, want the cast to fail")
	}
	if _, err := c.Erase(ctx, request(false, id("user_id", "u-1"))); err == nil {
		t.Fatal("Erase succeeded, want the cast to fail")
	}
	if n := commandRows(ctx, t, db, "lethe_connector_commands"); n != 0 {
		t.Errorf("%d records after failed erasures, want 0: a failed command must run again", n)
	}

	ok := newConnector(ctx, t, db, exampleConfig(t))
	req := request(true, id("user_id", "u-1"))
	if res, err := ok.Erase(ctx, req); err != nil || res.Records != 3 {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if n := commandRows(ctx, t, db, "lethe_connector_commands"); n != 0 {
		t.Errorf("%d records after a dry run, want 0", n)
	}
	// Were the dry run recorded, this would be answered from it.
	req.DryRun = false
	if res, err := ok.Erase(ctx, req); err != nil || res.Records != 3 {
		t.Fatalf("Erase after the dry run: %+v, %v; want 3 records", res, err)
	}
	if _, inv, _ := holdings(ctx, t, db, "u-1"); inv != 0 {
		t.Errorf("%d invoices left, want 0", inv)
	}
}

// TestConcurrentDuplicatesEraseOnce runs one command twice at the same time,
// as two replicas would after a rebalance: one erases, the other waits for
// it and answers from its record.
func TestConcurrentDuplicatesEraseOnce(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	c := newConnector(ctx, t, db, exampleConfig(t))

	lock, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, `LOCK TABLE payments IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	req := request(false, id("user_id", "u-1"))
	type answer struct {
		res connectors.Result
		err error
	}
	answers := make(chan answer, 2)
	for range 2 {
		go func() {
			res, err := c.Erase(ctx, req)
			answers <- answer{res, err}
		}()
	}
	// One waits for the payments lock, the other for the first's claim.
	awaitLockWaits(ctx, t, db, 2)
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		a := <-answers
		if a.err != nil || a.res.Outcome != wire.OutcomeErased || a.res.Records != 3 {
			t.Errorf("answer %+v, %v; want erased with 3 records from both", a.res, a.err)
		}
	}
	if n := commandRows(ctx, t, db, "lethe_connector_commands"); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

func TestPruneDeletesExpiredRecords(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	cfg := exampleConfig(t)
	cfg.Commands = postgres.Commands{Table: "lethe.commands", Retention: 240 * time.Hour}
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA lethe`); err != nil {
		t.Fatal(err)
	}
	c := newConnector(ctx, t, db, cfg)
	if _, err := db.ExecContext(ctx, `INSERT INTO lethe.commands (command_id, request_id, outcome, records, detail, recorded_at)
		VALUES ('old', 'r', 'erased', 1, '', now() - interval '11 days'), ('new', 'r', 'erased', 1, '', now() - interval '9 days')`); err != nil {
		t.Fatal(err)
	}
	n, err := c.Prune(ctx)
	if err != nil || n != 1 {
		t.Errorf("Prune = %d, %v; want 1 record deleted", n, err)
	}
	var left string
	if err := db.QueryRowContext(ctx, `SELECT string_agg(command_id, ',') FROM lethe.commands`).Scan(&left); err != nil || left != "new" {
		t.Errorf("left %q (%v), want only the record within the retention", left, err)
	}
}

func TestNewChecksTheCommandsTable(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE commands (command_id text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	cfg := exampleConfig(t)
	cfg.Commands.Table = "commands"
	_, err := postgres.New(ctx, db, cfg)
	if err == nil || !strings.Contains(err.Error(), "commands table commands is unusable") {
		t.Errorf("New error %v, want the table with missing columns refused", err)
	}
}

// TestNewWithoutPrivileges runs the connector as a role that may read and
// delete but not create tables or update payments, as a cautious operator
// sets it up: the checks see the missing privileges, and the missing commands
// table comes with the statement that creates it.
func TestNewWithoutPrivileges(t *testing.T) {
	role := randomRole(t)
	ctx, db, dbURL := billingDB(t)
	if _, err := db.ExecContext(ctx, `GRANT SELECT, DELETE ON invoices, customers TO `+role+`;
		GRANT SELECT ON payments TO `+role); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	limited, err := sql.Open("postgres", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()

	_, err = postgres.New(ctx, limited, exampleConfig(t))
	if err == nil || !strings.Contains(err.Error(), "identifiers.user_id.erase[1]") || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("New error %v, want the UPDATE of payments refused for its privileges", err)
	}
	if _, err := db.ExecContext(ctx, `GRANT UPDATE ON payments TO `+role); err != nil {
		t.Fatal(err)
	}
	_, err = postgres.New(ctx, limited, exampleConfig(t))
	if err == nil || !strings.Contains(err.Error(), "cannot be created") || !strings.Contains(err.Error(), "CREATE TABLE IF NOT EXISTS") {
		t.Fatalf("New error %v, want the commands table's DDL offered", err)
	}
	// An administrator runs the DDL it printed, and grants the role its use.
	ddl := err.Error()[strings.Index(err.Error(), "CREATE TABLE"):]
	if _, err := db.ExecContext(ctx, ddl+`; GRANT SELECT, INSERT, UPDATE, DELETE ON lethe_connector_commands TO `+role); err != nil {
		t.Fatalf("run the printed DDL: %v", err)
	}
	c := newConnector(ctx, t, limited, exampleConfig(t))
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	if res, err := c.Erase(ctx, request(false, id("user_id", "u-1"))); err != nil || res.Records != 3 {
		t.Errorf("Erase as the limited role: %+v, %v; want 3 records", res, err)
	}
}

// randomRole creates a login role for the test and drops it afterwards,
// once the test's database (where it holds privileges) is gone: t.Cleanup
// runs in reverse order, and the role is created before the database.
func randomRole(t *testing.T) string {
	t.Helper()
	base := os.Getenv("LETHE_TEST_DATABASE_URL")
	if base == "" {
		base = testenv.DefaultPostgresURL
	}
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	role := "lethe_test_role_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(t.Context(), `CREATE ROLE `+pq.QuoteIdentifier(role)+` LOGIN`); err != nil {
		admin.Close()
		t.Fatalf("create role: %v (PostgreSQL must be reachable at %s; start it with `pg_ctlcluster 15 main start`)", err, base)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.ExecContext(context.Background(), `DROP ROLE IF EXISTS `+pq.QuoteIdentifier(role)); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	return role
}
