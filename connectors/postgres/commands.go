package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/lethe-dev/lethe/wire"
)

// ledger is the commands table (Config.Commands): one row per command carried out, written in the
// command's own transaction, so that the erasure and the memory of it commit
// together or not at all. The SDK's de-duplication store cannot give that:
// it records a confirmation after the handler's transaction has committed,
// and a crash in between would run the command again.
type ledger struct {
	name      string // as configured, for messages
	table     string // quoted, for SQL
	retention time.Duration
}

func newLedger(d Commands) ledger {
	d = d.withDefaults()
	parts := strings.Split(d.Table, ".")
	for i, p := range parts {
		parts[i] = pq.QuoteIdentifier(p)
	}
	return ledger{name: d.Table, table: strings.Join(parts, "."), retention: d.Retention}
}

// ddl creates the table. An operator without CREATE rights runs it once
// by hand; the error of ensure quotes it.
func (l ledger) ddl() string {
	return `CREATE TABLE IF NOT EXISTS ` + l.table + ` (
	command_id  text PRIMARY KEY,
	request_id  text NOT NULL,
	outcome     text NOT NULL,
	records     bigint NOT NULL,
	detail      text NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now())`
}

// ensure creates the table when it is missing and checks that it has the
// columns the connector uses.
func (l ledger) ensure(ctx context.Context, conn *sql.Conn) error {
	probe := `SELECT command_id, request_id, outcome, records, detail, recorded_at FROM ` + l.table + ` WHERE false`
	if _, err := conn.ExecContext(ctx, probe); err == nil {
		return nil
	} else if pq.As(err, pqerror.UndefinedTable) == nil {
		return fmt.Errorf("commands table %s is unusable: %w", l.name, err)
	}
	if _, err := conn.ExecContext(ctx, l.ddl()); err != nil {
		return fmt.Errorf("commands table %s is missing and cannot be created (%w); create it with:\n%s", l.name, err, l.ddl())
	}
	if _, err := conn.ExecContext(ctx, probe); err != nil {
		return fmt.Errorf("commands table %s is unusable: %w", l.name, err)
	}
	return nil
}

// record is what the table remembers of a command.
type record struct {
	requestID string
	outcome   wire.Outcome
	records   int64
	detail    string
}

// claim takes the command id for this transaction. It reports false when
// the command was carried out already, and then returns its record. A
// concurrent transaction carrying out the same command holds the row, so
// claim waits for it to end: committed, its record answers; rolled back,
// this one claims the id.
func (l ledger) claim(ctx context.Context, tx *sql.Tx, commandID, requestID string) (claimed bool, rec record, err error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO `+l.table+` (command_id, request_id, outcome, records, detail)
		VALUES ($1, $2, '', 0, '') ON CONFLICT (command_id) DO NOTHING`, commandID, requestID)
	if err != nil {
		return false, record{}, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, record{}, err
	} else if n == 1 {
		return true, record{}, nil
	}
	var outcome string
	err = tx.QueryRowContext(ctx, `SELECT request_id, outcome, records, detail FROM `+l.table+` WHERE command_id = $1`, commandID).
		Scan(&rec.requestID, &outcome, &rec.records, &rec.detail)
	if errors.Is(err, sql.ErrNoRows) {
		// Pruned between the two statements: as good as never seen.
		return false, record{}, errors.New("the command's record vanished while it was read")
	}
	rec.outcome = wire.Outcome(outcome)
	return false, rec, err
}

// finish stores the outcome of the command claimed in tx.
func (l ledger) finish(ctx context.Context, tx *sql.Tx, commandID string, outcome wire.Outcome, records int64, detail string) error {
	_, err := tx.ExecContext(ctx, `UPDATE `+l.table+` SET outcome = $2, records = $3, detail = $4, recorded_at = now()
		WHERE command_id = $1`, commandID, string(outcome), records, detail)
	return err
}

// prune deletes the records older than the retention.
func (l ledger) prune(ctx context.Context, db *sql.DB) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM `+l.table+` WHERE recorded_at < now() - make_interval(secs => $1)`,
		l.retention.Seconds())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
