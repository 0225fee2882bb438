package demo

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

var (
	_ connectors.Handler = (*Accounts)(nil)
	_ connectors.Handler = (*Orders)(nil)
	_ connectors.Handler = (*Analytics)(nil)
)

// Accounts erases a user's account and devices by user_id or email, and
// reports the devices' ids as derived identifiers so that Lethe reaches the
// systems that know the subject only by device.
type Accounts struct {
	DB *sql.DB
}

// Erase removes the matching accounts and their devices in one transaction,
// or with req.DryRun counts them and changes nothing. A command it has
// carried out before is answered from its ledger (see claim).
func (a *Accounts) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	userIDs, emails := req.Values(TypeUserID), req.Values(TypeEmail)
	if len(userIDs)+len(emails) == 0 {
		return notFound("the command carries no user_id or email"), nil
	}
	tx, err := a.DB.BeginTx(ctx, nil)
	if err != nil {
		return connectors.Result{}, fmt.Errorf("accounts: %w", err)
	}
	defer tx.Rollback()
	if !req.DryRun {
		if res, done, err := claim(ctx, tx, accountsLedger, req.CommandID); err != nil || done {
			return res, err
		}
	}

	// Locking the accounts keeps a device from being added between the
	// reads below and the deletes.
	users, err := queryStrings(ctx, tx, `
		SELECT user_id FROM demo_accounts.accounts
		WHERE user_id = ANY($1) OR email = ANY($2)
		ORDER BY user_id FOR UPDATE`, pq.StringArray(userIDs), pq.StringArray(emails))
	if err != nil {
		return connectors.Result{}, fmt.Errorf("accounts: find accounts: %w", err)
	}
	devices, err := queryStrings(ctx, tx, `
		SELECT device_id FROM demo_accounts.devices
		WHERE user_id = ANY($1)
		ORDER BY device_id FOR UPDATE`, pq.StringArray(users))
	if err != nil {
		return connectors.Result{}, fmt.Errorf("accounts: find devices: %w", err)
	}
	res := notFound("no account matches")
	if len(users) > 0 {
		derived := make([]wire.Identifier, 0, len(devices))
		for _, d := range devices {
			derived = append(derived, wire.Identifier{Type: TypeDeviceID, Value: d})
		}
		res = connectors.Result{
			Outcome: wire.OutcomeErased,
			Records: int64(len(users) + len(devices)),
			Detail:  describe(req.DryRun, "%d account(s) and %d device(s)", len(users), len(devices)),
			Derived: derived,
		}
	}
	if req.DryRun {
		return res, nil
	}
	if len(users) > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM demo_accounts.devices WHERE user_id = ANY($1)`, pq.StringArray(users)); err != nil {
			return connectors.Result{}, fmt.Errorf("accounts: delete devices: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM demo_accounts.accounts WHERE user_id = ANY($1)`, pq.StringArray(users)); err != nil {
			return connectors.Result{}, fmt.Errorf("accounts: delete accounts: %w", err)
		}
	}
	if err := record(ctx, tx, accountsLedger, req.CommandID, res); err != nil {
		return connectors.Result{}, fmt.Errorf("accounts: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return connectors.Result{}, fmt.Errorf("accounts: %w", err)
	}
	return res, nil
}

// Orders erases a user's orders by user_id.
type Orders struct {
	DB *sql.DB
}

// Erase deletes the user's orders, or with req.DryRun counts them.
func (o *Orders) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	return eraseRows(ctx, o.DB, req, table{
		system: SystemOrders, name: "demo_orders.orders", column: "user_id", idType: TypeUserID, noun: "order(s)",
		ledger: ordersLedger,
	})
}

// Analytics erases usage events by device_id, the only identifier it has:
// it never sees a user id or an email.
type Analytics struct {
	DB *sql.DB
}

// Erase deletes the devices' events, or with req.DryRun counts them.
func (a *Analytics) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	return eraseRows(ctx, a.DB, req, table{
		system: SystemAnalytics, name: "demo_analytics.events", column: "device_id", idType: TypeDeviceID, noun: "event(s)",
		ledger: analyticsLedger,
	})
}

// table names the one table a single-table system erases from, and the
// system's ledger. Every field is a constant of this package, never input,
// so it may be spliced into SQL.
type table struct {
	system, name, column, idType, noun, ledger string
}

// eraseRows deletes (or, in a dry run, counts) the rows of t whose column
// holds one of the request's values of t.idType. A command it has carried
// out before is answered from t's ledger (see claim).
func eraseRows(ctx context.Context, db *sql.DB, req connectors.Request, t table) (connectors.Result, error) {
	values := req.Values(t.idType)
	if len(values) == 0 {
		return notFound("the command carries no " + t.idType), nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return connectors.Result{}, fmt.Errorf("%s: %w", t.system, err)
	}
	defer tx.Rollback()
	where := ` WHERE ` + t.column + ` = ANY($1)`
	var n int64
	if req.DryRun {
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM `+t.name+where, pq.StringArray(values)).Scan(&n)
		if err != nil {
			return connectors.Result{}, fmt.Errorf("%s: count in %s: %w", t.system, t.name, err)
		}
		return rowsResult(true, n, t.noun), nil
	}
	if res, done, err := claim(ctx, tx, t.ledger, req.CommandID); err != nil || done {
		return res, err
	}
	deleted, err := tx.ExecContext(ctx, `DELETE FROM `+t.name+where, pq.StringArray(values))
	if err == nil {
		n, err = deleted.RowsAffected()
	}
	if err != nil {
		return connectors.Result{}, fmt.Errorf("%s: erase from %s: %w", t.system, t.name, err)
	}
	res := rowsResult(false, n, t.noun)
	if err := record(ctx, tx, t.ledger, req.CommandID, res); err != nil {
		return connectors.Result{}, fmt.Errorf("%s: %w", t.system, err)
	}
	if err := tx.Commit(); err != nil {
		return connectors.Result{}, fmt.Errorf("%s: %w", t.system, err)
	}
	return res, nil
}

func rowsResult(dryRun bool, n int64, noun string) connectors.Result {
	if n == 0 {
		return notFound("no " + noun + " match")
	}
	return connectors.Result{
		Outcome: wire.OutcomeErased,
		Records: n,
		Detail:  describe(dryRun, "%d %s", n, noun),
	}
}

// The ledgers of the commands each system has carried out, created by
// Migrate.
const (
	accountsLedger  = "demo_accounts.erasure_commands"
	ordersLedger    = "demo_orders.erasure_commands"
	analyticsLedger = "demo_analytics.erasure_commands"
)

// claim makes tx the one that carries out the command commandID, or, when
// the command was carried out before, returns its recorded result with done
// set. A repeated command id is the same command (Lethe re-dispatches it,
// Kafka redelivers it after a crash between erasing and confirming), and
// running it again would report not_found, or erase data the subject has
// since created. The connector SDK's de-duplication store answers most
// repeats, but only those it saw confirmed; the ledger, written in the
// erasure's own transaction, covers the rest. Claiming inserts the ledger's
// row first, so a concurrent delivery of the same command (on another
// replica) waits for this transaction and then finds its result.
//
// The ledger keeps no identifier values, so a repeat is answered without the
// derived identifiers the first answer carried: keeping them would keep
// personal data the erasure was meant to remove.
func claim(ctx context.Context, tx *sql.Tx, ledger, commandID string) (res connectors.Result, done bool, err error) {
	claimed, err := tx.ExecContext(ctx, `INSERT INTO `+ledger+` (command_id) VALUES ($1) ON CONFLICT (command_id) DO NOTHING`, commandID)
	if err != nil {
		return connectors.Result{}, false, fmt.Errorf("claim the command: %w", err)
	}
	n, err := claimed.RowsAffected()
	if err != nil {
		return connectors.Result{}, false, fmt.Errorf("claim the command: %w", err)
	}
	if n == 1 {
		return connectors.Result{}, false, nil
	}
	var outcome string
	err = tx.QueryRowContext(ctx, `SELECT outcome, records, detail FROM `+ledger+` WHERE command_id = $1`, commandID).
		Scan(&outcome, &res.Records, &res.Detail)
	if err != nil {
		return connectors.Result{}, false, fmt.Errorf("read the command's recorded result: %w", err)
	}
	res.Outcome = wire.Outcome(outcome)
	return res, true, nil
}

// record fills in the result of the command tx claimed.
func record(ctx context.Context, tx *sql.Tx, ledger, commandID string, res connectors.Result) error {
	_, err := tx.ExecContext(ctx, `UPDATE `+ledger+` SET outcome = $2, records = $3, detail = $4 WHERE command_id = $1`,
		commandID, string(res.Outcome), res.Records, res.Detail)
	if err != nil {
		return fmt.Errorf("record the command's result: %w", err)
	}
	return nil
}

func notFound(detail string) connectors.Result {
	return connectors.Result{Outcome: wire.OutcomeNotFound, Detail: detail}
}

// describe words a result's detail for people, saying whether anything was
// actually removed. It is given counts only, never identifier values.
func describe(dryRun bool, format string, args ...any) string {
	if dryRun {
		return "dry run: would erase " + fmt.Sprintf(format, args...)
	}
	return "erased " + fmt.Sprintf(format, args...)
}

// queryStrings runs a query returning one text column.
func queryStrings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
