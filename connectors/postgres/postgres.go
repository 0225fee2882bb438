// Package postgres is Lethe's reference connector for services whose data
// sits in PostgreSQL: a service team writes, per identifier type, the SQL
// that erases a subject (DELETE, or UPDATE to anonymise what accounting must
// keep) and optionally the queries that reveal further identifiers of the
// subject, and runs `lethe connector postgres --config FILE`. No Go is
// needed. Every statement is checked against the database at start-up; each
// command is carried out in one transaction, which also records the command
// in a table of the service's database, so that a command delivered
// again is answered from the record instead of being run twice.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

var (
	_ connectors.Handler      = (*Connector)(nil)
	_ connectors.BatchHandler = (*Connector)(nil)
)

// Connector is the connectors.Handler that runs a Config's statements. It
// holds no state of its own beyond the pool, so the SDK may call it for
// several commands at once.
type Connector struct {
	db     *sql.DB
	stmts  map[string]Statements
	ledger ledger
}

// New checks every statement of cfg against db and returns the connector
// that runs them. A statement that does not take exactly one parameter,
// names a missing table or column, or does something other than its role
// (an erase statement that is not a DELETE or UPDATE, a reveal query that
// writes or does not return exactly one column) is an error naming the
// identifier type and the statement's index. The checks change nothing in
// db; New only creates the commands table (Config.Commands) when it is missing.
func New(ctx context.Context, db *sql.DB, cfg Config) (*Connector, error) {
	if db == nil {
		return nil, errors.New("postgres connector: nil database")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres connector: connect: %w", err)
	}
	defer conn.Close()
	c := &Connector{db: db, stmts: make(map[string]Statements, len(cfg.Identifiers)), ledger: newLedger(cfg.Commands)}
	for _, t := range cfg.types() {
		s := cfg.Identifiers[t]
		for i, stmt := range s.Erase {
			if err := checkErase(ctx, conn, stmt); err != nil {
				return nil, fmt.Errorf("postgres connector: %s: %w", eraseName(t, i), err)
			}
		}
		for i, stmt := range s.EraseBatch {
			if err := checkEraseBatch(ctx, conn, stmt); err != nil {
				return nil, fmt.Errorf("postgres connector: %s: %w", eraseBatchName(t, i), err)
			}
		}
		for i, r := range s.Reveal {
			if err := checkReveal(ctx, conn, r.Query); err != nil {
				return nil, fmt.Errorf("postgres connector: %s: %w", revealName(t, i), err)
			}
		}
		c.stmts[t] = s
	}
	if err := c.ledger.ensure(ctx, conn); err != nil {
		return nil, fmt.Errorf("postgres connector: %w", err)
	}
	return c, nil
}

// Erase carries out one command in one transaction. For the request's
// identifiers of configured types (others are ignored), it first runs every
// reveal query, while all the data is still there, then every erase
// statement; Records is the sum of the rows they affected. The command is
// recorded in the commands table in the same transaction: a command carried
// out before is answered with its recorded outcome and records, and is not
// run again (its reveal queries are, to report the derived identifiers that
// can still be found, since the table keeps no identifier values).
//
// With req.DryRun the same statements run and the transaction is rolled
// back, so the counts and derived identifiers are those a real erasure would
// report; nothing is recorded. A database error is returned as an error,
// which the SDK treats as transient.
func (c *Connector) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	ids := c.configured(req.Identifiers)
	if len(ids) == 0 {
		return connectors.Result{Outcome: wire.OutcomeNotFound, Detail: "the command carries no identifier of a configured type"}, nil
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return connectors.Result{}, dbError("begin", err)
	}
	defer tx.Rollback()

	// A request without a command id (a handler called outside the SDK)
	// cannot be recognised again, so it is not recorded.
	remember := !req.DryRun && req.CommandID != ""
	if remember {
		claimed, rec, err := c.ledger.claim(ctx, tx, req.CommandID, req.RequestID)
		if err != nil {
			return connectors.Result{}, dbError("commands table "+c.ledger.name, err)
		}
		if !claimed {
			return c.repeat(ctx, tx, req, ids, rec)
		}
	}
	derived, skipped, err := c.reveal(ctx, tx, ids)
	if err != nil {
		return connectors.Result{}, err
	}
	if len(derived) > wire.MaxIdentifiers {
		// The confirmation could not carry them all, and dropping some would
		// leave the subject's data elsewhere: erase nothing, say why.
		return connectors.Result{
			Outcome: wire.OutcomeFailed,
			Detail: fmt.Sprintf("the reveal queries found %d derived identifiers, more than the %d a confirmation carries; nothing was erased",
				len(derived), wire.MaxIdentifiers),
		}, nil
	}
	records, err := c.erase(ctx, tx, ids)
	if err != nil {
		return connectors.Result{}, err
	}
	res := result(req.DryRun, records, derived, skipped)
	if req.DryRun {
		if err := tx.Rollback(); err != nil {
			return connectors.Result{}, dbError("roll back the dry run", err)
		}
		return res, nil
	}
	if remember {
		if err := c.ledger.finish(ctx, tx, req.CommandID, res.Outcome, res.Records, res.Detail); err != nil {
			return connectors.Result{}, dbError("commands table "+c.ledger.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return connectors.Result{}, dbError("commit", err)
	}
	return res, nil
}

// repeat answers a command carried out before with its record.
func (c *Connector) repeat(ctx context.Context, tx *sql.Tx, req connectors.Request, ids []wire.Identifier, rec record) (connectors.Result, error) {
	if rec.requestID != req.RequestID {
		return connectors.Result{
			Outcome: wire.OutcomeFailed,
			Detail:  "this command_id was carried out for another request; the command is not run",
		}, nil
	}
	derived, _, err := c.reveal(ctx, tx, ids)
	if err != nil {
		return connectors.Result{}, err
	}
	if len(derived) > wire.MaxIdentifiers {
		derived = nil
	}
	return connectors.Result{Outcome: rec.outcome, Records: rec.records, Detail: rec.detail, Derived: derived}, nil
}

// Prune deletes the commands table's records older than Config.Commands's
// retention and returns how many it deleted. Main calls it periodically; a
// program embedding the connector calls it as it sees fit.
func (c *Connector) Prune(ctx context.Context) (int64, error) {
	n, err := c.ledger.prune(ctx, c.db)
	if err != nil {
		return 0, dbError("prune commands table "+c.ledger.name, err)
	}
	return n, nil
}

// configured returns the request's identifiers of configured types, each
// (type, value) once.
func (c *Connector) configured(ids []wire.Identifier) []wire.Identifier {
	seen := make(map[wire.Identifier]bool, len(ids))
	var out []wire.Identifier
	for _, id := range ids {
		if _, ok := c.stmts[id.Type]; ok && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// reveal runs the reveal queries of ids and returns the distinct identifiers
// they find that the request does not carry already, and how many values it
// skipped because no confirmation could carry them (empty, or over
// wire.MaxValueBytes).
//
// The queries run inside a savepoint switched to read-only: New checked them
// once with NULL, but a function they call might write for real values, and
// a reveal query must never change data. Rolling back to the savepoint
// returns the transaction to read-write for the erase statements.
func (c *Connector) reveal(ctx context.Context, tx *sql.Tx, ids []wire.Identifier) (derived []wire.Identifier, skipped int, err error) {
	const savepoint = "lethe_reveal"
	if !c.reveals(ids) {
		return nil, 0, nil
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+savepoint); err != nil {
		return nil, 0, dbError("start the reveal queries", err)
	}
	if _, err := tx.ExecContext(ctx, "SET LOCAL transaction_read_only = on"); err != nil {
		return nil, 0, dbError("start the reveal queries", err)
	}
	seen := make(map[wire.Identifier]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
	}
	for _, id := range ids {
		for i, r := range c.stmts[id.Type].Reveal {
			values, err := queryValues(ctx, tx, r.Query, id.Value)
			if err != nil {
				return nil, 0, dbError(revealName(id.Type, i), err)
			}
			for _, v := range values {
				d := wire.Identifier{Type: r.Type, Value: v}
				switch {
				case v == "" || len(v) > wire.MaxValueBytes:
					skipped++
				case !seen[d]:
					seen[d] = true
					derived = append(derived, d)
				}
			}
		}
	}
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+savepoint); err != nil {
		return nil, 0, dbError("end the reveal queries", err)
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+savepoint); err != nil {
		return nil, 0, dbError("end the reveal queries", err)
	}
	return derived, skipped, nil
}

func (c *Connector) reveals(ids []wire.Identifier) bool {
	for _, id := range ids {
		if len(c.stmts[id.Type].Reveal) > 0 {
			return true
		}
	}
	return false
}

// queryValues returns the non-NULL values of the one column query returns.
func queryValues(ctx context.Context, tx *sql.Tx, query string, param any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, param)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v sql.NullString
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		if v.Valid {
			out = append(out, v.String)
		}
	}
	return out, rows.Err()
}

// erase runs the erase statements of ids and returns the rows they affected.
func (c *Connector) erase(ctx context.Context, tx *sql.Tx, ids []wire.Identifier) (int64, error) {
	var records int64
	for _, id := range ids {
		for i, stmt := range c.stmts[id.Type].Erase {
			res, err := tx.ExecContext(ctx, stmt, id.Value)
			if err != nil {
				return 0, dbError(eraseName(id.Type, i), err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return 0, dbError(eraseName(id.Type, i), err)
			}
			records += n
		}
	}
	return records, nil
}

func result(dryRun bool, records int64, derived []wire.Identifier, skipped int) connectors.Result {
	r := connectors.Result{Outcome: wire.OutcomeErased, Records: records, Derived: derived}
	switch {
	case records == 0 && dryRun:
		r.Outcome, r.Detail = wire.OutcomeNotFound, "dry run: no record matches"
	case records == 0:
		r.Outcome, r.Detail = wire.OutcomeNotFound, "no record matches"
	case dryRun:
		r.Detail = fmt.Sprintf("dry run: %d record(s) would be erased or anonymised; nothing was changed", records)
	default:
		r.Detail = fmt.Sprintf("%d record(s) erased or anonymised", records)
	}
	if skipped > 0 {
		r.Detail += fmt.Sprintf("; %d derived value(s) skipped, empty or longer than %d bytes", skipped, wire.MaxValueBytes)
	}
	return r
}

// stmtError is a failed database call during an erasure. Its text names the
// step and PostgreSQL's error code but never the server's message, which
// may quote the identifier value ("invalid input syntax for type integer:
// …"); the error itself stays reachable through errors.As.
type stmtError struct {
	step string
	err  error
}

func dbError(step string, err error) error { return &stmtError{step: step, err: err} }

func (e *stmtError) Error() string {
	if pe := pq.As(e.err); pe != nil {
		return fmt.Sprintf("postgres connector: %s: SQLSTATE %s (%s)", e.step, pe.Code, pe.Code.Name())
	}
	return fmt.Sprintf("postgres connector: %s: %v", e.step, e.err)
}

func (e *stmtError) Unwrap() error { return e.err }
