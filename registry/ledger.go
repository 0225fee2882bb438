package registry

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

// ApplyLedger writes one batch of a request's changes in one transaction: the
// new status, the changed systems and the audit events, in that order. It is
// what the workflow's activities call after each wave. A delta with a Batch
// name is applied once: written again under the same name (an activity
// retried after its commit, or run again after its worker died), it changes
// nothing. Without a name, a repeat appends its events again.
//
// A request in a final status keeps it: a late or replayed delta still
// records its systems and events but cannot reopen or re-finish the request.
func (s *Store) ApplyLedger(ctx context.Context, requestID string, d lethe.LedgerDelta) error {
	_, err := s.applyLedger(ctx, requestID, d, false)
	return err
}

// Outcome is a system of a request that a delta moved into a final status,
// for the worker's metrics.
type Outcome struct {
	System string
	Status lethe.SystemStatus
	// Dispatched is the system's first dispatch within the request.
	Dispatched time.Time
	// ConfirmedAt is when the system confirmed; nil when it failed for
	// want of a confirmation.
	ConfirmedAt *time.Time
}

// ApplyLedgerOutcomes is ApplyLedger, reporting the systems the delta moved
// from open (or absent) into a final status, each once: a delta applied
// before, a system already final and a system never dispatched (a held
// system, retained without a command) report nothing, so that metrics
// counted from the outcomes count each system's end once.
func (s *Store) ApplyLedgerOutcomes(ctx context.Context, requestID string, d lethe.LedgerDelta) ([]Outcome, error) {
	return s.applyLedger(ctx, requestID, d, true)
}

// applyLedger is ApplyLedger, which reads the outcomes only when asked to:
// that costs one more query per delta that finishes a system.
func (s *Store) applyLedger(ctx context.Context, requestID string, d lethe.LedgerDelta, report bool) ([]Outcome, error) {
	id, err := uuid.Parse(requestID)
	if err != nil {
		return nil, erasureNotFound()
	}
	if d.Status != "" && !d.Status.Valid() {
		return nil, lethe.Errorf(lethe.KindInvalid, "invalid_status", "unknown request status %q", d.Status)
	}
	now := s.now()

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, s.fail("apply ledger", err)
	}
	defer tx.Rollback()

	// Locking the request row orders concurrent deltas of one request.
	var (
		current lethe.RequestStatus
		pruned  bool
	)
	err = tx.QueryRowContext(ctx,
		`SELECT status, pruned_at IS NOT NULL FROM erasure_requests WHERE id = $1 FOR UPDATE`, id).Scan(&current, &pruned)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, erasureNotFound()
	}
	if err != nil {
		return nil, s.fail("apply ledger", err)
	}

	// sibling is set when an earlier batch of the same number was written:
	// a workflow task run again with other contents (see unwritten). It is
	// read in the statement that records the batch, so that the usual
	// delta costs no extra round trip.
	var sibling bool
	if d.Batch != "" {
		var inserted bool
		var siblings string
		if n, _, ok := strings.Cut(d.Batch, "/"); ok {
			siblings = n + "/%"
		}
		err := tx.QueryRowContext(ctx, `
			WITH ins AS (
				INSERT INTO ledger_batches (request_id, batch) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1
			)
			SELECT EXISTS (SELECT 1 FROM ins),
				$3 <> '' AND EXISTS (SELECT 1 FROM ledger_batches
					WHERE request_id = $1 AND batch LIKE $3 AND batch <> $2)`,
			id, d.Batch, siblings).Scan(&inserted, &sibling)
		if err != nil {
			return nil, s.fail("apply ledger: record batch", err)
		}
		if !inserted {
			return nil, nil // applied before; the deferred rollback ends the transaction
		}
	}

	if d.Status != "" && d.Status != current && !current.Final() {
		var completedAt sql.NullTime
		if d.Status.Final() {
			completedAt = sql.NullTime{Time: now, Valid: true}
			if d.CompletedAt != nil {
				completedAt.Time = *d.CompletedAt
			}
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE erasure_requests SET status = $2, completed_at = $3, updated_at = $4 WHERE id = $1`,
			id, d.Status, completedAt, now); err != nil {
			return nil, s.fail("apply ledger: update status", err)
		}
	}

	if d.Overdue {
		if _, err := tx.ExecContext(ctx,
			`UPDATE erasure_requests SET overdue = true, updated_at = $2 WHERE id = $1 AND NOT overdue`,
			id, now); err != nil {
			return nil, s.fail("apply ledger: mark overdue", err)
		}
	}

	// Retention removed a pruned request's systems for good; a delta that
	// arrives later still leaves its events in the audit.
	var outcomes []Outcome
	if len(d.Systems) > 0 && !pruned {
		if report {
			if outcomes, err = finishing(ctx, tx, id, d); err != nil {
				return nil, s.fail("apply ledger: read outcomes", err)
			}
		}
		if err := upsertSystems(ctx, tx, id, d.Systems, now); err != nil {
			return nil, s.fail("apply ledger: update systems", err)
		}
	}

	if err := dropPull(ctx, tx, id.String(), d); err != nil {
		return nil, s.fail("apply ledger: drop pull commands", err)
	}

	if len(d.Events) > 0 {
		events := make([]lethe.AuditEvent, len(d.Events))
		for i, e := range d.Events {
			e.RequestID = id.String()
			events[i] = e
		}
		if sibling {
			events, err = unwritten(ctx, tx, id, d.Batch, events)
			if err != nil {
				return nil, s.fail("apply ledger: read the batch's events", err)
			}
		}
		if err := insertBatchAudit(ctx, tx, events, now, d.Batch); err != nil {
			return nil, s.fail("apply ledger: audit", err)
		}
	}

	if err := tx.Commit(); err != nil {
		return nil, s.fail("apply ledger", err)
	}
	return outcomes, nil
}

// finishing finds the systems of d that move from open (or absent) into a
// final status and were dispatched, with their first dispatch: the earliest
// dispatched event in the audit or, for a request whose ledger waited for it
// to settle, in d itself.
func finishing(ctx context.Context, tx *sql.Tx, id uuid.UUID, d lethe.LedgerDelta) ([]Outcome, error) {
	// As in upsertSystems, a system's later entry in the delta wins.
	final := map[string]lethe.SystemProgress{}
	for _, p := range d.Systems {
		if p.Status.Final() {
			final[p.Name] = p
		} else {
			delete(final, p.Name)
		}
	}
	if len(final) == 0 {
		return nil, nil
	}
	names := slices.Sorted(maps.Keys(final))
	first := map[string]time.Time{}
	for _, e := range d.Events {
		if e.Kind == lethe.AuditDispatched && e.System != "" && !e.At.IsZero() {
			if t, ok := first[e.System]; !ok || e.At.Before(t) {
				first[e.System] = e.At
			}
		}
	}
	rows, err := tx.QueryContext(ctx, `
		SELECT u.system, es.status, min(a.at)
		FROM unnest($2::text[]) AS u (system)
		LEFT JOIN erasure_systems es ON es.request_id = $1 AND es.system = u.system
		LEFT JOIN audit_events a ON a.request_id = $1 AND a.system = u.system AND a.kind = $3
		GROUP BY u.system, es.status`, id, pq.Array(names), string(lethe.AuditDispatched))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Outcome
	for rows.Next() {
		var (
			name   string
			before sql.NullString
			at     sql.NullTime
		)
		if err := rows.Scan(&name, &before, &at); err != nil {
			return nil, err
		}
		p, ok := final[name]
		if !ok || (before.Valid && lethe.SystemStatus(before.String).Final()) {
			continue
		}
		dispatched, ok := first[name]
		if at.Valid && (!ok || at.Time.Before(dispatched)) {
			dispatched, ok = at.Time.UTC(), true
		}
		if !ok {
			continue
		}
		out = append(out, Outcome{System: name, Status: p.Status, Dispatched: dispatched, ConfirmedAt: p.ConfirmedAt})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Outcome) int { return strings.Compare(a.System, b.System) })
	return out, nil
}

// upsertSystems writes whole SystemProgress rows in one statement. When a
// system appears twice in one batch, the later entry wins, as it would have
// had the entries been written one by one.
func upsertSystems(ctx context.Context, tx *sql.Tx, id uuid.UUID, systems []lethe.SystemProgress, now time.Time) error {
	var (
		last      = make(map[string]int, len(systems))
		names     []string
		statuses  []string
		attempts  []int64
		records   []int64
		confirmed []string
		details   []string
	)
	for i, p := range systems {
		last[p.Name] = i
	}
	for i, p := range systems {
		if last[p.Name] != i {
			continue
		}
		if !validSystemStatus(p.Status) {
			return lethe.Errorf(lethe.KindInvalid, "invalid_system_status", "unknown system status %q", p.Status)
		}
		names = append(names, p.Name)
		statuses = append(statuses, string(p.Status))
		attempts = append(attempts, int64(p.Attempts))
		records = append(records, p.Records)
		// Times travel as text so that a missing one can be NULL inside an array.
		var at string
		if p.ConfirmedAt != nil {
			at = p.ConfirmedAt.UTC().Format(time.RFC3339Nano)
		}
		confirmed = append(confirmed, at)
		details = append(details, p.Detail)
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO erasure_systems (request_id, system, status, attempts, records,
			confirmed_at, detail, updated_at)
		SELECT $1, u.system, u.status, u.attempts, u.records,
			NULLIF(u.confirmed_at, '')::timestamptz, u.detail, $2
		FROM unnest($3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[], $8::text[])
			AS u (system, status, attempts, records, confirmed_at, detail)
		ON CONFLICT (request_id, system) DO UPDATE SET
			status = excluded.status, attempts = excluded.attempts, records = excluded.records,
			confirmed_at = excluded.confirmed_at, detail = excluded.detail,
			updated_at = excluded.updated_at`,
		id, now, pq.Array(names), pq.Array(statuses), pq.Array(attempts), pq.Array(records),
		pq.Array(confirmed), pq.Array(details))
	return err
}

// AppendAudit appends events that belong to no ledger batch, such as the
// relay's rejected confirmations or the events of legal holds. Their request
// ids need not exist, but must be UUIDs: anything else cannot have come from
// Lethe and is refused. An event about a legal hold (Hold set) or a system
// (System set, such as a confirmation refused for its signature that names
// no known request) may name no request.
func (s *Store) AppendAudit(ctx context.Context, events []lethe.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	canonical := make([]lethe.AuditEvent, len(events))
	for i, e := range events {
		if e.RequestID != "" || (e.Hold == "" && e.System == "") {
			id, err := uuid.Parse(e.RequestID)
			if err != nil {
				return lethe.Errorf(lethe.KindInvalid, "invalid_request_id", "audit event %d: the request id must be a UUID", i)
			}
			e.RequestID = id.String()
		}
		canonical[i] = e
	}
	if err := insertAudit(ctx, s.db, canonical, s.now()); err != nil {
		return s.fail("append audit", err)
	}
	return nil
}

// Audit returns a request's history in the order it was written. A request
// id with no events gives an empty list, not an error: the audit also holds
// ids that never named a request.
func (s *Store) Audit(ctx context.Context, requestID string) ([]lethe.AuditEvent, error) {
	id, err := uuid.Parse(requestID)
	if err != nil {
		return nil, erasureNotFound()
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT request_id, system, hold_id, kind, attempt, detail, at, actor
		FROM audit_events WHERE request_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, s.fail("read audit", err)
	}
	defer rows.Close()
	out := []lethe.AuditEvent{}
	for rows.Next() {
		var e lethe.AuditEvent
		if err := rows.Scan(&e.RequestID, &e.System, &e.Hold, &e.Kind, &e.Attempt, &e.Detail, &e.At, &e.Actor); err != nil {
			return nil, s.fail("read audit", err)
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("read audit", err)
	}
	return out, nil
}

// unwritten leaves out of events those that an earlier batch of the same
// number (the part of batch before its "/") already wrote: a workflow task
// run again after its first attempt wrote its batch, but with a signal the
// first attempt had not seen, names its batch by the same number and other
// contents (see workflows.batchName), and its events repeat the first
// attempt's but for what the signal added. Events are compared by all but
// their time, which is the task's, and counted, so that k equal events
// written before let through only those beyond k.
func unwritten(ctx context.Context, tx *sql.Tx, id uuid.UUID, batch string, events []lethe.AuditEvent) ([]lethe.AuditEvent, error) {
	n, _, ok := strings.Cut(batch, "/")
	if !ok {
		return events, nil
	}
	rows, err := tx.QueryContext(ctx, `
		SELECT kind, system, hold_id, attempt, detail, actor FROM audit_events
		WHERE request_id = $1 AND ledger_batch LIKE $2`, id, n+"/%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	written := map[lethe.AuditEvent]int{}
	for rows.Next() {
		var e lethe.AuditEvent
		if err := rows.Scan(&e.Kind, &e.System, &e.Hold, &e.Attempt, &e.Detail, &e.Actor); err != nil {
			return nil, err
		}
		written[e]++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(written) == 0 {
		return events, nil
	}
	out := events[:0:0]
	for _, e := range events {
		k := lethe.AuditEvent{Kind: e.Kind, System: e.System, Hold: e.Hold, Attempt: e.Attempt, Detail: e.Detail, Actor: e.Actor}
		if written[k] > 0 {
			written[k]--
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// insertAudit appends events in one statement. WITH ORDINALITY and the
// ORDER BY make the rows follow the slice order, and the chain trigger of
// audit_events (migration 0003) links them in that order. Events without a
// time get now; an empty request id is stored as NULL.
//
// The trigger locks the chain's head until the transaction ends, so callers
// write audit events last in a transaction: everything before the insert
// then runs without holding up other writers.
func insertAudit(ctx context.Context, q querier, events []lethe.AuditEvent, now time.Time) error {
	return insertBatchAudit(ctx, q, events, now, "")
}

// insertBatchAudit is insertAudit for the events of a ledger batch, which
// each row names (NULL for none).
func insertBatchAudit(ctx context.Context, q querier, events []lethe.AuditEvent, now time.Time, batch string) error {
	if len(events) == 0 {
		return nil
	}
	var (
		ids      = make([]string, len(events))
		systems  = make([]string, len(events))
		holds    = make([]string, len(events))
		kinds    = make([]string, len(events))
		attempts = make([]int64, len(events))
		details  = make([]string, len(events))
		ats      = make([]string, len(events))
		actors   = make([]string, len(events))
	)
	for i, e := range events {
		at := e.At
		if at.IsZero() {
			at = now
		}
		ids[i], systems[i], holds[i], kinds[i] = e.RequestID, e.System, e.Hold, string(e.Kind)
		attempts[i], details[i], actors[i] = int64(e.Attempt), e.Detail, e.Actor
		ats[i] = at.UTC().Format(time.RFC3339Nano)
	}
	_, err := q.ExecContext(ctx, `
		INSERT INTO audit_events (request_id, system, hold_id, kind, attempt, detail, at, actor, ledger_batch)
		SELECT NULLIF(u.request_id, '')::uuid, u.system, u.hold_id, u.kind, u.attempt, u.detail,
			u.at::timestamptz, u.actor, NULLIF($9, '')
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[])
			WITH ORDINALITY AS u (request_id, system, hold_id, kind, attempt, detail, at, actor, n)
		ORDER BY u.n`,
		pq.Array(ids), pq.Array(systems), pq.Array(holds), pq.Array(kinds), pq.Array(attempts),
		pq.Array(details), pq.Array(ats), pq.Array(actors), batch)
	return err
}

// validSystemStatus mirrors the CHECK on erasure_systems.status, so that a
// bad status is reported as the caller's mistake rather than a failed insert.
func validSystemStatus(st lethe.SystemStatus) bool {
	return st == lethe.SystemPending || st == lethe.SystemDispatched || st.Final()
}

// dropPull takes out of the pull queue the commands that d closed: every
// command of a request reaching a final status, and those of systems that
// reached one. A command dispatched again later is queued again.
func dropPull(ctx context.Context, tx *sql.Tx, requestID string, d lethe.LedgerDelta) error {
	if d.Status.Final() {
		_, err := tx.ExecContext(ctx, `DELETE FROM pull_commands WHERE request_id = $1`, requestID)
		return err
	}
	final := map[string]bool{}
	for _, p := range d.Systems {
		final[p.Name] = p.Status.Final() // a system's later entry wins
	}
	var systems []string
	for name, done := range final {
		if done {
			systems = append(systems, name)
		}
	}
	if len(systems) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM pull_commands WHERE request_id = $1 AND system = ANY($2::text[])`,
		requestID, pq.Array(systems))
	return err
}
