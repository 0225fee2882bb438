package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

// RetryErasure reopens request id for its failed systems (those named in
// systems, or all when it is empty): it calls notify, which tells the
// workflow, and then, in the same transaction, moves those systems back to
// dispatched, a failed request back to running, and audits who asked. A
// reopened request leaves the suppression list until it finishes again,
// when it takes a new place at the list's end. A
// request with no such system answers nothing_to_retry, and so does a
// canceled one; an unknown one erasure_not_found.
func (s *Store) RetryErasure(ctx context.Context, id, actor string, systems []string,
	notify func(ctx context.Context, systems []string) error) (lethe.Erasure, error) {
	now := s.now().Truncate(time.Microsecond)
	tx, uid, e, err := s.lockErasure(ctx, "retry erasure", id)
	if err != nil {
		return lethe.Erasure{}, err
	}
	defer tx.Rollback()
	if e.Status == lethe.RequestCanceled {
		return lethe.Erasure{}, lethe.Errorf(lethe.KindConflict, "nothing_to_retry", "the request was canceled")
	}
	var failed []string
	rows, err := tx.QueryContext(ctx, `
		SELECT system FROM erasure_systems
		WHERE request_id = $1 AND status = 'failed' AND (coalesce(cardinality($2::text[]), 0) = 0 OR system = ANY ($2))
		ORDER BY system`, uid, pq.Array(systems))
	if err != nil {
		return lethe.Erasure{}, s.fail("retry erasure: read systems", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return lethe.Erasure{}, s.fail("retry erasure: read systems", err)
		}
		failed = append(failed, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return lethe.Erasure{}, s.fail("retry erasure: read systems", err)
	}
	if len(failed) == 0 && e.Status == lethe.RequestPending {
		return lethe.Erasure{}, lethe.Errorf(lethe.KindConflict, "nothing_to_retry",
			"no system of the request has failed in the ledger yet: a request writes its steps there once it has settled, within seconds")
	}
	if len(failed) == 0 {
		return lethe.Erasure{}, lethe.Errorf(lethe.KindConflict, "nothing_to_retry", "no system of the request has failed")
	}
	if notify != nil {
		if err := notify(ctx, failed); err != nil {
			return lethe.Erasure{}, err
		}
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE erasure_requests SET status = 'running', completed_at = NULL, finished_xid = NULL, updated_at = $2
		WHERE id = $1 AND status = 'failed'`, uid, now); err != nil {
		return lethe.Erasure{}, s.fail("retry erasure", err)
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE erasure_systems SET status = 'dispatched', detail = 'retry requested', updated_at = $3
		WHERE request_id = $1 AND system = ANY ($2) AND status = 'failed'`, uid, pq.Array(failed), now); err != nil {
		return lethe.Erasure{}, s.fail("retry erasure: update systems", err)
	}
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		RequestID: e.ID, Kind: lethe.AuditRetryRequested, At: now, Actor: actor,
		Detail: "systems: " + strings.Join(failed, ", "),
	}}, now); err != nil {
		return lethe.Erasure{}, s.fail("retry erasure: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return lethe.Erasure{}, s.fail("retry erasure", err)
	}
	return s.GetErasure(ctx, e.ID)
}

// lockErasure begins a transaction and reads request id in it, its row
// locked until the transaction ends, for the changes an operator makes to
// one request. On an error the transaction is already rolled back; op
// names the change in the error.
func (s *Store) lockErasure(ctx context.Context, op, id string) (*sql.Tx, uuid.UUID, lethe.Erasure, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, uuid.UUID{}, lethe.Erasure{}, erasureNotFound()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, uuid.UUID{}, lethe.Erasure{}, s.fail(op, err)
	}
	e, err := scanErasure(tx.QueryRowContext(ctx,
		`SELECT `+erasureColumns+` FROM erasure_requests WHERE id = $1 FOR UPDATE`, uid))
	if err != nil {
		tx.Rollback()
		if errors.Is(err, sql.ErrNoRows) {
			return nil, uuid.UUID{}, lethe.Erasure{}, erasureNotFound()
		}
		return nil, uuid.UUID{}, lethe.Erasure{}, s.fail(op, err)
	}
	return tx, uid, e, nil
}

// RetryFilter chooses the requests a bulk retry reopens.
type RetryFilter struct {
	// Status is the request status: failed (the default) or running (a
	// request still open with a system that failed).
	Status lethe.RequestStatus
	// System, when set, keeps requests in which that system failed, and
	// the retry then reopens that system only.
	System string
	// Since, when set, keeps failures recorded at or after it.
	Since time.Time
	// After is the last request id of the previous call, to page on.
	After string
	// Limit is how many request ids to return at most.
	Limit int
}

// FailedErasures lists, in id order, the requests the filter chooses that
// have a failed system, and reports whether more follow.
func (s *Store) FailedErasures(ctx context.Context, f RetryFilter) (ids []string, more bool, err error) {
	if f.Status == "" {
		f.Status = lethe.RequestFailed
	}
	if f.Status != lethe.RequestFailed && f.Status != lethe.RequestRunning {
		return nil, false, lethe.Errorf(lethe.KindInvalid, "invalid_status", "a retry filter's status must be failed or running")
	}
	var after any
	if f.After != "" {
		u, err := uuid.Parse(f.After)
		if err != nil {
			return nil, false, lethe.Errorf(lethe.KindInvalid, "invalid_after", "after must be a request id")
		}
		after = u
	}
	var since any
	if !f.Since.IsZero() {
		since = f.Since
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT r.id FROM erasure_requests r
		WHERE r.status = $1 AND r.pruned_at IS NULL
			AND ($2::uuid IS NULL OR r.id > $2)
			AND EXISTS (SELECT 1 FROM erasure_systems es
				WHERE es.request_id = r.id AND es.status = 'failed'
					AND ($3 = '' OR es.system = $3)
					AND ($4::timestamptz IS NULL OR es.updated_at >= $4))
		ORDER BY r.id
		LIMIT $5`, string(f.Status), after, f.System, since, f.Limit+1)
	if err != nil {
		return nil, false, s.fail("list failed erasures", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, false, s.fail("list failed erasures", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, false, s.fail("list failed erasures", err)
	}
	if len(ids) > f.Limit {
		return ids[:f.Limit], true, nil
	}
	return ids, false, nil
}

// BulkRetryOnce runs a bulk retry at most once per idempotency key: the
// first call with key runs run and stores its answer; a later call with
// the same key and request hash gets that answer back (replayed true)
// without running; a different hash is an idempotency_conflict. A call
// with the same key while the first still runs waits for it. When run
// fails, nothing is stored and the key may be used again.
func (s *Store) BulkRetryOnce(ctx context.Context, key, hash, actor string,
	run func(ctx context.Context) (json.RawMessage, error)) (result json.RawMessage, replayed bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, s.fail("bulk retry", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `
		INSERT INTO bulk_retries (idempotency_key, request_hash, actor, created_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, key, hash, actor, s.now())
	if err != nil {
		return nil, false, s.fail("bulk retry", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, false, s.fail("bulk retry", err)
	} else if n == 0 {
		var storedHash string
		var stored []byte
		if err := tx.QueryRowContext(ctx,
			`SELECT request_hash, result FROM bulk_retries WHERE idempotency_key = $1`, key).Scan(&storedHash, &stored); err != nil {
			return nil, false, s.fail("bulk retry", err)
		}
		if storedHash != hash {
			return nil, false, lethe.Errorf(lethe.KindConflict, "idempotency_conflict",
				"this Idempotency-Key was used with a different filter")
		}
		return stored, true, nil
	}
	out, err := run(ctx)
	if err != nil {
		return nil, false, err
	}
	if _, err := tx.ExecContext(ctx,
		`UPDATE bulk_retries SET result = $2 WHERE idempotency_key = $1`, key, []byte(out)); err != nil {
		return nil, false, s.fail("bulk retry: store result", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, false, s.fail("bulk retry", err)
	}
	return out, false, nil
}

// OpenRequest is a request the ledger holds open, as the reconciler sees it.
type OpenRequest struct {
	ID         string
	Status     lethe.RequestStatus
	WorkflowID string
	UpdatedAt  time.Time
}

// OpenErasures lists, in id order after after, at most limit requests that
// are pending or running and unchanged since before: the reconciler's
// candidates, young requests left to settle.
func (s *Store) OpenErasures(ctx context.Context, before time.Time, after string, limit int) ([]OpenRequest, error) {
	var from any
	if after != "" {
		u, err := uuid.Parse(after)
		if err != nil {
			return nil, fmt.Errorf("open erasures: after %q is not a request id", after)
		}
		from = u
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, status, workflow_id, updated_at FROM erasure_requests
		WHERE status IN ('pending', 'running') AND updated_at < $1 AND ($2::uuid IS NULL OR id > $2)
		ORDER BY id LIMIT $3`, before, from, limit)
	if err != nil {
		return nil, s.fail("list open erasures", err)
	}
	defer rows.Close()
	var out []OpenRequest
	for rows.Next() {
		var r OpenRequest
		if err := rows.Scan(&r.ID, &r.Status, &r.WorkflowID, &r.UpdatedAt); err != nil {
			return nil, s.fail("list open erasures", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list open erasures", err)
	}
	return out, nil
}

// FailOrphan marks an open request failed, with the reconciler's reason in
// the audit. It reports false, and writes nothing, when the request is no
// longer open (it moved on, or another replica got there first).
func (s *Store) FailOrphan(ctx context.Context, id, reason, actor string) (bool, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return false, erasureNotFound()
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, s.fail("fail orphan", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `
		UPDATE erasure_requests SET status = 'failed', completed_at = $2, updated_at = $2
		WHERE id = $1 AND status IN ('pending', 'running')`, uid, now)
	if err != nil {
		return false, s.fail("fail orphan", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, s.fail("fail orphan", err)
	} else if n == 0 {
		return false, nil
	}
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{
		{RequestID: uid.String(), Kind: lethe.AuditReconciled, At: now, Actor: actor, Detail: "failed: " + reason},
		{RequestID: uid.String(), Kind: lethe.AuditFailed, At: now, Detail: reason},
	}, now); err != nil {
		return false, s.fail("fail orphan: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return false, s.fail("fail orphan", err)
	}
	return true, nil
}

// Reconciled counts the reconciler's earlier actions on a request, so that
// it gives up on one it keeps having to start again.
func (s *Store) Reconciled(ctx context.Context, id string) (int, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return 0, erasureNotFound()
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND kind = $2`,
		uid, string(lethe.AuditReconciled)).Scan(&n); err != nil {
		return 0, s.fail("count reconciled", err)
	}
	return n, nil
}
