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
// or with req.DryRun counts them and changes nothing.
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

	// Locking the accounts keeps a device from being added between the
	// reads below and the deletes.
	users, err := queryStrings(ctx, tx, `
		SELECT user_id FROM demo_accounts.accounts
		WHERE user_id = ANY($1) OR email = ANY($2)
		ORDER BY user_id FOR UPDATE`, pq.StringArray(userIDs), pq.StringArray(emails))
	if err != nil {
		return connectors.Result{}, fmt.Errorf("accounts: find accounts: %w", err)
	}
	if len(users) == 0 {
		return notFound("no account matches"), nil
	}
	devices, err := queryStrings(ctx, tx, `
		SELECT device_id FROM demo_accounts.devices
		WHERE user_id = ANY($1)
		ORDER BY device_id FOR UPDATE`, pq.StringArray(users))
	if err != nil {
		return connectors.Result{}, fmt.Errorf("accounts: find devices: %w", err)
	}
	if !req.DryRun {
		if _, err := tx.ExecContext(ctx, `DELETE FROM demo_accounts.devices WHERE user_id = ANY($1)`, pq.StringArray(users)); err != nil {
			return connectors.Result{}, fmt.Errorf("accounts: delete devices: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM demo_accounts.accounts WHERE user_id = ANY($1)`, pq.StringArray(users)); err != nil {
			return connectors.Result{}, fmt.Errorf("accounts: delete accounts: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return connectors.Result{}, fmt.Errorf("accounts: %w", err)
		}
	}
	derived := make([]wire.Identifier, 0, len(devices))
	for _, d := range devices {
		derived = append(derived, wire.Identifier{Type: TypeDeviceID, Value: d})
	}
	n := int64(len(users) + len(devices))
	return connectors.Result{
		Outcome: wire.OutcomeErased,
		Records: n,
		Detail:  describe(req.DryRun, "%d account(s) and %d device(s)", len(users), len(devices)),
		Derived: derived,
	}, nil
}

// Orders erases a user's orders by user_id.
type Orders struct {
	DB *sql.DB
}

// Erase deletes the user's orders, or with req.DryRun counts them.
func (o *Orders) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	return eraseRows(ctx, o.DB, req, table{
		system: SystemOrders, name: "demo_orders.orders", column: "user_id", idType: TypeUserID, noun: "order(s)",
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
	})
}

// table names the one table a single-table system erases from. Every field
// is a constant of this package, never input, so it may be spliced into SQL.
type table struct {
	system, name, column, idType, noun string
}

// eraseRows deletes (or, in a dry run, counts) the rows of t whose column
// holds one of the request's values of t.idType.
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
	} else {
		var res sql.Result
		res, err = tx.ExecContext(ctx, `DELETE FROM `+t.name+where, pq.StringArray(values))
		if err == nil {
			n, err = res.RowsAffected()
		}
	}
	if err != nil {
		return connectors.Result{}, fmt.Errorf("%s: erase from %s: %w", t.system, t.name, err)
	}
	if n == 0 {
		return notFound("no " + t.noun + " match"), nil
	}
	if !req.DryRun {
		if err := tx.Commit(); err != nil {
			return connectors.Result{}, fmt.Errorf("%s: %w", t.system, err)
		}
	}
	return connectors.Result{
		Outcome: wire.OutcomeErased,
		Records: n,
		Detail:  describe(req.DryRun, "%d %s", n, t.noun),
	}, nil
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
