package registry

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
)

// RetryBatch reopens batch id for its failed outcomes (of the systems
// named, or of all when systems is empty), as RetryErasure does a request:
// under the batch's row lock it calls notify, which tells the workflow,
// then moves the batch back to running, the subjects with such an outcome
// to running and those outcomes to pending, and audits who asked. A
// reopened batch leaves the suppression list until it finishes again, when
// it takes a new place at the list's end. A batch with no such outcome, or
// a canceled one, answers nothing_to_retry; an unknown one batch_not_found.
func (s *Store) RetryBatch(ctx context.Context, id, actor string, systems []string, notify func(ctx context.Context) error) (lethe.Batch, error) {
	now := s.now().Truncate(time.Microsecond)
	tx, uid, b, err := s.lockBatch(ctx, "retry batch", id)
	if err != nil {
		return lethe.Batch{}, err
	}
	defer tx.Rollback()
	if b.Status == lethe.RequestCanceled {
		return lethe.Batch{}, lethe.Errorf(lethe.KindConflict, "nothing_to_retry", "the batch was canceled")
	}
	var failed []string
	rows, err := tx.QueryContext(ctx, `
		SELECT DISTINCT system FROM batch_outcomes
		WHERE batch_id = $1 AND status = 'failed' AND (coalesce(cardinality($2::text[]), 0) = 0 OR system = ANY ($2))
		ORDER BY system`, uid, pq.Array(systems))
	if err != nil {
		return lethe.Batch{}, s.fail("retry batch: read outcomes", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return lethe.Batch{}, s.fail("retry batch: read outcomes", err)
		}
		failed = append(failed, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return lethe.Batch{}, s.fail("retry batch: read outcomes", err)
	}
	if len(failed) == 0 {
		return lethe.Batch{}, lethe.Errorf(lethe.KindConflict, "nothing_to_retry", "no subject of the batch has failed in a system to retry")
	}
	if notify != nil {
		if err := notify(ctx); err != nil {
			return lethe.Batch{}, err
		}
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE erasure_batches SET status = 'running', completed_at = NULL, finished_xid = NULL, updated_at = $2
		WHERE id = $1`, uid, now); err != nil {
		return lethe.Batch{}, s.fail("retry batch", err)
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE batch_subjects SET status = 'running', updated_at = $3
		WHERE batch_id = $1 AND status <> 'running' AND item IN (
			SELECT item FROM batch_outcomes WHERE batch_id = $1 AND status = 'failed' AND system = ANY ($2))`,
		uid, pq.Array(failed), now); err != nil {
		return lethe.Batch{}, s.fail("retry batch: reopen subjects", err)
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE batch_outcomes SET status = 'pending', detail = 'retry requested', updated_at = $3
		WHERE batch_id = $1 AND status = 'failed' AND system = ANY ($2)`,
		uid, pq.Array(failed), now); err != nil {
		return lethe.Batch{}, s.fail("retry batch: reopen outcomes", err)
	}
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		RequestID: b.ID, Kind: lethe.AuditRetryRequested, At: now, Actor: actor,
		Detail: "systems: " + strings.Join(failed, ", "),
	}}, now); err != nil {
		return lethe.Batch{}, s.fail("retry batch: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return lethe.Batch{}, s.fail("retry batch", err)
	}
	return s.GetBatch(ctx, b.ID)
}

// lockBatch begins a transaction and reads batch id in it, its row locked
// until the transaction ends, as lockErasure does a request. On an error
// the transaction is already rolled back.
func (s *Store) lockBatch(ctx context.Context, op, id string) (*sql.Tx, uuid.UUID, lethe.Batch, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, uuid.UUID{}, lethe.Batch{}, batchNotFound()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, uuid.UUID{}, lethe.Batch{}, s.fail(op, err)
	}
	b, err := scanBatch(tx.QueryRowContext(ctx,
		`SELECT `+batchColumns+` FROM erasure_batches WHERE id = $1 FOR UPDATE`, uid))
	if err != nil {
		tx.Rollback()
		if errors.Is(err, sql.ErrNoRows) {
			return nil, uuid.UUID{}, lethe.Batch{}, batchNotFound()
		}
		return nil, uuid.UUID{}, lethe.Batch{}, s.fail(op, err)
	}
	return tx, uid, b, nil
}

// AuditBatchCancel records that actor asked to cancel batch id, so that the
// audit names who stopped it, as AuditCancelRequest does for a request.
// The API calls it before it tells the workflow: an unknown batch is
// batch_not_found, a finished one already_finished, and then nothing is
// recorded.
func (s *Store) AuditBatchCancel(ctx context.Context, id, actor string) error {
	now := s.now()
	tx, uid, b, err := s.lockBatch(ctx, "audit batch cancel", id)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if b.Status.Final() {
		return lethe.Errorf(lethe.KindConflict, "already_finished", "the batch has already finished (status %s)", b.Status)
	}
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		RequestID: uid.String(), Kind: lethe.AuditCancelRequested, Actor: actor, At: now,
	}}, now); err != nil {
		return s.fail("audit batch cancel", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("audit batch cancel", err)
	}
	return nil
}
