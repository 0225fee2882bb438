package postgres_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/postgres"
	"github.com/lethe-dev/lethe/wire"
)

func batchRequest(dryRun bool, items ...[]wire.Identifier) connectors.BatchRequest {
	now := time.Now()
	req := connectors.BatchRequest{CommandID: uuid.NewString(), BatchID: uuid.NewString(), System: "billing", Attempt: 1,
		DryRun: dryRun, IssuedAt: now, ConfirmBy: now.Add(time.Hour)}
	for _, ids := range items {
		req.Items = append(req.Items, wire.BatchItem{ItemID: uuid.NewString(), Identifiers: ids})
	}
	return req
}

// TestEraseBatchCountsPerItem erases three subjects in one batch: two
// held (one also by stripe_customer_id, a type without erase_batch), one
// never held. Each item gets its own records and derived identifiers, the
// bystander keeps its data, and the same command again is answered alike
// from the commands table without erasing anything more.
func TestEraseBatchCountsPerItem(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	for _, u := range []string{"u-1", "u-2", "u-3"} {
		seedCustomer(ctx, t, db, u, "cus_"+strings.TrimPrefix(u, "u-"))
	}
	c := newConnector(ctx, t, db, exampleConfig(t))

	req := batchRequest(false,
		[]wire.Identifier{id("user_id", "u-1")},
		[]wire.Identifier{id("user_id", "u-2"), id("stripe_customer_id", "cus_2")},
		[]wire.Identifier{id("user_id", "u-9")},
		[]wire.Identifier{id("email", "ada@example.com")},
	)
	res, err := c.EraseBatch(ctx, req)
	if err != nil {
		t.Fatalf("EraseBatch: %v", err)
	}
	want := []struct {
		outcome wire.Outcome
		records int64
		derived []wire.Identifier
	}{
		{wire.OutcomeErased, 3, []wire.Identifier{id("stripe_customer_id", "cus_1")}},
		{wire.OutcomeErased, 4, nil}, // cus_2 was carried already: not derived
		{wire.OutcomeNotFound, 0, nil},
		{wire.OutcomeNotFound, 0, nil},
	}
	if len(res) != len(want) {
		t.Fatalf("%d results for %d items", len(res), len(want))
	}
	for i, w := range want {
		r := res[i]
		if r.ItemID != req.Items[i].ItemID || r.Outcome != w.outcome || r.Records != w.records || !slices.Equal(r.Derived, w.derived) {
			t.Errorf("item %d = %+v, want %s with %d records, derived %v", i, r, w.outcome, w.records, w.derived)
		}
	}
	if cu, inv, pay := holdings(ctx, t, db, "u-1"); cu != 1 || inv != 0 || pay != 0 {
		t.Errorf("u-1 holds %d, %d, %d; want 1, 0, 0", cu, inv, pay)
	}
	if cu, inv, pay := holdings(ctx, t, db, "u-2"); cu != 0 || inv != 0 || pay != 0 {
		t.Errorf("u-2 holds %d, %d, %d; want nothing", cu, inv, pay)
	}
	if cu, inv, pay := holdings(ctx, t, db, "u-3"); cu != 1 || inv != 2 || pay != 1 {
		t.Errorf("the bystander holds %d, %d, %d; want 1, 2, 1", cu, inv, pay)
	}

	again, err := c.EraseBatch(ctx, req)
	if err != nil {
		t.Fatalf("EraseBatch again: %v", err)
	}
	for i := range res {
		if again[i].Outcome != res[i].Outcome || again[i].Records != res[i].Records || again[i].Detail != res[i].Detail {
			t.Errorf("repeat item %d = %+v, want as first %+v", i, again[i], res[i])
		}
	}
	// Single commands and batch items share the commands table, each item
	// under its ItemCommandID.
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM lethe_connector_commands WHERE command_id = $1 AND records = 3`,
		connectors.ItemCommandID(req.CommandID, req.Items[0].ItemID)).Scan(&n); err != nil || n != 1 {
		t.Errorf("item 0 recorded %d times (%v), want once with 3 records", n, err)
	}
}

// TestEraseBatchOneStatementPerTable erases a hundred subjects and counts,
// with statement-level triggers, the statements that reached the invoices
// and payments tables: one each, while every item still gets its own
// records.
func TestEraseBatchOneStatementPerTable(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	if _, err := db.ExecContext(ctx, `
		CREATE TABLE stmt_count (tbl text PRIMARY KEY, n int NOT NULL);
		INSERT INTO stmt_count VALUES ('invoices', 0), ('payments', 0);
		CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN UPDATE stmt_count SET n = n + 1 WHERE tbl = TG_TABLE_NAME; RETURN NULL; END $$;
		CREATE TRIGGER count_invoices AFTER DELETE ON invoices FOR EACH STATEMENT EXECUTE FUNCTION bump();
		CREATE TRIGGER count_payments AFTER UPDATE ON payments FOR EACH STATEMENT EXECUTE FUNCTION bump();`); err != nil {
		t.Fatal(err)
	}
	var items [][]wire.Identifier
	for range 100 {
		u := "u-" + uuid.NewString()
		seedCustomer(ctx, t, db, u, "cus_"+uuid.NewString())
		items = append(items, []wire.Identifier{id("user_id", u)})
	}
	c := newConnector(ctx, t, db, exampleConfig(t))
	res, err := c.EraseBatch(ctx, batchRequest(false, items...))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Outcome != wire.OutcomeErased || r.Records != 3 {
			t.Errorf("item %d = %+v, want erased with 3 records", i, r)
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT tbl, n FROM stmt_count`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			tbl string
			n   int
		)
		if err := rows.Scan(&tbl, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%d statements reached %s for 100 subjects, want 1", n, tbl)
		}
	}
}

// TestEraseBatchDryRunChangesNothing: a dry run reports per item what the
// erasure would count, changes nothing and records nothing.
func TestEraseBatchDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	c := newConnector(ctx, t, db, exampleConfig(t))
	req := batchRequest(true, []wire.Identifier{id("user_id", "u-1")}, []wire.Identifier{id("user_id", "u-2")})
	res, err := c.EraseBatch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Outcome != wire.OutcomeErased || res[0].Records != 3 || !strings.HasPrefix(res[0].Detail, "dry run") ||
		res[1].Outcome != wire.OutcomeNotFound {
		t.Errorf("dry run = %+v", res)
	}
	if cu, inv, pay := holdings(ctx, t, db, "u-1"); cu != 1 || inv != 2 || pay != 1 {
		t.Errorf("after a dry run u-1 holds %d, %d, %d; want 1, 2, 1", cu, inv, pay)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM lethe_connector_commands`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the dry run recorded %d commands (%v)", n, err)
	}
}

// TestEraseBatchStatementsAreChecked: erase_batch statements must return
// one column and need erase statements beside them.
func TestEraseBatchStatementsAreChecked(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	cfg := parse(t, `
system: billing
database_url: postgres://unused
identifiers:
  user_id:
    erase: [DELETE FROM invoices WHERE user_id = $1]
    erase_batch: [DELETE FROM invoices WHERE user_id = ANY($1)]
`)
	if _, err := postgres.New(ctx, db, cfg); err == nil || !strings.Contains(err.Error(), "identifiers.user_id.erase_batch[0]: the statement returns 0 columns") {
		t.Errorf("New = %v, want the erase_batch statement refused for returning nothing", err)
	}
	if _, err := postgres.ParseConfig([]byte(`
system: billing
database_url: postgres://unused
identifiers:
  user_id:
    erase_batch: [DELETE FROM invoices WHERE user_id = ANY($1) RETURNING user_id]
`)); err == nil || !strings.Contains(err.Error(), "no erase statements") {
		t.Errorf("ParseConfig = %v, want erase_batch without erase refused", err)
	}
}
