package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
)

// pruneBatch is how many requests Prune reads per query.
const pruneBatch = 100

// Prune applies retention to finished requests completed before cutoff and
// not pruned yet, oldest first: for each it calls certify, which must
// leave a stored certificate (certificate.Issuer does), then PruneErasure.
// A request whose certificate cannot be issued is left as it is, and the
// first such error is returned after the others were pruned. It returns how
// many requests it pruned.
//
// Several processes may prune at once: each request is pruned by whichever
// locks it first, and the others skip it.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, certify func(ctx context.Context, requestID string) error) (int, error) {
	var (
		pruned   int
		firstErr error
		after    time.Time
		afterID  uuid.UUID
	)
	for {
		rows, err := s.db.QueryContext(ctx, `
			SELECT id, completed_at FROM erasure_requests
			WHERE pruned_at IS NULL AND completed_at IS NOT NULL AND completed_at < $1
				AND (completed_at, id) > ($2, $3)
			ORDER BY completed_at, id LIMIT $4`, cutoff, after, afterID, pruneBatch)
		if err != nil {
			return pruned, s.fail("prune: list requests", err)
		}
		var ids []uuid.UUID
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id, &after); err != nil {
				rows.Close()
				return pruned, s.fail("prune: list requests", err)
			}
			ids = append(ids, id)
			afterID = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return pruned, s.fail("prune: list requests", err)
		}
		for _, id := range ids {
			if err := certify(ctx, id.String()); err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("prune: certificate of request %s: %w", id, err)
				}
				continue
			}
			ok, err := s.PruneErasure(ctx, id.String(), cutoff)
			if err != nil {
				return pruned, err
			}
			if ok {
				pruned++
			}
		}
		if len(ids) < pruneBatch {
			return pruned, firstErr
		}
	}
}

// PruneErasure applies retention to one request: when it is finished,
// completed before cutoff, not pruned yet and its certificate is stored, it
// deletes the request's per-system rows and ledger batches, sets pruned_at
// and appends a pruned audit event, in one transaction, and reports true.
// The request row, its subject digests (which later matching needs), its
// certificate and its audit stay. It reports false, changing nothing, for a
// request that does not qualify or that another pruner holds.
func (s *Store) PruneErasure(ctx context.Context, requestID string, cutoff time.Time) (bool, error) {
	id, err := uuid.Parse(requestID)
	if err != nil {
		return false, erasureNotFound()
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, s.fail("prune erasure", err)
	}
	defer tx.Rollback()

	var one int
	err = tx.QueryRowContext(ctx, `
		SELECT 1 FROM erasure_requests r
		WHERE r.id = $1 AND r.pruned_at IS NULL AND r.completed_at < $2
			AND EXISTS (SELECT 1 FROM erasure_certificates c WHERE c.request_id = r.id)
		FOR UPDATE SKIP LOCKED`, id, cutoff).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.fail("prune erasure", err)
	}
	systems, err := deleteCount(ctx, tx, `DELETE FROM erasure_systems WHERE request_id = $1`, id)
	if err != nil {
		return false, s.fail("prune erasure: delete systems", err)
	}
	batches, err := deleteCount(ctx, tx, `DELETE FROM ledger_batches WHERE request_id = $1`, id)
	if err != nil {
		return false, s.fail("prune erasure: delete ledger batches", err)
	}
	if _, err := tx.ExecContext(ctx,
		`UPDATE erasure_requests SET pruned_at = $2, updated_at = $2 WHERE id = $1`, id, now); err != nil {
		return false, s.fail("prune erasure", err)
	}
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		RequestID: id.String(), Kind: lethe.AuditPruned, At: now,
		Detail: fmt.Sprintf("retention deleted %d system rows and %d ledger batches; the certificate and the audit are kept", systems, batches),
	}}, now); err != nil {
		return false, s.fail("prune erasure: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return false, s.fail("prune erasure", err)
	}
	return true, nil
}

func deleteCount(ctx context.Context, tx *sql.Tx, query string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
