package registry

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

// Page sizes of ListErasures, matching the API's limit parameter.
const (
	// DefaultListLimit is the page size when the filter names none.
	DefaultListLimit = 50
	// MaxListLimit caps a page so one call cannot read the whole ledger.
	MaxListLimit = 200
)

const erasureColumns = `id, status, overdue, subject_types, reason, requested_by, created_by, dry_run,
	created_at, deadline, target, extended_at, extension_reason, completed_at, workflow_id, pruned_at`

// NewErasure is what CreateErasure records for a new request. It carries the
// subject as keyed digests only; the values travel to the workflow, never here.
type NewErasure struct {
	// ID is the request's UUID, chosen by the caller so that the workflow
	// ID can be derived before anything is written.
	ID string
	// IdempotencyKey is the client's Idempotency-Key header; empty when none.
	IdempotencyKey string
	// RequestHash identifies the request body, so that a reused key with a
	// different body is told apart from a replay.
	RequestHash string
	Subject     []lethe.SubjectDigest
	Reason      string
	RequestedBy string
	// CreatedBy is the authenticated principal creating the request; it is
	// also the actor of the request's received audit event.
	CreatedBy string
	DryRun    bool
	// CreatedAt defaults to the store's clock, Deadline to CreatedAt plus
	// lethe.DefaultDeadline, Target to lethe.DefaultTargetBefore before the
	// deadline (never before CreatedAt).
	CreatedAt  time.Time
	Deadline   time.Time
	Target     time.Time
	WorkflowID string
}

// CreateErasure records a new request and starts its workflow, so that a
// request exists in the ledger exactly when its workflow was started.
//
// In one transaction it inserts the request (pending), its subject digests
// and a received audit event, then calls start, and commits only if start
// succeeded; when start fails nothing is written and its error is returned.
// (If the commit itself fails after start succeeded, the workflow runs
// without a ledger row and its ledger writes report erasure_not_found.)
//
// With an IdempotencyKey already used, the existing request is returned with
// created false and start is not called; if it was made from a different
// body, the error is an idempotency_conflict. Concurrent calls with one key
// queue on the unique index, so exactly one of them creates and starts.
func (s *Store) CreateErasure(ctx context.Context, in NewErasure, start func(ctx context.Context) error) (e lethe.Erasure, created bool, err error) {
	id, err := uuid.Parse(in.ID)
	if err != nil {
		return lethe.Erasure{}, false, lethe.Errorf(lethe.KindInvalid, "invalid_request_id", "the request id must be a UUID")
	}
	if len(in.Subject) == 0 {
		return lethe.Erasure{}, false, lethe.Errorf(lethe.KindInvalid, "invalid_subject", "the subject needs at least one identifier")
	}
	now := s.now()
	createdAt := in.CreatedAt
	if createdAt.IsZero() {
		createdAt = now
	}
	deadline := in.Deadline
	if deadline.IsZero() {
		deadline = createdAt.Add(lethe.DefaultDeadline)
	}
	target := in.Target
	if target.IsZero() {
		target = DefaultTarget(createdAt, deadline)
	}
	var key sql.NullString
	if in.IdempotencyKey != "" {
		key = sql.NullString{String: in.IdempotencyKey, Valid: true}
	}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return lethe.Erasure{}, false, s.fail("create erasure", err)
	}
	defer tx.Rollback()

	// NULL keys never conflict, so requests without a key always insert.
	e, err = scanErasure(tx.QueryRowContext(ctx, `
		INSERT INTO erasure_requests (id, status, subject_types, reason, requested_by, dry_run,
			idempotency_key, request_hash, created_at, deadline, target, updated_at, workflow_id, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (idempotency_key) DO NOTHING
		RETURNING `+erasureColumns,
		id, lethe.RequestPending, pq.Array(subjectTypes(in.Subject)), in.Reason, in.RequestedBy,
		in.DryRun, key, in.RequestHash, createdAt, deadline, target, now, in.WorkflowID, in.CreatedBy))
	if errors.Is(err, sql.ErrNoRows) {
		e, err = s.existingErasure(ctx, tx, in)
		return e, false, err
	}
	if err != nil {
		return lethe.Erasure{}, false, s.fail("create erasure", err)
	}
	e.Systems = []lethe.SystemProgress{}

	types, digests := splitDigests(in.Subject)
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO request_subjects (request_id, id_type, digest)
		SELECT $1, t, d FROM unnest($2::text[], $3::text[]) AS u (t, d)
		ON CONFLICT DO NOTHING`,
		id, pq.Array(types), pq.Array(digests)); err != nil {
		return lethe.Erasure{}, false, s.fail("create erasure: record subject", err)
	}
	if start != nil {
		// The workflow may run before this transaction commits, or find that
		// it never did: ErasureRecorded waits on this lock to tell.
		cls, key := requestLock(id)
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, cls, key); err != nil {
			return lethe.Erasure{}, false, s.fail("create erasure: lock request", err)
		}
		if err := start(ctx); err != nil {
			return lethe.Erasure{}, false, err
		}
	}
	// Last, so the audit chain's head is locked only until the commit and
	// never while start talks to Temporal.
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		RequestID: e.ID, Kind: lethe.AuditReceived, At: createdAt, Actor: in.CreatedBy,
	}}, now); err != nil {
		return lethe.Erasure{}, false, s.fail("create erasure: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return lethe.Erasure{}, false, s.fail("create erasure", err)
	}
	return e, true, nil
}

// requestLockClass is the first key of the advisory locks on requests being
// created; the second is drawn from the request id. Two-key advisory locks
// never collide with the one-key lock of the migrator.
const requestLockClass int32 = 0x6c657468 // "leth"

// requestLock returns the two keys of the advisory lock on request id. Two
// requests sharing the second key only ever wait for each other briefly.
func requestLock(id uuid.UUID) (int32, int32) {
	return requestLockClass, int32(binary.BigEndian.Uint32(id[:4]))
}

// ErasureRecorded reports whether the ledger holds request id. CreateErasure
// starts a request's workflow inside the transaction that records it, so
// the workflow can ask before that transaction ends, and the transaction
// can still fail after the start; ErasureRecorded first waits for it to end
// (CreateErasure holds a lock on the request until then), so that its answer
// is final: false means the request was never accepted and never will be.
// The id of a chunk of a bulk erasure, which its commands carry as their
// request_id or batch_id, counts too: the relay audits refused
// confirmations under the ids this recognises.
func (s *Store) ErasureRecorded(ctx context.Context, id string) (bool, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return false, nil
	}
	// Taken and released by this one statement, the lock is granted once
	// no creating transaction holds it; the next statement's snapshot then
	// sees what that transaction committed.
	cls, key := requestLock(uid)
	if _, err := s.db.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared($1, $2)`, cls, key); err != nil {
		return false, s.fail("check erasure: wait for its creation", err)
	}
	var recorded bool
	if err := s.db.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM erasure_requests WHERE id = $1) OR EXISTS (SELECT 1 FROM batch_chunks WHERE id = $1)`, uid).Scan(&recorded); err != nil {
		return false, s.fail("check erasure", err)
	}
	return recorded, nil
}

// existingErasure answers a request whose idempotency key is taken. The
// insert that found the conflict waited for the other transaction, so the
// row is committed and visible to this statement.
func (s *Store) existingErasure(ctx context.Context, tx *sql.Tx, in NewErasure) (lethe.Erasure, error) {
	var hash string
	e, err := scanErasure(tx.QueryRowContext(ctx,
		`SELECT `+erasureColumns+`, request_hash FROM erasure_requests WHERE idempotency_key = $1`,
		in.IdempotencyKey), &hash)
	if err != nil {
		return lethe.Erasure{}, s.fail("create erasure: read existing request", err)
	}
	if hash != in.RequestHash {
		return lethe.Erasure{}, lethe.Errorf(lethe.KindConflict, "idempotency_conflict",
			"this Idempotency-Key was already used with a different request body")
	}
	systems, err := loadSystems(ctx, tx, []string{e.ID})
	if err != nil {
		return lethe.Erasure{}, s.fail("create erasure: read existing request", err)
	}
	e.Systems = systems[e.ID]
	return e, nil
}

// GetErasure returns one request with its systems ordered by name. An id
// that is not a UUID cannot name a request, so it is simply not found.
func (s *Store) GetErasure(ctx context.Context, id string) (lethe.Erasure, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return lethe.Erasure{}, erasureNotFound()
	}
	e, err := getErasure(ctx, s.db, uid)
	if err != nil {
		return lethe.Erasure{}, s.fail("get erasure", err)
	}
	return e, nil
}

// getErasure reads one request and its systems through q.
func getErasure(ctx context.Context, q querier, id uuid.UUID) (lethe.Erasure, error) {
	e, err := scanErasure(q.QueryRowContext(ctx,
		`SELECT `+erasureColumns+` FROM erasure_requests WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return lethe.Erasure{}, erasureNotFound()
	}
	if err != nil {
		return lethe.Erasure{}, err
	}
	systems, err := loadSystems(ctx, q, []string{e.ID})
	if err != nil {
		return lethe.Erasure{}, err
	}
	e.Systems = systems[e.ID]
	return e, nil
}

// ErasureFilter selects a page of ListErasures.
type ErasureFilter struct {
	// Status, when set, keeps only requests in that status.
	Status lethe.RequestStatus
	// Limit is the page size: zero means DefaultListLimit, and it is capped
	// at MaxListLimit.
	Limit int
	// Cursor is the nextCursor of the previous page; empty for the first.
	Cursor string
	// Overdue, when true, keeps only requests that passed their deadline
	// with systems still open.
	Overdue bool
}

// ListErasures returns one page of requests, newest first, with their
// systems. Pages are cut by keyset on (created_at, id), so a request created
// while a client pages through never shifts what it sees. nextCursor is
// empty on the last page.
func (s *Store) ListErasures(ctx context.Context, f ErasureFilter) (items []lethe.Erasure, nextCursor string, err error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, "", lethe.Errorf(lethe.KindInvalid, "invalid_status", "unknown request status %q", f.Status)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)

	var (
		conds []string
		args  []any
	)
	if f.Status != "" {
		args = append(args, f.Status)
		conds = append(conds, fmt.Sprintf("status = $%d", len(args)))
	}
	if f.Overdue {
		conds = append(conds, "overdue")
	}
	query, args, err := newestFirst(`SELECT `+erasureColumns+` FROM erasure_requests`, conds, args, f.Cursor, limit)
	if err != nil {
		return nil, "", err
	}

	items, nextCursor, err = newestFirstPage(ctx, s.db, query, args, limit,
		func(r scanner) (lethe.Erasure, error) { return scanErasure(r) },
		func(e lethe.Erasure) (time.Time, string) { return e.CreatedAt, e.ID })
	if err != nil {
		return nil, "", s.fail("list erasures", err)
	}
	ids := make([]string, len(items))
	for i, e := range items {
		ids[i] = e.ID
	}
	systems, err := loadSystems(ctx, s.db, ids)
	if err != nil {
		return nil, "", s.fail("list erasures", err)
	}
	for i := range items {
		items[i].Systems = systems[items[i].ID]
	}
	return items, nextCursor, nil
}

// SubjectDigests returns the keyed digests of a request's subject, ordered
// by type then digest.
func (s *Store) SubjectDigests(ctx context.Context, requestID string) ([]lethe.SubjectDigest, error) {
	uid, err := uuid.Parse(requestID)
	if err != nil {
		return nil, erasureNotFound()
	}
	out, err := subjectDigests(ctx, s.db, uid)
	if err != nil {
		return nil, s.fail("read subject digests", err)
	}
	return out, nil
}

// subjectDigests reads a request's digests through q.
func subjectDigests(ctx context.Context, q querier, id uuid.UUID) ([]lethe.SubjectDigest, error) {
	// The left join tells an unknown request (no row) from a known one.
	rows, err := q.QueryContext(ctx, `
		SELECT s.id_type, s.digest
		FROM erasure_requests r LEFT JOIN request_subjects s ON s.request_id = r.id
		WHERE r.id = $1
		ORDER BY s.id_type, s.digest`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		out   = []lethe.SubjectDigest{}
		found bool
	)
	for rows.Next() {
		found = true
		var t, d sql.NullString
		if err := rows.Scan(&t, &d); err != nil {
			return nil, err
		}
		if t.Valid {
			out = append(out, lethe.SubjectDigest{Type: t.String, Digest: d.String})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, erasureNotFound()
	}
	return out, nil
}

// loadSystems reads the systems of several requests in one query, keyed by
// request id; every id gets a non-nil slice ordered by system name.
func loadSystems(ctx context.Context, q querier, ids []string) (map[string][]lethe.SystemProgress, error) {
	out := make(map[string][]lethe.SystemProgress, len(ids))
	for _, id := range ids {
		out[id] = []lethe.SystemProgress{}
	}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, `
		SELECT request_id, system, status, attempts, records, confirmed_at, detail
		FROM erasure_systems
		WHERE request_id = ANY ($1::uuid[])
		ORDER BY request_id, system`, pq.Array(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id        string
			p         lethe.SystemProgress
			confirmed sql.NullTime
		)
		if err := rows.Scan(&id, &p.Name, &p.Status, &p.Attempts, &p.Records, &confirmed, &p.Detail); err != nil {
			return nil, err
		}
		p.ConfirmedAt = utcPtr(confirmed)
		out[id] = append(out[id], p)
	}
	return out, rows.Err()
}

// scanErasure reads the erasureColumns of one row, then any extra columns
// the query selected after them.
func scanErasure(r scanner, extra ...any) (lethe.Erasure, error) {
	var (
		e                           lethe.Erasure
		extended, completed, pruned sql.NullTime
	)
	dest := append([]any{&e.ID, &e.Status, &e.Overdue, pq.Array(&e.SubjectTypes), &e.Reason,
		&e.RequestedBy, &e.CreatedBy, &e.DryRun, &e.CreatedAt, &e.Deadline, &e.Target, &extended, &e.ExtensionReason,
		&completed, &e.WorkflowID, &pruned}, extra...)
	if err := r.Scan(dest...); err != nil {
		return lethe.Erasure{}, err
	}
	e.SubjectTypes = nonNil(e.SubjectTypes)
	e.CreatedAt = e.CreatedAt.UTC()
	e.Deadline = e.Deadline.UTC()
	e.Target = e.Target.UTC()
	e.ExtendedAt = utcPtr(extended)
	e.CompletedAt = utcPtr(completed)
	e.PrunedAt = utcPtr(pruned)
	return e, nil
}

// utcPtr turns a nullable time column into the API's optional time.
func utcPtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// DefaultTarget is the internal target of a request received at created with
// the given deadline: lethe.DefaultTargetBefore before the deadline, or the
// middle of the window when that is shorter than twice the margin.
func DefaultTarget(created, deadline time.Time) time.Time {
	window := deadline.Sub(created)
	if window < 2*lethe.DefaultTargetBefore {
		return created.Add(window / 2)
	}
	return deadline.Add(-lethe.DefaultTargetBefore)
}

// subjectTypes returns the distinct identifier types of a subject, sorted,
// which is all the request row says about who the subject is.
func subjectTypes(subject []lethe.SubjectDigest) []string {
	types := make([]string, 0, len(subject))
	for _, d := range subject {
		types = append(types, d.Type)
	}
	slices.Sort(types)
	return slices.Compact(types)
}

// A cursor is base64url of the last row's created_at (Unix microseconds,
// PostgreSQL's precision) and id (16 bytes). Clients treat it as opaque.
const cursorLen = 8 + 16

func encodeCursor(createdAt time.Time, id string) string {
	b := make([]byte, 0, cursorLen)
	b = binary.BigEndian.AppendUint64(b, uint64(createdAt.UnixMicro()))
	u := uuid.MustParse(id)
	b = append(b, u[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(c string) (time.Time, uuid.UUID, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != cursorLen {
		return time.Time{}, uuid.UUID{}, false
	}
	at := time.UnixMicro(int64(binary.BigEndian.Uint64(b[:8]))).UTC()
	id, err := uuid.FromBytes(b[8:])
	if err != nil {
		return time.Time{}, uuid.UUID{}, false
	}
	return at, id, true
}

// newestFirst completes a listing's query, newest first, from the
// conditions gathered so far: the cursor's position, the order, and one row
// more than limit, which tells whether there is a next page.
func newestFirst(base string, conds []string, args []any, cursor string, limit int) (string, []any, error) {
	if cursor != "" {
		at, id, ok := decodeCursor(cursor)
		if !ok {
			return "", nil, lethe.Errorf(lethe.KindInvalid, "invalid_cursor", "the cursor is not one this API issued")
		}
		args = append(args, at, id)
		conds = append(conds, fmt.Sprintf("(created_at, id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	query := base
	if len(conds) > 0 {
		query += ` WHERE ` + strings.Join(conds, " AND ")
	}
	args = append(args, limit+1)
	return query + fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args)), args, nil
}

// newestFirstPage runs a listing's query from newestFirst and cuts its
// page: the rows scanned in order and, when the query found one more than
// limit, the cursor after the last one kept.
func newestFirstPage[T any](ctx context.Context, q querier, query string, args []any, limit int,
	scan func(scanner) (T, error), key func(T) (time.Time, string)) ([]T, string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	items := []T{}
	for rows.Next() {
		it, err := scan(rows)
		if err != nil {
			return nil, "", err
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		at, id := key(items[len(items)-1])
		next = encodeCursor(at, id)
	}
	return items, next, nil
}
