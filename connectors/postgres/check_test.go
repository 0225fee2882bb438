package postgres_test

import (
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/connectors/postgres"
)

func TestNewAcceptsTheExample(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	newConnector(ctx, t, db, exampleConfig(t))
}

func TestNewRejectsBadStatements(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	seedCustomer(ctx, t, db, "u-1", "cus_1")
	if _, err := db.ExecContext(ctx, `
		CREATE FUNCTION note(v text) RETURNS text LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO audit VALUES ('noted'); RETURN v; END $$`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// erase and reveal are the statements of identifier type user_id;
		// the one under test is the last of its list.
		erase  []string
		reveal string
		where  string
		want   string
	}{
		{name: "two parameters", erase: []string{
			`DELETE FROM invoices WHERE user_id = $1`,
			`DELETE FROM invoices WHERE user_id = $1 OR user_id = $2`,
		}, where: "erase[1]", want: "takes 2 parameters"},
		{name: "no parameter", erase: []string{`DELETE FROM invoices`},
			where: "erase[0]", want: "takes 0 parameters"},
		{name: "only the second parameter", erase: []string{`DELETE FROM invoices WHERE user_id = $2`},
			where: "erase[0]", want: "rejects the statement"},
		{name: "unknown table", erase: []string{`DELETE FROM invoice WHERE user_id = $1`},
			where: "erase[0]", want: `relation "invoice" does not exist`},
		{name: "unknown column", erase: []string{`UPDATE payments SET cardholder = NULL WHERE user_id = $1`},
			where: "erase[0]", want: `column "cardholder"`},
		{name: "two statements in one", erase: []string{`DELETE FROM invoices WHERE user_id = $1; DROP TABLE payments`},
			where: "erase[0]", want: "multiple commands"},
		{name: "select as erase", erase: []string{`WITH i AS (SELECT id FROM invoices WHERE user_id = $1) SELECT id FROM i`},
			where: "erase[0]", want: "not a DELETE or UPDATE"},
		{name: "counting a delete through a select", erase: []string{`WITH d AS (DELETE FROM invoices WHERE user_id = $1 RETURNING id) SELECT count(*) FROM d`},
			where: "erase[0]", want: "not a DELETE or UPDATE"},
		{name: "insert hidden in a delete", erase: []string{`WITH a AS (INSERT INTO audit VALUES ($1)) DELETE FROM invoices WHERE user_id = $1`},
			where: "erase[0]", want: "contains INSERT"},
		{name: "reveal with two parameters", reveal: `SELECT stripe_customer_id FROM customers WHERE user_id = $1 AND email = $2`,
			where: "reveal[0]", want: "takes 2 parameters"},
		{name: "reveal of an unknown column", reveal: `SELECT stripe_id FROM customers WHERE user_id = $1`,
			where: "reveal[0]", want: `column "stripe_id" does not exist`},
		{name: "reveal through a writing CTE", reveal: `WITH u AS (UPDATE customers SET email = NULL WHERE user_id = $1 RETURNING stripe_customer_id) SELECT stripe_customer_id FROM u`,
			where: "reveal[0]", want: "modifies data"},
		{name: "reveal through a deleting CTE", reveal: `WITH d AS (DELETE FROM customers WHERE user_id = $1 RETURNING stripe_customer_id) SELECT * FROM d`,
			where: "reveal[0]", want: "modifies data"},
		{name: "reveal through a writing function", reveal: `SELECT note($1)`,
			where: "reveal[0]", want: "read-only transaction"},
		{name: "reveal that locks", reveal: `SELECT stripe_customer_id FROM customers WHERE user_id = $1 FOR UPDATE`,
			where: "reveal[0]", want: "read-only transaction"},
		{name: "reveal of two columns", reveal: `SELECT stripe_customer_id, email FROM customers WHERE user_id = $1`,
			where: "reveal[0]", want: "returns 2 columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := postgres.Config{System: "billing", DatabaseURL: "postgres://unused", Identifiers: map[string]postgres.Statements{
				"user_id": {Erase: tt.erase},
			}}
			if tt.reveal != "" {
				cfg.Identifiers["user_id"] = postgres.Statements{Reveal: []postgres.Reveal{{Type: "stripe_customer_id", Query: tt.reveal}}}
			}
			_, err := postgres.New(ctx, db, cfg)
			if err == nil {
				t.Fatal("New accepted the statement")
			}
			t.Log(err)
			if where := "identifiers.user_id." + tt.where; !strings.Contains(err.Error(), where) {
				t.Errorf("error %q does not name %s", err, where)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to say %q", err, tt.want)
			}
		})
	}

	// Checking changed nothing: the seeded rows are all there, the writing
	// function's note was rolled back, and the table named after DROP stands.
	cu, inv, pay := holdings(ctx, t, db, "u-1")
	var notes int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM audit`).Scan(&notes); err != nil {
		t.Fatal(err)
	}
	if cu != 1 || inv != 2 || pay != 1 || notes != 0 {
		t.Errorf("after the checks: %d customers, %d invoices, %d payments, %d notes; want 1, 2, 1, 0", cu, inv, pay, notes)
	}
}

func TestNewRejectsAStatementOfAnotherType(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	cfg := exampleConfig(t)
	cfg.Identifiers["stripe_customer_id"] = postgres.Statements{Erase: []string{
		`DELETE FROM customers WHERE stripe_customer_id = $1`,
		`DELETE FROM customers WHERE stripe_customer_id = $1 AND user_id = $2`,
	}}
	_, err := postgres.New(ctx, db, cfg)
	if err == nil || !strings.Contains(err.Error(), "identifiers.stripe_customer_id.erase[1]") {
		t.Errorf("New error %v, want it to name identifiers.stripe_customer_id.erase[1]", err)
	}
}

func TestNewRejectsAnInvalidConfig(t *testing.T) {
	t.Parallel()
	ctx, db, _ := billingDB(t)
	cfg := exampleConfig(t)
	cfg.Identifiers["user_id"] = postgres.Statements{Erase: []string{`INSERT INTO audit VALUES ($1)`}}
	if _, err := postgres.New(ctx, db, cfg); err == nil || !strings.Contains(err.Error(), "starts with INSERT") {
		t.Errorf("New error %v, want the INSERT refused", err)
	}
}
