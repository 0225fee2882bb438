package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
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

// claimMany claims the command ids of the items of a batch, in one
// statement, as claim does one: it returns the records of those carried out
// already, by command id; the others are claimed for tx. The ids are
// claimed in sorted order, so that two transactions claiming overlapping
// batches wait for each other instead of deadlocking.
func (l ledger) claimMany(ctx context.Context, tx *sql.Tx, commandIDs, requestIDs []string) (map[string]record, error) {
	order := make([]int, len(commandIDs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return commandIDs[order[a]] < commandIDs[order[b]] })
	cs, rs := make([]string, len(order)), make([]string, len(order))
	for k, i := range order {
		cs[k], rs[k] = commandIDs[i], requestIDs[i]
	}
	rows, err := tx.QueryContext(ctx, `INSERT INTO `+l.table+` (command_id, request_id, outcome, records, detail)
		SELECT c, r, '', 0, '' FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(c, r, n) ORDER BY n
		ON CONFLICT (command_id) DO NOTHING RETURNING command_id`, pq.Array(cs), pq.Array(rs))
	if err != nil {
		return nil, err
	}
	claimed := make(map[string]bool, len(cs))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		claimed[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var taken []string
	for _, id := range cs {
		if !claimed[id] {
			taken = append(taken, id)
		}
	}
	recs := make(map[string]record, len(taken))
	if len(taken) == 0 {
		return recs, nil
	}
	rows, err = tx.QueryContext(ctx, `SELECT command_id, request_id, outcome, records, detail FROM `+l.table+`
		WHERE command_id = ANY($1)`, pq.Array(taken))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, outcome string
			rec         record
		)
		if err := rows.Scan(&id, &rec.requestID, &outcome, &rec.records, &rec.detail); err != nil {
			return nil, err
		}
		rec.outcome = wire.Outcome(outcome)
		recs[id] = rec
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(recs) != len(taken) {
		return nil, errors.New("a command's record vanished while it was read")
	}
	return recs, nil
}

// release gives up the claims of commands that failed in tx, so that
// nothing is remembered of them.
func (l ledger) release(ctx context.Context, tx *sql.Tx, commandIDs []string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM `+l.table+` WHERE command_id = ANY($1)`, pq.Array(commandIDs))
	return err
}

// finishMany stores the outcomes of the commands claimed in tx, in one
// statement.
func (l ledger) finishMany(ctx context.Context, tx *sql.Tx, commandIDs []string, outcomes []string, records []int64, details []string) error {
	_, err := tx.ExecContext(ctx, `UPDATE `+l.table+` AS t SET outcome = u.o, records = u.r, detail = u.d, recorded_at = now()
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS u(c, o, r, d) WHERE t.command_id = u.c`,
		pq.Array(commandIDs), pq.Array(outcomes), pq.Array(records), pq.Array(details))
	return err
}
