package registry

import (
	"context"
	"database/sql"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

// BatchHold is a legal hold active at the time a chunk was planned that
// covers one of the chunk's digests: the subjects known by that digest are
// held in the hold's system (every system when System is empty).
type BatchHold struct {
	Hold   lethe.Hold
	System string
	Digest lethe.SubjectDigest
}

// MatchBatch serves the planning of a chunk of a bulk erasure in two
// indexed queries, whatever its size: the active systems that erase by any
// of types, and the legal holds active at at that cover any of digests.
// The caller pairs them per subject.
func (s *Store) MatchBatch(ctx context.Context, types []string, digests []lethe.SubjectDigest, at time.Time) ([]lethe.System, []BatchHold, error) {
	systems := []lethe.System{}
	if len(types) == 0 {
		return systems, nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+systemColumns+` FROM systems
		WHERE retired_at IS NULL AND identifiers && $1::text[] ORDER BY name`, pq.Array(types))
	if err != nil {
		return nil, nil, s.fail("match batch systems", err)
	}
	defer rows.Close()
	for rows.Next() {
		sys, err := scanSystem(rows)
		if err != nil {
			return nil, nil, s.fail("match batch systems", err)
		}
		systems = append(systems, sys)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, s.fail("match batch systems", err)
	}
	rows.Close()
	if len(digests) == 0 {
		return systems, nil, nil
	}
	dtypes, ds := splitDigests(digests)
	hrows, err := s.db.QueryContext(ctx, `
		SELECT h.id, coalesce(h.system, ''), h.basis, h.expires_at, hs.id_type, hs.digest
		FROM legal_hold_subjects hs
		JOIN unnest($1::text[], $2::text[]) AS u (t, d) ON hs.id_type = u.t AND hs.digest = u.d
		JOIN legal_holds h ON h.id = hs.hold_id
		WHERE h.lifted_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > $3)
		ORDER BY h.expires_at DESC NULLS FIRST, h.id`, pq.Array(dtypes), pq.Array(ds), at)
	if err != nil {
		return nil, nil, s.fail("match batch holds", err)
	}
	defer hrows.Close()
	var holds []BatchHold
	for hrows.Next() {
		var (
			h       BatchHold
			expires sql.NullTime
		)
		if err := hrows.Scan(&h.Hold.ID, &h.System, &h.Hold.Basis, &expires, &h.Digest.Type, &h.Digest.Digest); err != nil {
			return nil, nil, s.fail("match batch holds", err)
		}
		h.Hold.System, h.Hold.ExpiresAt, h.Hold.Active = h.System, utcPtr(expires), true
		holds = append(holds, h)
	}
	if err := hrows.Err(); err != nil {
		return nil, nil, s.fail("match batch holds", err)
	}
	return systems, holds, nil
}

// BatchDelta is what changed in a bulk erasure since its ledger was last
// written by one of its workflows: many subjects' rows, written in a few
// statements whatever their number, and the batch's own row.
type BatchDelta struct {
	BatchID string `json:"batch_id"`
	// Name names the delta uniquely within its batch, so that a delta
	// written again (an activity retried after its commit) changes nothing.
	Name string `json:"name"`
	// Outcomes are subject-system rows to write, whole.
	Outcomes []OutcomeGroup `json:"outcomes,omitempty"`
	// Subjects are new statuses of subjects.
	Subjects []SubjectGroup `json:"subjects,omitempty"`
	// Learned are the digests of identifiers systems revealed.
	Learned []BatchDigest `json:"learned,omitempty"`
	// Events are appended to the batch's audit, after everything else.
	Events []lethe.AuditEvent `json:"events,omitempty"`
	// Status, when set, is the batch's new status; CompletedAt goes with a
	// final one.
	Status      lethe.RequestStatus `json:"status,omitempty"`
	CompletedAt *time.Time          `json:"completed_at,omitempty"`
	// Overdue records that the deadline passed with subjects open.
	Overdue bool `json:"overdue,omitempty"`
}

// OutcomeGroup is the same progress of one system for many subjects, named
// by their items: a chunk's outcomes are mostly alike, so the delta that
// carries them through Temporal stays small.
type OutcomeGroup struct {
	System      string             `json:"system"`
	Status      lethe.SystemStatus `json:"status"`
	Attempts    int                `json:"attempts"`
	Records     int64              `json:"records,omitempty"`
	Detail      string             `json:"detail,omitempty"`
	ConfirmedAt *time.Time         `json:"confirmed_at,omitempty"`
	Items       []int              `json:"items"`
}

// SubjectGroup is one new status of many subjects.
type SubjectGroup struct {
	Status lethe.RequestStatus `json:"status"`
	Items  []int               `json:"items"`
}

// BatchDigest is a keyed digest learned for one subject of a batch.
type BatchDigest struct {
	Item   int    `json:"item"`
	Type   string `json:"type"`
	Digest string `json:"digest"`
}

// ApplyBatchLedger writes d in one transaction: the delta's name first
// (nothing more when it was written before), then the subjects' outcomes,
// statuses and learned digests, each in one statement, then the batch's
// row, and the audit last, holding the chain's lock only until the commit.
// It reports whether it wrote d, false when an earlier call had, so that
// what d changed is counted once.
func (s *Store) ApplyBatchLedger(ctx context.Context, d BatchDelta) (bool, error) {
	id, err := uuid.Parse(d.BatchID)
	if err != nil {
		return false, batchNotFound()
	}
	if d.Status != "" && !d.Status.Valid() {
		return false, lethe.Errorf(lethe.KindInvalid, "invalid_status", "unknown batch status %q", d.Status)
	}
	for _, g := range d.Outcomes {
		if !validSystemStatus(g.Status) {
			return false, lethe.Errorf(lethe.KindInvalid, "invalid_status", "unknown system status %q", g.Status)
		}
	}
	for _, g := range d.Subjects {
		if !g.Status.Valid() {
			return false, lethe.Errorf(lethe.KindInvalid, "invalid_status", "unknown subject status %q", g.Status)
		}
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, s.fail("apply batch ledger", err)
	}
	defer tx.Rollback()
	var inserted bool
	err = tx.QueryRowContext(ctx, `
		WITH b AS (SELECT id FROM erasure_batches WHERE id = $1),
		ins AS (
			INSERT INTO batch_ledger_writes (batch_id, name) SELECT id, $2 FROM b
			ON CONFLICT DO NOTHING RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM ins)`, id, d.Name).Scan(&inserted)
	if err != nil {
		return false, s.fail("apply batch ledger: record delta", err)
	}
	if !inserted {
		var known bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM erasure_batches WHERE id = $1)`, id).Scan(&known); err != nil {
			return false, s.fail("apply batch ledger", err)
		}
		if !known {
			return false, batchNotFound()
		}
		return false, nil // written before
	}
	if err := upsertOutcomes(ctx, tx, id, d.Outcomes, now); err != nil {
		return false, s.fail("apply batch ledger: outcomes", err)
	}
	if err := updateSubjects(ctx, tx, id, d.Subjects, now); err != nil {
		return false, s.fail("apply batch ledger: subjects", err)
	}
	if len(d.Learned) > 0 {
		items := make([]int64, len(d.Learned))
		types := make([]string, len(d.Learned))
		digests := make([]string, len(d.Learned))
		for i, l := range d.Learned {
			items[i], types[i], digests[i] = int64(l.Item), l.Type, l.Digest
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO batch_subject_digests (batch_id, item, id_type, digest, derived)
			SELECT $1, u.item, u.t, u.d, true FROM unnest($2::int[], $3::text[], $4::text[]) AS u (item, t, d)
			ON CONFLICT DO NOTHING`, id, pq.Array(items), pq.Array(types), pq.Array(digests)); err != nil {
			return false, s.fail("apply batch ledger: learned digests", err)
		}
	}
	if d.Status != "" || d.Overdue {
		var completed any
		if d.Status.Final() {
			at := now
			if d.CompletedAt != nil {
				at = d.CompletedAt.UTC()
			}
			completed = at
		}
		// A final status sets completed_at; any other clears it (a retry
		// reopened the batch), and finished_xid with it, so that the
		// trigger stamps the transaction that finishes it again.
		if _, err := tx.ExecContext(ctx, `
			UPDATE erasure_batches SET
				status = CASE WHEN $2 = '' THEN status ELSE $2 END,
				completed_at = CASE WHEN $2 = '' THEN completed_at ELSE $3::timestamptz END,
				finished_xid = CASE WHEN $2 = '' THEN finished_xid ELSE NULL END,
				overdue = overdue OR $4,
				updated_at = $5
			WHERE id = $1`, id, string(d.Status), completed, d.Overdue, now); err != nil {
			return false, s.fail("apply batch ledger: batch", err)
		}
	}
	events := make([]lethe.AuditEvent, len(d.Events))
	for i, e := range d.Events {
		e.RequestID = d.BatchID
		events[i] = e
	}
	if err := insertAudit(ctx, tx, events, now); err != nil {
		return false, s.fail("apply batch ledger: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return false, s.fail("apply batch ledger: commit", err)
	}
	return true, nil
}

// upsertOutcomes writes every subject-system row of groups in one statement.
func upsertOutcomes(ctx context.Context, tx *sql.Tx, id uuid.UUID, groups []OutcomeGroup, now time.Time) error {
	n := 0
	for _, g := range groups {
		n += len(g.Items)
	}
	if n == 0 {
		return nil
	}
	var (
		items     = make([]int64, 0, n)
		systems   = make([]string, 0, n)
		statuses  = make([]string, 0, n)
		attempts  = make([]int64, 0, n)
		records   = make([]int64, 0, n)
		details   = make([]string, 0, n)
		confirmed = make([]sql.NullString, 0, n)
	)
	for _, g := range groups {
		var at sql.NullString
		if g.ConfirmedAt != nil {
			at = sql.NullString{String: g.ConfirmedAt.UTC().Format(time.RFC3339Nano), Valid: true}
		}
		for _, it := range g.Items {
			items = append(items, int64(it))
			systems = append(systems, g.System)
			statuses = append(statuses, string(g.Status))
			attempts = append(attempts, int64(g.Attempts))
			records = append(records, g.Records)
			details = append(details, g.Detail)
			confirmed = append(confirmed, at)
		}
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO batch_outcomes (batch_id, item, system, status, attempts, records, detail, confirmed_at, updated_at)
		SELECT $1, u.item, u.system, u.status, u.attempts, u.records, u.detail, u.confirmed::timestamptz, $9
		FROM unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[], $8::text[])
			AS u (item, system, status, attempts, records, detail, confirmed)
		ON CONFLICT (batch_id, item, system) DO UPDATE SET
			status = excluded.status, attempts = excluded.attempts, records = excluded.records,
			detail = excluded.detail, confirmed_at = excluded.confirmed_at, updated_at = excluded.updated_at`,
		id, pq.Array(items), pq.Array(systems), pq.Array(statuses), pq.Array(attempts), pq.Array(records),
		pq.Array(details), pq.Array(confirmed), now)
	return err
}

// updateSubjects sets the statuses of groups in one statement.
func updateSubjects(ctx context.Context, tx *sql.Tx, id uuid.UUID, groups []SubjectGroup, now time.Time) error {
	var (
		items    []int64
		statuses []string
	)
	for _, g := range groups {
		for _, it := range g.Items {
			items = append(items, int64(it))
			statuses = append(statuses, string(g.Status))
		}
	}
	if len(items) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `
		UPDATE batch_subjects s SET status = u.status, updated_at = $4
		FROM unnest($2::int[], $3::text[]) AS u (item, status)
		WHERE s.batch_id = $1 AND s.item = u.item`, id, pq.Array(items), pq.Array(statuses), now)
	return err
}
