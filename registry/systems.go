package registry

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

const systemColumns = `name, identifiers, produces, topic, owner, description,
	confirm_within_ms, created_at, updated_at`

// PutSystem creates the system or replaces every field of it. created is
// true when no active system had the name, which includes bringing a retired
// system back: to its owners that is a new registration, with a new
// created_at. Identifiers and produces are stored as given (the API sorts and
// deduplicates them); an empty topic or a zero confirm_within get the
// contract's defaults so that no caller can store a system that is never
// reached or never waited for.
func (s *Store) PutSystem(ctx context.Context, sys lethe.System) (stored lethe.System, created bool, err error) {
	if sys.Topic == "" {
		sys.Topic = wire.DefaultTopic(sys.Name)
	}
	if sys.ConfirmWithin <= 0 {
		sys.ConfirmWithin = lethe.Duration(lethe.DefaultConfirmWithin)
	}
	now := s.now()
	args := []any{
		sys.Name, pq.Array(nonNil(sys.Identifiers)), pq.Array(nonNil(sys.Produces)),
		sys.Topic, sys.Owner, sys.Description,
		time.Duration(sys.ConfirmWithin).Milliseconds(), now,
	}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return lethe.System{}, false, s.fail("put system", err)
	}
	defer tx.Rollback()

	// A new name inserts; an existing row (active or retired) makes the
	// insert do nothing, after waiting for a concurrent creator to finish.
	stored, err = scanSystem(tx.QueryRowContext(ctx, `
		INSERT INTO systems (name, identifiers, produces, topic, owner, description,
			confirm_within_ms, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
		ON CONFLICT (name) DO NOTHING
		RETURNING `+systemColumns, args...))
	switch {
	case err == nil:
		created = true
	case errors.Is(err, sql.ErrNoRows):
		var retired bool
		if err := tx.QueryRowContext(ctx,
			`SELECT retired_at IS NOT NULL FROM systems WHERE name = $1 FOR UPDATE`, sys.Name,
		).Scan(&retired); err != nil {
			return lethe.System{}, false, s.fail("put system", err)
		}
		stored, err = scanSystem(tx.QueryRowContext(ctx, `
			UPDATE systems SET identifiers = $2, produces = $3, topic = $4, owner = $5,
				description = $6, confirm_within_ms = $7, updated_at = $8,
				created_at = CASE WHEN retired_at IS NULL THEN created_at ELSE $8 END,
				retired_at = NULL
			WHERE name = $1
			RETURNING `+systemColumns, args...))
		if err != nil {
			return lethe.System{}, false, s.fail("put system", err)
		}
		created = retired
	default:
		return lethe.System{}, false, s.fail("put system", err)
	}
	if err := tx.Commit(); err != nil {
		return lethe.System{}, false, s.fail("put system", err)
	}
	return stored, created, nil
}

// GetSystem returns the active system called name; a retired one is as
// absent as one never registered.
func (s *Store) GetSystem(ctx context.Context, name string) (lethe.System, error) {
	sys, err := scanSystem(s.db.QueryRowContext(ctx,
		`SELECT `+systemColumns+` FROM systems WHERE name = $1 AND retired_at IS NULL`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return lethe.System{}, systemNotFound(name)
	}
	if err != nil {
		return lethe.System{}, s.fail("get system", err)
	}
	return sys, nil
}

// ListSystems returns the active systems ordered by name; never nil, so the
// API's list always reads as a JSON array.
func (s *Store) ListSystems(ctx context.Context) ([]lethe.System, error) {
	return s.querySystems(ctx, "list systems",
		`SELECT `+systemColumns+` FROM systems WHERE retired_at IS NULL ORDER BY name`)
}

// RetireSystem takes the system out of the registry: later requests no
// longer target it, while the row stays for the history that names it.
func (s *Store) RetireSystem(ctx context.Context, name string) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx,
		`UPDATE systems SET retired_at = $2, updated_at = $2 WHERE name = $1 AND retired_at IS NULL`,
		name, now)
	if err != nil {
		return s.fail("retire system", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.fail("retire system", err)
	}
	if n == 0 {
		return systemNotFound(name)
	}
	return nil
}

// MatchSystems returns the active systems that erase by at least one of
// types, ordered by name, in one query served by the GIN index on
// identifiers. Planning calls it once per wave of newly known types.
func (s *Store) MatchSystems(ctx context.Context, types []string) ([]lethe.System, error) {
	if len(types) == 0 {
		return []lethe.System{}, nil
	}
	return s.querySystems(ctx, "match systems",
		`SELECT `+systemColumns+` FROM systems
		WHERE retired_at IS NULL AND identifiers && $1::text[]
		ORDER BY name`, pq.Array(types))
}

func (s *Store) querySystems(ctx context.Context, op, query string, args ...any) ([]lethe.System, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	out := []lethe.System{}
	for rows.Next() {
		sys, err := scanSystem(rows)
		if err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, sys)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

type scanner interface {
	Scan(dest ...any) error
}

func scanSystem(r scanner) (lethe.System, error) {
	var (
		sys       lethe.System
		confirmMS int64
	)
	err := r.Scan(&sys.Name, pq.Array(&sys.Identifiers), pq.Array(&sys.Produces),
		&sys.Topic, &sys.Owner, &sys.Description, &confirmMS, &sys.CreatedAt, &sys.UpdatedAt)
	if err != nil {
		return lethe.System{}, err
	}
	sys.Identifiers = nonNil(sys.Identifiers)
	sys.Produces = nonNil(sys.Produces)
	sys.ConfirmWithin = lethe.Duration(time.Duration(confirmMS) * time.Millisecond)
	sys.CreatedAt = sys.CreatedAt.UTC()
	sys.UpdatedAt = sys.UpdatedAt.UTC()
	return sys, nil
}

// nonNil turns a nil slice into an empty one: lib/pq sends nil as NULL, and
// the API writes it as null where the contract promises an array.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
