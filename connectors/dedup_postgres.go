package connectors

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// DefaultDedupTable is the table NewPostgresDedup uses when given none.
const DefaultDedupTable = "lethe_connector_dedup"

// DedupRetention is how long NewPostgresDedup's store keeps a confirmation:
// three months, the longest time the GDPR allows for answering an erasure
// request (one month, extended by two), after which Lethe no longer
// re-dispatches its commands.
const DedupRetention = 90 * 24 * time.Hour

// dedupPruneEvery bounds how often a store deletes its expired rows.
const dedupPruneEvery = time.Hour

// dedupTablePart is one part of an accepted table name. Names are limited to
// what needs no quoting in PostgreSQL, and short enough that the index named
// after the table stays within PostgreSQL's 63 bytes.
var dedupTablePart = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// NewPostgresDedup returns a DedupStore in table (schema-qualified or not,
// default DefaultDedupTable) of the PostgreSQL database db, creating the
// table when it is missing. It exists for services that run several
// replicas: they share the store, so a command redelivered to another
// replica after the first died between erasing and committing (see Run) is
// answered with the recorded confirmation instead of being erased twice.
//
// The SDK stays free of database drivers: db is opened by the caller with
// the driver of its choice (github.com/lib/pq, pgx's stdlib). Recording is
// idempotent and keeps the first confirmation of a command; replicas that
// erased the same command at once (a rebalance in the middle of a call) all
// publish that first one.
//
// A row holds the whole confirmation, derived identifiers included: those
// are personal data of an erased subject, kept only so that a redelivered
// command still tells Lethe about them. Rows older than DedupRetention are
// therefore deleted, by the store itself, at most once an hour as it records
// new ones.
func NewPostgresDedup(ctx context.Context, db *sql.DB, table string) (DedupStore, error) {
	if db == nil {
		return nil, errors.New("connectors: postgres dedup: nil database")
	}
	if table == "" {
		table = DefaultDedupTable
	}
	quoted, index, err := quoteDedupTable(table)
	if err != nil {
		return nil, err
	}
	pending := strings.TrimSuffix(quoted, `"`) + `_pending"`
	s := &postgresDedup{
		db:            db,
		pendingSQL:    pending,
		deferredSQL:   strings.TrimSuffix(quoted, `"`) + `_deferred"`,
		deferredIndex: strings.TrimSuffix(index, `_recorded_at"`) + `_deferred_due"`,
		getPending:    `SELECT state FROM ` + pending + ` WHERE command_id = $1`,
		putPending: `INSERT INTO ` + pending + ` (command_id, state) VALUES ($1, $2::jsonb)
			ON CONFLICT (command_id) DO UPDATE SET state = EXCLUDED.state, recorded_at = now()`,
		deletePending: `DELETE FROM ` + pending + ` WHERE command_id = $1`,
		prunePending:  `DELETE FROM ` + pending + ` WHERE recorded_at < now() - $1 * interval '1 second'`,
		get:           `SELECT confirmation FROM ` + quoted + ` WHERE command_id = $1`,
		insertSQL: `INSERT INTO ` + quoted + ` (command_id, confirmation) VALUES ($1, $2::jsonb)
			ON CONFLICT (command_id) DO NOTHING RETURNING command_id`,
		prune:      `DELETE FROM ` + quoted + ` WHERE recorded_at < now() - $1 * interval '1 second'`,
		getManySQL: `SELECT confirmation FROM ` + quoted + ` WHERE command_id = ANY($1::text[])`,
		// Sorted, so that replicas recording overlapping batches at once
		// take the rows' locks in the same order.
		insertManySQL: `INSERT INTO ` + quoted + ` (command_id, confirmation)
			SELECT c->>'command_id', c FROM jsonb_array_elements($1::jsonb) AS c ORDER BY c->>'command_id'
			ON CONFLICT (command_id) DO NOTHING RETURNING command_id`,
	}
	if err := s.create(ctx, table, quoted, index); err != nil {
		return nil, fmt.Errorf("connectors: postgres dedup: create %s: %w", table, err)
	}
	return s, nil
}

// quoteDedupTable checks table and returns it quoted, and the name of its
// index.
func quoteDedupTable(table string) (quoted, index string, err error) {
	parts := strings.Split(table, ".")
	if len(parts) > 2 {
		return "", "", fmt.Errorf("connectors: postgres dedup: table %q has more than a schema and a name", table)
	}
	for i, p := range parts {
		if !dedupTablePart.MatchString(p) {
			return "", "", fmt.Errorf("connectors: postgres dedup: table %q: want lower-case letters, digits and underscores, at most 48 of them", table)
		}
		parts[i] = `"` + p + `"`
	}
	name := table[strings.LastIndex(table, ".")+1:]
	return strings.Join(parts, "."), `"` + name + `_recorded_at"`, nil
}

type postgresDedup struct {
	db *sql.DB
	// pendingSQL is the quoted name of the table of pending states, the
	// dedup table's name with _pending; the others are its statements.
	pendingSQL, getPending, putPending, deletePending, prunePending string
	// deferredSQL is the quoted name of the table of deferred commands,
	// the dedup table's name with _deferred, and deferredIndex its index.
	deferredSQL, deferredIndex string
	get, insertSQL, prune      string
	// getManySQL and insertManySQL serve the items of a batch command.
	getManySQL, insertManySQL string
	pruneMu                   sync.Mutex
	pruned                    time.Time
}

var (
	_ DedupStore   = (*postgresDedup)(nil)
	_ firstKeeper  = (*postgresDedup)(nil)
	_ PendingStore = (*postgresDedup)(nil)
)

// create makes the table and its index. Replicas that start together would
// race in CREATE TABLE IF NOT EXISTS, which PostgreSQL does not make safe
// against itself, so a transaction-scoped advisory lock lets one at a time
// through.
func (s *postgresDedup) create(ctx context.Context, table, quoted, index string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "lethe-connector-dedup:"+table); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+quoted+` (
		command_id   text PRIMARY KEY,
		confirmation jsonb NOT NULL,
		recorded_at  timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+index+` ON `+quoted+` (recorded_at)`); err != nil {
		return err
	}
	// The pending states of work in progress: a row per command until its
	// handler finishes. Created with the dedup table, by the same lock.
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.pendingSQL+` (
		command_id  text PRIMARY KEY,
		state       jsonb NOT NULL,
		recorded_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return err
	}
	if err := s.createDeferred(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *postgresDedup) Get(ctx context.Context, commandID string) (wire.Confirmation, bool, error) {
	var raw []byte
	err := s.db.QueryRowContext(ctx, s.get, commandID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return wire.Confirmation{}, false, nil
	}
	if err != nil {
		return wire.Confirmation{}, false, fmt.Errorf("postgres dedup: get: %w", err)
	}
	var c wire.Confirmation
	if err := json.Unmarshal(raw, &c); err != nil {
		return wire.Confirmation{}, false, fmt.Errorf("postgres dedup: decode recorded confirmation: %w", err)
	}
	return c, true, nil
}

// Put records c unless a confirmation of the same command is recorded
// already, which it keeps.
func (s *postgresDedup) Put(ctx context.Context, c wire.Confirmation) error {
	_, err := s.insert(ctx, c)
	return err
}

func (s *postgresDedup) putFirst(ctx context.Context, c wire.Confirmation) (wire.Confirmation, error) {
	inserted, err := s.insert(ctx, c)
	if err != nil || inserted {
		return c, err
	}
	kept, found, err := s.Get(ctx, c.CommandID)
	if err != nil {
		return wire.Confirmation{}, err
	}
	if !found {
		// Pruned in between, which only a row older than the retention
		// can be: c is the one to keep.
		return c, nil
	}
	return kept, nil
}

// insert records c unless its command has a record, and reports whether it
// did.
func (s *postgresDedup) insert(ctx context.Context, c wire.Confirmation) (inserted bool, err error) {
	b, err := json.Marshal(c)
	if err != nil {
		return false, fmt.Errorf("postgres dedup: encode confirmation: %w", err)
	}
	var id string
	err = s.db.QueryRowContext(ctx, s.insertSQL, c.CommandID, string(b)).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		inserted = false
	case err != nil:
		return false, fmt.Errorf("postgres dedup: put: %w", err)
	default:
		inserted = true
	}
	s.maybePrune(ctx)
	return inserted, nil
}

// maybePrune deletes the expired rows when it has not for an hour. A
// failure is not Put's: the record is made, and the next prune catches up.
func (s *postgresDedup) maybePrune(ctx context.Context) {
	s.pruneMu.Lock()
	due := time.Since(s.pruned) >= dedupPruneEvery
	if due {
		s.pruned = time.Now()
	}
	s.pruneMu.Unlock()
	if due {
		_, _ = s.db.ExecContext(ctx, s.prune, int64(DedupRetention/time.Second))
		// A pending state its handler never finished (the command was
		// never delivered again) expires alike.
		_, _ = s.db.ExecContext(ctx, s.prunePending, int64(DedupRetention/time.Second))
	}
}

// GetPending returns the state recorded for commandID, if any.
func (s *postgresDedup) GetPending(ctx context.Context, commandID string) ([]byte, bool, error) {
	var state []byte
	err := s.db.QueryRowContext(ctx, s.getPending, commandID).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("postgres dedup: get pending: %w", err)
	}
	return state, true, nil
}

// PutPending records state for commandID, replacing an earlier one. The
// column is jsonb, so state must be JSON.
func (s *postgresDedup) PutPending(ctx context.Context, commandID string, state []byte) error {
	if _, err := s.db.ExecContext(ctx, s.putPending, commandID, string(state)); err != nil {
		return fmt.Errorf("postgres dedup: put pending: %w", err)
	}
	return nil
}

// DeletePending forgets the state of commandID.
func (s *postgresDedup) DeletePending(ctx context.Context, commandID string) error {
	if _, err := s.db.ExecContext(ctx, s.deletePending, commandID); err != nil {
		return fmt.Errorf("postgres dedup: delete pending: %w", err)
	}
	return nil
}

var _ manyStore = (*postgresDedup)(nil)

// idArray writes command ids as a PostgreSQL text[] literal. Run passes
// only UUIDs, which need no quoting in one; the literal keeps the SDK free
// of a driver's array type.
func idArray(ids []string) string { return "{" + strings.Join(ids, ",") + "}" }

func (s *postgresDedup) getMany(ctx context.Context, commandIDs []string) (map[string]wire.Confirmation, error) {
	out := make(map[string]wire.Confirmation, len(commandIDs))
	if len(commandIDs) == 0 {
		return out, nil
	}
	rows, err := s.db.QueryContext(ctx, s.getManySQL, idArray(commandIDs))
	if err != nil {
		return nil, fmt.Errorf("postgres dedup: get: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("postgres dedup: get: %w", err)
		}
		var c wire.Confirmation
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("postgres dedup: decode recorded confirmation: %w", err)
		}
		out[c.CommandID] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres dedup: get: %w", err)
	}
	return out, nil
}

func (s *postgresDedup) putFirstMany(ctx context.Context, confs []wire.Confirmation) (map[string]wire.Confirmation, error) {
	kept := make(map[string]wire.Confirmation, len(confs))
	if len(confs) == 0 {
		return kept, nil
	}
	b, err := json.Marshal(confs)
	if err != nil {
		return nil, fmt.Errorf("postgres dedup: encode confirmations: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, s.insertManySQL, string(b))
	if err != nil {
		return nil, fmt.Errorf("postgres dedup: put: %w", err)
	}
	inserted := make(map[string]bool, len(confs))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres dedup: put: %w", err)
		}
		inserted[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres dedup: put: %w", err)
	}
	s.maybePrune(ctx)
	var others []string
	for _, c := range confs {
		if inserted[c.CommandID] {
			kept[c.CommandID] = c
		} else {
			others = append(others, c.CommandID)
		}
	}
	earlier, err := s.getMany(ctx, others)
	if err != nil {
		return nil, err
	}
	for _, c := range confs {
		if inserted[c.CommandID] {
			continue
		}
		if e, found := earlier[c.CommandID]; found {
			kept[c.CommandID] = e
		} else {
			kept[c.CommandID] = c // pruned in between, as in putFirst
		}
	}
	return kept, nil
}
