package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

// MaxHoldBasisChars bounds a hold's legal basis.
const MaxHoldBasisChars = 512

// NewHold is what PutHold records: the subject as keyed digests only.
type NewHold struct {
	ID      string
	Subject []lethe.SubjectDigest
	// System is the one system held; empty holds all.
	System    string
	Basis     string
	ExpiresAt *time.Time
	// PlacedBy is the authenticated principal placing the hold; it is also
	// the actor of the hold_placed audit event.
	PlacedBy string
}

func (h NewHold) validate() error {
	switch {
	case !lethe.ValidHoldID(h.ID):
		return lethe.Errorf(lethe.KindInvalid, "invalid_hold_id",
			"a hold id must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
	case len(h.Subject) == 0:
		return lethe.Errorf(lethe.KindInvalid, "invalid_subject", "a hold needs at least one identifier of its subject")
	case h.System != "" && !lethe.ValidSystemName(h.System):
		return lethe.Errorf(lethe.KindInvalid, "invalid_system", "system must match ^[a-z][a-z0-9_-]{0,62}$")
	case strings.TrimSpace(h.Basis) == "":
		return lethe.Errorf(lethe.KindInvalid, "invalid_basis", "a hold needs its legal basis (GDPR Art. 17(3))")
	case len([]rune(h.Basis)) > MaxHoldBasisChars:
		return lethe.Errorf(lethe.KindInvalid, "invalid_basis", "basis is longer than %d characters", MaxHoldBasisChars)
	}
	return nil
}

const holdColumns = `h.id, h.system, h.basis, h.expires_at, h.created_at, h.updated_at, h.lifted_at,
	h.placed_by, h.lifted_by,
	ARRAY(SELECT DISTINCT id_type FROM legal_hold_subjects WHERE hold_id = h.id ORDER BY id_type)`

// PutHold places or replaces hold in.ID and audits it. Putting a hold that
// was lifted places it again. created tells a new hold from a replaced one.
func (s *Store) PutHold(ctx context.Context, in NewHold) (h lethe.Hold, created bool, err error) {
	if err := in.validate(); err != nil {
		return lethe.Hold{}, false, err
	}
	now := s.now().Truncate(time.Microsecond)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return lethe.Hold{}, false, s.fail("put hold", err)
	}
	defer tx.Rollback()

	// xmax = 0 only for a row this statement inserted.
	err = tx.QueryRowContext(ctx, `
		INSERT INTO legal_holds (id, system, basis, expires_at, created_at, updated_at, placed_by)
		VALUES ($1, NULLIF($2, ''), $3, $4, $5, $5, $6)
		ON CONFLICT (id) DO UPDATE SET system = excluded.system, basis = excluded.basis,
			expires_at = excluded.expires_at, updated_at = excluded.updated_at,
			placed_by = excluded.placed_by, lifted_at = NULL, lifted_by = ''
		RETURNING xmax = 0`, in.ID, in.System, in.Basis, in.ExpiresAt, now, in.PlacedBy).Scan(&created)
	if err != nil {
		return lethe.Hold{}, false, s.fail("put hold", err)
	}
	types, digests := splitDigests(in.Subject)
	if _, err := tx.ExecContext(ctx, `DELETE FROM legal_hold_subjects WHERE hold_id = $1`, in.ID); err != nil {
		return lethe.Hold{}, false, s.fail("put hold: subject", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO legal_hold_subjects (hold_id, id_type, digest)
		SELECT $1, t, d FROM unnest($2::text[], $3::text[]) AS u (t, d)
		ON CONFLICT DO NOTHING`, in.ID, pq.Array(types), pq.Array(digests)); err != nil {
		return lethe.Hold{}, false, s.fail("put hold: subject", err)
	}
	h, err = getHold(ctx, tx, in.ID, now)
	if err != nil {
		return lethe.Hold{}, false, s.fail("put hold", err)
	}
	// The audit goes last: it locks the chain's head until the commit.
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		Hold: in.ID, System: in.System, Kind: lethe.AuditHoldPlaced, At: now, Detail: holdDetail(in),
		Actor: in.PlacedBy,
	}}, now); err != nil {
		return lethe.Hold{}, false, s.fail("put hold: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return lethe.Hold{}, false, s.fail("put hold", err)
	}
	return h, created, nil
}

func holdDetail(h NewHold) string {
	scope := "all systems"
	if h.System != "" {
		scope = "system " + h.System
	}
	until := "until lifted"
	if h.ExpiresAt != nil {
		until = "until " + h.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s, %s: %s", scope, until, h.Basis)
}

// LiftHold ends a hold now and records actor, the principal lifting it, on
// the hold and its audit event. It returns the hold and the
// requests still open that it kept systems of, which the caller wakes so
// that they erase those systems. Lifting a lifted hold changes nothing and
// returns it again, with no request to wake.
func (s *Store) LiftHold(ctx context.Context, id, actor string) (lethe.Hold, []string, error) {
	if !lethe.ValidHoldID(id) {
		return lethe.Hold{}, nil, holdNotFound()
	}
	now := s.now().Truncate(time.Microsecond)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return lethe.Hold{}, nil, s.fail("lift hold", err)
	}
	defer tx.Rollback()
	var system sql.NullString
	err = tx.QueryRowContext(ctx, `
		UPDATE legal_holds SET lifted_at = $2, updated_at = $2, lifted_by = $3
		WHERE id = $1 AND lifted_at IS NULL RETURNING system`, id, now, actor).Scan(&system)
	lifted := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return lethe.Hold{}, nil, s.fail("lift hold", err)
	}
	var requests []string
	if lifted {
		rows, err := tx.QueryContext(ctx, `
			SELECT r.id FROM request_holds rh JOIN erasure_requests r ON r.id = rh.request_id
			WHERE rh.hold_id = $1 AND r.status NOT IN ('completed', 'failed', 'canceled')
			ORDER BY r.id`, id)
		if err != nil {
			return lethe.Hold{}, nil, s.fail("lift hold: held requests", err)
		}
		for rows.Next() {
			var r string
			if err := rows.Scan(&r); err != nil {
				rows.Close()
				return lethe.Hold{}, nil, s.fail("lift hold: held requests", err)
			}
			requests = append(requests, r)
		}
		if err := rows.Err(); err != nil {
			return lethe.Hold{}, nil, s.fail("lift hold: held requests", err)
		}
	}
	h, err := getHold(ctx, tx, id, now)
	if errors.Is(err, sql.ErrNoRows) {
		return lethe.Hold{}, nil, holdNotFound()
	}
	if err != nil {
		return lethe.Hold{}, nil, s.fail("lift hold", err)
	}
	// The audit goes last: it locks the chain's head until the commit.
	if lifted {
		if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
			Hold: id, System: system.String, Kind: lethe.AuditHoldLifted, At: now, Actor: actor,
		}}, now); err != nil {
			return lethe.Hold{}, nil, s.fail("lift hold: audit", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return lethe.Hold{}, nil, s.fail("lift hold", err)
	}
	return h, requests, nil
}

// GetHold returns one hold, active or not.
func (s *Store) GetHold(ctx context.Context, id string) (lethe.Hold, error) {
	if !lethe.ValidHoldID(id) {
		return lethe.Hold{}, holdNotFound()
	}
	h, err := getHold(ctx, s.db, id, s.now())
	if errors.Is(err, sql.ErrNoRows) {
		return lethe.Hold{}, holdNotFound()
	}
	if err != nil {
		return lethe.Hold{}, s.fail("get hold", err)
	}
	return h, nil
}

// ListHolds returns the holds ordered by id: only those holding now when
// activeOnly is set.
func (s *Store) ListHolds(ctx context.Context, activeOnly bool) ([]lethe.Hold, error) {
	now := s.now()
	rows, err := s.db.QueryContext(ctx, `SELECT `+holdColumns+` FROM legal_holds h
		WHERE NOT $1 OR (h.lifted_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > $2))
		ORDER BY h.id`, activeOnly, now)
	if err != nil {
		return nil, s.fail("list holds", err)
	}
	defer rows.Close()
	out := []lethe.Hold{}
	for rows.Next() {
		h, err := scanHold(rows, now)
		if err != nil {
			return nil, s.fail("list holds", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list holds", err)
	}
	return out, nil
}

func getHold(ctx context.Context, q querier, id string, now time.Time) (lethe.Hold, error) {
	return scanHold(q.QueryRowContext(ctx, `SELECT `+holdColumns+` FROM legal_holds h WHERE h.id = $1`, id), now)
}

func scanHold(r scanner, now time.Time) (lethe.Hold, error) {
	var (
		h               lethe.Hold
		system          sql.NullString
		expires, lifted sql.NullTime
	)
	if err := r.Scan(&h.ID, &system, &h.Basis, &expires, &h.CreatedAt, &h.UpdatedAt, &lifted,
		&h.PlacedBy, &h.LiftedBy, pq.Array(&h.SubjectTypes)); err != nil {
		return lethe.Hold{}, err
	}
	h.System = system.String
	h.ExpiresAt = utcPtr(expires)
	h.LiftedAt = utcPtr(lifted)
	h.CreatedAt, h.UpdatedAt = h.CreatedAt.UTC(), h.UpdatedAt.UTC()
	h.SubjectTypes = nonNil(h.SubjectTypes)
	h.Active = h.LiftedAt == nil && (h.ExpiresAt == nil || h.ExpiresAt.After(now))
	return h, nil
}

func holdNotFound() error {
	return lethe.Errorf(lethe.KindNotFound, "hold_not_found", "no legal hold has this id")
}

// Match is a system a request must reach and, when a legal hold covers the
// subject there, the hold that keeps it (the one lasting longest).
type Match struct {
	System lethe.System
	Hold   *lethe.Hold
}

// MatchQuery asks MatchTargets which systems one wave of a request reaches.
type MatchQuery struct {
	RequestID string
	// Types are the identifier types the wave dispatches.
	Types []string
	// Subject is every digest known for the subject; a hold on any of them
	// holds the subject.
	Subject []lethe.SubjectDigest
	// Record are the digests not recorded against the request yet (those of
	// identifiers that systems revealed).
	Record []lethe.SubjectDigest
	// At is the time holds are judged at: the workflow's clock.
	At time.Time
}

// MatchTargets finds, in one indexed query, the active systems that erase by
// any of q.Types and, for each, the legal hold active at q.At that covers any
// of the subject's digests there. Holds found are remembered against the
// request so that lifting them wakes it, and q.Record is recorded against
// the request, so that holds and the suppression list also know the
// subject by the identifiers systems revealed. With nothing to remember, it
// is one round trip.
func (s *Store) MatchTargets(ctx context.Context, q MatchQuery) ([]Match, error) {
	if len(q.Types) == 0 {
		return []Match{}, nil
	}
	dtypes, digests := splitDigests(q.Subject)
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+systemColumns+`, h.id, h.basis, h.expires_at
		FROM systems
		LEFT JOIN LATERAL (
			SELECT h.id, h.basis, h.expires_at
			FROM legal_holds h
			WHERE h.lifted_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > $4)
				AND (h.system IS NULL OR h.system = systems.name)
				AND EXISTS (
					SELECT 1 FROM legal_hold_subjects hs
					JOIN unnest($2::text[], $3::text[]) AS u (t, d) ON hs.id_type = u.t AND hs.digest = u.d
					WHERE hs.hold_id = h.id)
			ORDER BY h.expires_at DESC NULLS FIRST, h.id
			LIMIT 1) h ON true
		WHERE retired_at IS NULL AND identifiers && $1::text[]
		ORDER BY name`, pq.Array(q.Types), pq.Array(dtypes), pq.Array(digests), q.At)
	if err != nil {
		return nil, s.fail("match systems", err)
	}
	defer rows.Close()
	out := []Match{}
	held := map[string]bool{}
	for rows.Next() {
		var (
			m       Match
			id      sql.NullString
			basis   sql.NullString
			expires sql.NullTime
		)
		sys, err := scanSystem(scanInto(rows, &id, &basis, &expires))
		if err != nil {
			return nil, s.fail("match systems", err)
		}
		m.System = sys
		if id.Valid {
			m.Hold = &lethe.Hold{ID: id.String, Basis: basis.String, ExpiresAt: utcPtr(expires), Active: true}
			held[id.String] = true
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("match systems", err)
	}
	rows.Close()
	if len(held) > 0 || len(q.Record) > 0 {
		if err := s.recordPlan(ctx, q.RequestID, q.Record, held); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// recordPlan remembers a request's new subject digests and the holds found
// for it, in one statement; both inserts ignore what is already known.
func (s *Store) recordPlan(ctx context.Context, requestID string, subject []lethe.SubjectDigest, held map[string]bool) error {
	uid, err := uuid.Parse(requestID)
	if err != nil {
		return erasureNotFound()
	}
	dtypes, digests := splitDigests(subject)
	holds := make([]string, 0, len(held))
	for id := range held {
		holds = append(holds, id)
	}
	_, err = s.db.ExecContext(ctx, `
		WITH subjects AS (
			INSERT INTO request_subjects (request_id, id_type, digest)
			SELECT $1, t, d FROM unnest($2::text[], $3::text[]) AS u (t, d)
			ON CONFLICT DO NOTHING)
		INSERT INTO request_holds (hold_id, request_id)
		SELECT h, $1 FROM unnest($4::text[]) AS h
		ON CONFLICT DO NOTHING`, uid, pq.Array(dtypes), pq.Array(digests), pq.Array(holds))
	if err != nil {
		return s.fail("record plan", err)
	}
	return nil
}

// rowScanner appends extra destinations after a scanner's own.
type rowScanner struct {
	r     scanner
	extra []any
}

func (r rowScanner) Scan(dest ...any) error { return r.r.Scan(append(dest, r.extra...)...) }

func scanInto(r scanner, extra ...any) scanner { return rowScanner{r: r, extra: extra} }

// splitDigests turns digests into the two parallel arrays that unnest reads.
func splitDigests(ds []lethe.SubjectDigest) (types, digests []string) {
	types = make([]string, len(ds))
	digests = make([]string, len(ds))
	for i, d := range ds {
		types[i], digests[i] = d.Type, d.Digest
	}
	return types, digests
}
