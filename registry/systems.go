package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

const systemColumns = `name, identifiers, produces, topic, owner, description,
	confirm_within_ms, batch, after_systems, mode, created_at, updated_at`

// SystemWrite says who changes the registry and what they may change.
type SystemWrite struct {
	// Actor is the authenticated principal making the change; it is the
	// actor of the change's audit event.
	Actor string
	// MayChangeTopic allows changing the command topic of an active system
	// (the systems:admin scope): redirecting a system's erasure commands
	// elsewhere is a bigger act than editing its description.
	MayChangeTopic bool
}

// PutSystem creates the system or replaces every field of it, and audits
// the change with w.Actor in the same transaction: system_created with the
// stored system, or system_replaced (system_topic_changed when the topic
// differs) with the system before and after. created is true when no active
// system had the name, which includes bringing a retired system back: to
// its owners that is a new registration, with a new created_at. Changing
// the topic of an active system without w.MayChangeTopic is a KindForbidden
// insufficient_scope error that writes nothing. Identifiers and produces
// are stored as given (the API sorts and deduplicates them); an empty topic
// or a zero confirm_within get the contract's defaults so that no caller
// can store a system that is never reached or never waited for.
func (s *Store) PutSystem(ctx context.Context, sys lethe.System, w SystemWrite) (stored lethe.System, created bool, err error) {
	if sys.Topic == "" {
		sys.Topic = wire.DefaultTopic(sys.Name)
	}
	if sys.ConfirmWithin <= 0 {
		sys.ConfirmWithin = lethe.Duration(lethe.DefaultConfirmWithin)
	}
	if sys.Mode == "" {
		sys.Mode = lethe.ModeKafka
	}
	now := s.now()
	args := []any{
		sys.Name, pq.Array(nonNil(sys.Identifiers)), pq.Array(nonNil(sys.Produces)),
		sys.Topic, sys.Owner, sys.Description,
		time.Duration(sys.ConfirmWithin).Milliseconds(), now, sys.Batch, pq.Array(nonNil(sys.After)), sys.Mode,
	}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return lethe.System{}, false, s.fail("put system", err)
	}
	defer tx.Rollback()
	if err := checkAfter(ctx, tx, sys); err != nil {
		if lethe.ErrorKind(err) != lethe.KindInternal {
			return lethe.System{}, false, err
		}
		return lethe.System{}, false, s.fail("put system", err)
	}

	// A new name inserts; an existing row (active or retired) makes the
	// insert do nothing, after waiting for a concurrent creator to finish.
	var event lethe.AuditEvent
	stored, err = scanSystem(tx.QueryRowContext(ctx, `
		INSERT INTO systems (name, identifiers, produces, topic, owner, description,
			confirm_within_ms, batch, after_systems, mode, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $10, $11, $8, $8)
		ON CONFLICT (name) DO NOTHING
		RETURNING `+systemColumns, args...))
	switch {
	case err == nil:
		created = true
		event, err = systemEvent(lethe.AuditSystemCreated, stored)
	case errors.Is(err, sql.ErrNoRows):
		var (
			before  lethe.System
			retired bool
		)
		// Locked until the commit, so that the topic checked is the topic
		// replaced and two writers of one system take turns.
		before, err = scanSystem(scanInto(tx.QueryRowContext(ctx,
			`SELECT `+systemColumns+`, retired_at IS NOT NULL FROM systems WHERE name = $1 FOR UPDATE`,
			sys.Name), &retired))
		if err != nil {
			return lethe.System{}, false, s.fail("put system", err)
		}
		if !retired && before.Topic != sys.Topic && !w.MayChangeTopic {
			return lethe.System{}, false, ErrTopicChangeForbidden()
		}
		stored, err = scanSystem(tx.QueryRowContext(ctx, `
			UPDATE systems SET identifiers = $2, produces = $3, topic = $4, owner = $5,
				description = $6, confirm_within_ms = $7, batch = $9, after_systems = $10, mode = $11, updated_at = $8,
				created_at = CASE WHEN retired_at IS NULL THEN created_at ELSE $8 END,
				retired_at = NULL
			WHERE name = $1
			RETURNING `+systemColumns, args...))
		if err != nil {
			return lethe.System{}, false, s.fail("put system", err)
		}
		created = retired
		switch {
		case retired:
			event, err = systemEvent(lethe.AuditSystemCreated, stored)
		case before.Topic != stored.Topic:
			event, err = systemEvent(lethe.AuditSystemTopicChanged, systemChange{Before: before, After: stored})
		default:
			event, err = systemEvent(lethe.AuditSystemReplaced, systemChange{Before: before, After: stored})
		}
	}
	if err != nil {
		return lethe.System{}, false, s.fail("put system", err)
	}
	// The audit goes last: it locks the chain's head until the commit.
	event.System, event.Actor, event.At = sys.Name, w.Actor, now
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{event}, now); err != nil {
		return lethe.System{}, false, s.fail("put system: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return lethe.System{}, false, s.fail("put system", err)
	}
	return stored, created, nil
}

// systemsLockClass is the one key of the advisory lock that PutSystem
// takes, in its transaction, when a system names others in After: two
// registrations that would close a cycle between them only together take
// turns, and the second sees the first.
const systemsLockClass int32 = 0x73797374 // "syst"

// checkAfter refuses, within tx, a system whose After names a system not
// active in the registry (400 unknown_dependency) or closes a cycle with
// the Afters of the others (409 dependency_cycle, naming it).
func checkAfter(ctx context.Context, tx *sql.Tx, sys lethe.System) error {
	if len(sys.After) == 0 {
		return nil
	}
	// Two keys, unlike the migrator's one-key lock, which it never meets.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, systemsLockClass); err != nil {
		return fmt.Errorf("lock the dependency graph: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, after_systems, retired_at IS NULL FROM systems`)
	if err != nil {
		return fmt.Errorf("read the dependency graph: %w", err)
	}
	defer rows.Close()
	graph := map[string][]string{}
	active := map[string]bool{}
	for rows.Next() {
		var (
			name  string
			after []string
			live  bool
		)
		if err := rows.Scan(&name, pq.Array(&after), &live); err != nil {
			return fmt.Errorf("read the dependency graph: %w", err)
		}
		active[name] = live
		if live {
			graph[name] = after
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the dependency graph: %w", err)
	}
	for _, d := range sys.After {
		if !active[d] && d != sys.Name {
			return lethe.Errorf(lethe.KindInvalid, "unknown_dependency",
				"after names %q, which is not a system in the registry; register it first", d)
		}
	}
	if cycle := lethe.AfterCycle(sys.Name, sys.After, graph); cycle != nil {
		return lethe.Errorf(lethe.KindConflict, "dependency_cycle",
			"after would close the cycle %s: each system there would wait for the next forever",
			strings.Join(cycle, " → "))
	}
	return nil
}

// systemChange is the detail of an audit event that replaced a system.
type systemChange struct {
	Before lethe.System `json:"before"`
	After  lethe.System `json:"after"`
}

// systemEvent is an audit event of kind whose detail is v as JSON: system
// definitions hold no personal data, and JSON keeps every field readable by
// programs.
func systemEvent(kind lethe.AuditKind, v any) (lethe.AuditEvent, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return lethe.AuditEvent{}, err
	}
	return lethe.AuditEvent{Kind: kind, Detail: string(b)}, nil
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
// longer target it, while the row stays for the history that names it. It
// audits system_retired with the system as it was and actor, the principal
// retiring it, in the same transaction.
func (s *Store) RetireSystem(ctx context.Context, name, actor string) error {
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("retire system", err)
	}
	defer tx.Rollback()
	before, err := scanSystem(tx.QueryRowContext(ctx,
		`SELECT `+systemColumns+` FROM systems WHERE name = $1 AND retired_at IS NULL FOR UPDATE`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return systemNotFound(name)
	}
	if err != nil {
		return s.fail("retire system", err)
	}
	if _, err := tx.ExecContext(ctx,
		`UPDATE systems SET retired_at = $2, updated_at = $2 WHERE name = $1`, name, now); err != nil {
		return s.fail("retire system", err)
	}
	event, err := systemEvent(lethe.AuditSystemRetired, before)
	if err != nil {
		return s.fail("retire system", err)
	}
	// The audit goes last: it locks the chain's head until the commit.
	event.System, event.Actor, event.At = name, actor, now
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{event}, now); err != nil {
		return s.fail("retire system: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("retire system", err)
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
		&sys.Topic, &sys.Owner, &sys.Description, &confirmMS, &sys.Batch, pq.Array(&sys.After), &sys.Mode,
		&sys.CreatedAt, &sys.UpdatedAt)
	if err != nil {
		return lethe.System{}, err
	}
	sys.Identifiers = nonNil(sys.Identifiers)
	sys.Produces = nonNil(sys.Produces)
	if len(sys.After) == 0 {
		sys.After = nil // the API shows [], as for the other lists
	}
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

// ErrTopicChangeForbidden is the refusal of a topic change by a writer
// without SystemWrite.MayChangeTopic (the systems:admin scope): moving a
// system's commands elsewhere would let the writer read identifier values
// and confirm erasures nobody performed.
func ErrTopicChangeForbidden() error {
	return lethe.Errorf(lethe.KindForbidden, "insufficient_scope",
		"changing the topic of an existing system needs the systems:admin scope")
}

// PlanErasure previews, without dispatching or recording anything, what a
// request for a subject with these identifier types would dispatch (see
// lethe.PlanErasure). subject, the keyed digests of the subject's values
// when the caller gave them, finds the legal holds that would keep systems
// at time at, as MatchTargets does for a real request.
func (s *Store) PlanErasure(ctx context.Context, types []string, subject []lethe.SubjectDigest, at time.Time) (lethe.ErasurePlan, error) {
	systems, err := s.ListSystems(ctx)
	if err != nil {
		return lethe.ErasurePlan{}, err
	}
	held := map[string]*lethe.Hold{}
	if len(subject) > 0 {
		dtypes, digests := splitDigests(subject)
		// Longest first, as MatchTargets chooses: the first hold found
		// for a system is the one that keeps it.
		rows, err := s.db.QueryContext(ctx, `
			SELECT h.id, h.basis, h.expires_at, COALESCE(h.system, '')
			FROM legal_holds h
			WHERE h.lifted_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > $3)
				AND EXISTS (
					SELECT 1 FROM legal_hold_subjects hs
					JOIN unnest($1::text[], $2::text[]) AS u (t, d) ON hs.id_type = u.t AND hs.digest = u.d
					WHERE hs.hold_id = h.id)
			ORDER BY h.expires_at DESC NULLS FIRST, h.id`, pq.Array(dtypes), pq.Array(digests), at)
		if err != nil {
			return lethe.ErasurePlan{}, s.fail("plan erasure", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				h       lethe.Hold
				expires sql.NullTime
				system  string
			)
			if err := rows.Scan(&h.ID, &h.Basis, &expires, &system); err != nil {
				return lethe.ErasurePlan{}, s.fail("plan erasure", err)
			}
			h.ExpiresAt, h.Active, h.System = utcPtr(expires), true, system
			for _, sys := range systems {
				if held[sys.Name] == nil && (system == "" || system == sys.Name) {
					held[sys.Name] = &h
				}
			}
		}
		if err := rows.Err(); err != nil {
			return lethe.ErasurePlan{}, s.fail("plan erasure", err)
		}
	}
	return lethe.PlanErasure(types, systems, held), nil
}
