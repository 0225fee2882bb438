package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
)

// Extension is the one extension of a request's deadline that GDPR
// Art. 12(3) allows, as ExtendErasure granted it.
type Extension struct {
	// Deadline and Target are the request's new dates; the target moves by
	// as much as the deadline.
	Deadline time.Time
	Target   time.Time
	Reason   string
}

// ExtendErasure moves the deadline of an open request later by by, once,
// and audits it with actor, the principal that asked. It refuses (KindConflict) a request that has finished, was
// extended before, or is already past its deadline (the controller must
// tell the subject of an extension within the first month), and an
// extension beyond lethe.MaxExtension of the current deadline (KindInvalid).
//
// notify runs inside the transaction, after the checks and before the
// audit and the commit, so that the running workflow learns the new dates exactly when
// the ledger records them; its error rolls everything back and is returned.
func (s *Store) ExtendErasure(ctx context.Context, id string, by time.Duration, reason, actor string,
	notify func(ctx context.Context, ext Extension) error) (lethe.Erasure, error) {
	if by <= 0 {
		return lethe.Erasure{}, lethe.Errorf(lethe.KindInvalid, "invalid_extension", "an extension must move the deadline later")
	}
	now := s.now().Truncate(time.Microsecond)
	tx, uid, e, err := s.lockErasure(ctx, "extend erasure", id)
	if err != nil {
		return lethe.Erasure{}, err
	}
	defer tx.Rollback()
	ext := Extension{Deadline: e.Deadline.Add(by), Target: e.Target.Add(by), Reason: reason}
	switch {
	case e.Status.Final():
		return lethe.Erasure{}, lethe.Errorf(lethe.KindConflict, "already_finished",
			"the request has already finished (status %s)", e.Status)
	case e.ExtendedAt != nil:
		return lethe.Erasure{}, lethe.Errorf(lethe.KindConflict, "already_extended",
			"the deadline was already extended once, on %s", e.ExtendedAt.Format(time.RFC3339))
	case !now.Before(e.Deadline):
		return lethe.Erasure{}, lethe.Errorf(lethe.KindConflict, "deadline_passed",
			"the deadline has passed; an extension must be decided before it")
	case ext.Deadline.After(lethe.MaxExtension(e.Deadline)):
		return lethe.Erasure{}, lethe.Errorf(lethe.KindInvalid, "invalid_extension",
			"an extension may add at most two months to the deadline (until %s)",
			lethe.MaxExtension(e.Deadline).Format(time.RFC3339))
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE erasure_requests
		SET deadline = $2, target = $3, extended_at = $4, extension_reason = $5, updated_at = $4
		WHERE id = $1`, uid, ext.Deadline, ext.Target, now, reason); err != nil {
		return lethe.Erasure{}, s.fail("extend erasure", err)
	}
	if notify != nil {
		if err := notify(ctx, ext); err != nil {
			return lethe.Erasure{}, err
		}
	}
	// Last, so the audit chain's head is locked only until the commit and
	// never while notify talks to the workflow engine.
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		RequestID: e.ID, Kind: lethe.AuditExtended, At: now, Actor: actor,
		Detail: fmt.Sprintf("deadline moved from %s to %s: %s",
			e.Deadline.Format(time.RFC3339), ext.Deadline.Format(time.RFC3339), reason),
	}}, now); err != nil {
		return lethe.Erasure{}, s.fail("extend erasure: audit", err)
	}
	if err := tx.Commit(); err != nil {
		return lethe.Erasure{}, s.fail("extend erasure", err)
	}
	e.Deadline, e.Target = ext.Deadline, ext.Target
	e.ExtendedAt, e.ExtensionReason = &now, reason
	systems, err := loadSystems(ctx, s.db, []string{e.ID})
	if err != nil {
		return lethe.Erasure{}, s.fail("extend erasure: read systems", err)
	}
	e.Systems = systems[e.ID]
	return e, nil
}

// AuditCancelRequest records that actor asked to cancel request id, so that
// the audit names who stopped it: the workflow's own canceled event, written
// once it has stopped, names nobody. The API calls it before it tells the
// workflow, and a request the ledger does not hold is erasure_not_found.
func (s *Store) AuditCancelRequest(ctx context.Context, id, actor string) error {
	uid, err := uuid.Parse(id)
	if err != nil {
		return erasureNotFound()
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fail("audit cancel request", err)
	}
	defer tx.Rollback()
	var known bool
	if err := tx.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM erasure_requests WHERE id = $1)`, uid).Scan(&known); err != nil {
		return s.fail("audit cancel request", err)
	}
	if !known {
		return erasureNotFound()
	}
	if err := insertAudit(ctx, tx, []lethe.AuditEvent{{
		RequestID: uid.String(), Kind: lethe.AuditCancelRequested, Actor: actor, At: now,
	}}, now); err != nil {
		return s.fail("audit cancel request", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("audit cancel request", err)
	}
	return nil
}
