package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// confirm applies one confirmation and returns the identifiers it revealed
// that were not known yet.
func (w *erasure) confirm(ctx workflow.Context, now time.Time, c wire.Confirmation) []wire.Identifier {
	logger := workflow.GetLogger(ctx)
	cmd, reason := w.match(c)
	if reason != "" {
		w.reject(now, c, reason)
		logger.Warn("confirmation rejected", "request_id", w.in.RequestID, "reason", reason)
		return nil
	}
	if cmd.Status.Final() {
		logger.Debug("duplicate confirmation ignored", "request_id", w.in.RequestID, "system", cmd.System)
		return nil
	}
	if c.Outcome == wire.OutcomeFailed && c.Retryable {
		if cmd.RetryPending {
			logger.Debug("duplicate retryable failure ignored", "request_id", w.in.RequestID, "system", cmd.System)
			return nil
		}
		if !cmd.FailedAt.IsZero() && !c.ConfirmedAt.After(cmd.FailedAt) {
			// The failure that caused the current attempt, delivered again:
			// counting it would burn an attempt.
			logger.Debug("repeated retryable failure ignored", "request_id", w.in.RequestID, "system", cmd.System)
			return nil
		}
	}

	cmd.Detail = c.Detail
	cmd.ChangedAt = now
	w.touch(cmd.System)
	confirmed := lethe.AuditEvent{Kind: lethe.AuditConfirmed, System: cmd.System, Attempt: cmd.Attempt,
		Detail: outcomeDetail(c)}
	w.event(now, confirmed)

	switch {
	case c.Outcome != wire.OutcomeFailed:
		at := c.ConfirmedAt.UTC()
		cmd.Status = lethe.SystemStatus(c.Outcome)
		cmd.Records = c.Records
		cmd.ConfirmedAt = &at
		cmd.RetryPending = false
	case c.Retryable && w.attemptsLeft(cmd):
		cmd.FailedAt = c.ConfirmedAt.UTC()
		cmd.RetryPending = true
		cmd.Due = now.Add(w.policy.RetryDelay)
	default:
		at := c.ConfirmedAt.UTC()
		cmd.Status = lethe.SystemFailed
		cmd.Records = c.Records
		cmd.ConfirmedAt = &at
		cmd.RetryPending = false
		why := "the system reported a failure it cannot retry"
		if c.Retryable {
			why = fmt.Sprintf("the system still failed after %d attempts", cmd.Attempt-cmd.RetryFrom)
		}
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditFailed, System: cmd.System, Attempt: cmd.Attempt, Detail: why})
	}
	return w.learn(now, cmd.System, c.DerivedIdentifiers)
}

// match finds the command a confirmation answers, or says why it counts for
// nothing. The reasons name what was wrong, never a value.
func (w *erasure) match(c wire.Confirmation) (*CommandState, string) {
	if err := c.Validate(); err != nil {
		return nil, "malformed confirmation"
	}
	cmd, ok := w.byID[c.CommandID]
	switch {
	case !ok:
		return nil, "unknown command_id"
	case c.RequestID != w.in.RequestID:
		return nil, "request_id does not match the command"
	case c.System != cmd.System:
		return nil, "command_id was not issued to this system"
	}
	return cmd, ""
}

func (w *erasure) reject(now time.Time, c wire.Confirmation, reason string) {
	ev := lethe.AuditEvent{Kind: lethe.AuditConfirmationRejected, Detail: reason}
	if lethe.ValidSystemName(c.System) {
		ev.System = c.System
	}
	w.event(now, ev)
}

// learn adds the derived identifiers not yet known to the subject and
// records which types arrived.
func (w *erasure) learn(now time.Time, system string, ids []wire.Identifier) []wire.Identifier {
	var fresh []wire.Identifier
	for _, id := range ids {
		if w.learnIdentifier(id) {
			fresh = append(fresh, id)
		}
	}
	w.learned = append(w.learned, fresh...)
	if len(fresh) > 0 {
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditDerived, System: system,
			Detail: "new identifier types: " + strings.Join(identifierTypes(fresh), ", ")})
	}
	return fresh
}

// learnIdentifier adds id to the subject; false when it was known or is
// unusable.
func (w *erasure) learnIdentifier(id wire.Identifier) bool {
	k := idKey(id)
	if w.known[k] || !lethe.ValidIdentifierType(id.Type) || id.Value == "" {
		return false
	}
	w.known[k] = true
	w.subject = append(w.subject, id)
	return true
}

// expand dispatches derived identifiers: to systems not targeted yet, and to
// targeted systems only the identifiers of their types they were never sent.
func (w *erasure) expand(ctx workflow.Context, derived []wire.Identifier) error {
	types := identifierTypes(derived)
	targets, err := w.planTargets(ctx, types)
	if err != nil {
		return err
	}
	w.event(workflow.Now(ctx).UTC(), lethe.AuditEvent{Kind: lethe.AuditPlanned, Detail: planDetail(targets, types)})
	return w.dispatchNew(ctx, targets)
}

func outcomeDetail(c wire.Confirmation) string {
	switch {
	case c.Outcome == wire.OutcomeFailed && c.Retryable:
		return "failed, retryable"
	case c.Outcome == wire.OutcomeFailed:
		return "failed"
	}
	return fmt.Sprintf("%s, %d records", c.Outcome, c.Records)
}
