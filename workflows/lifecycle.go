package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
)

// finish ends a request whose commands are all final.
func (w *erasure) finish(ctx workflow.Context) error {
	now := workflow.Now(ctx).UTC()
	status, kind := lethe.RequestCompleted, lethe.AuditCompleted
	systems := w.progressAll()
	for _, p := range systems {
		if p.Status == lethe.SystemFailed {
			status, kind = lethe.RequestFailed, lethe.AuditFailed
		}
	}
	w.status = status
	w.completedAt = &now
	w.out.status = status
	w.out.completedAt = &now
	w.event(now, lethe.AuditEvent{Kind: kind, Detail: summary(systems)})
	// Every command is final: a cancellation arriving now changes nothing,
	// so the outcome is written on a context it cannot interrupt.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err := w.flush(dctx, false); err != nil {
		workflow.GetLogger(ctx).Error("erasure outcome not written", "request_id", w.in.RequestID, "error", err)
		return err
	}
	workflow.GetLogger(ctx).Info("erasure finished", "request_id", w.in.RequestID, "status", string(status))
	w.awaitEscalations(dctx)
	_ = workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) })
	if len(w.inbox) > 0 {
		workflow.GetLogger(ctx).Info("confirmations after the end ignored", "request_id", w.in.RequestID, "count", len(w.inbox))
	}
	return nil
}

// stop ends the run on an error: a cancellation is recorded as such, any
// other error (one the activities marked non-retryable) fails the workflow.
func (w *erasure) stop(ctx workflow.Context, err error) error {
	if ctx.Err() != nil {
		return w.cancel(ctx)
	}
	workflow.GetLogger(ctx).Error("erasure stopped", "request_id", w.in.RequestID, "error", err)
	if w.features.failedLedger {
		return w.fail(ctx, err)
	}
	if w.ledgerHeld {
		// What the ledger was still to learn goes in before the run ends.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		if ferr := w.flush(dctx, false); ferr != nil {
			workflow.GetLogger(ctx).Error("held ledger changes not written", "request_id", w.in.RequestID, "error", ferr)
		}
	}
	return err
}

// fail records a run stopped by err as failed: the ledger gets the status,
// its time and an audit event saying why, written on a context a
// cancellation cannot interrupt, as cancel does, so that the API stops
// showing the request running and an operator can act on it. The reason
// names the error type, never the error's message, which could quote what
// a system sent. Nothing more is dispatched.
func (w *erasure) fail(ctx workflow.Context, err error) error {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	now := workflow.Now(dctx).UTC()
	w.status = lethe.RequestFailed
	w.completedAt = &now
	w.out.commands = nil
	w.out.status = lethe.RequestFailed
	w.out.completedAt = &now
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditFailed, Detail: failReason(err)})
	logger := workflow.GetLogger(dctx)
	if ferr := w.flush(dctx, false); ferr != nil {
		logger.Error("failed status not written", "request_id", w.in.RequestID, "error", ferr)
	}
	w.awaitEscalations(dctx)
	return err
}

// failReason says, for the audit, why a run stopped: the error's type,
// never its message. The worker log has the whole error.
func failReason(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() != "" {
		return "stopped on a non-retryable " + appErr.Type() + " error; the worker log has the cause"
	}
	return "stopped on an error; the worker log has the cause"
}

// cancel records a cancellation: no further dispatch or waiting, a final
// Sync with status canceled, and the cancellation error so that Temporal
// shows the run as canceled. What was erased stays erased.
func (w *erasure) cancel(ctx workflow.Context) error {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	now := workflow.Now(dctx).UTC()
	open := 0
	for _, p := range w.progressAll() {
		if !p.Status.Final() {
			open++
		}
	}
	w.status = lethe.RequestCanceled
	w.completedAt = &now
	w.out.commands = nil
	w.out.status = lethe.RequestCanceled
	w.out.completedAt = &now
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditCanceled,
		Detail: fmt.Sprintf("canceled with %d of %d systems still open", open, len(w.bySystem))})
	logger := workflow.GetLogger(dctx)
	if err := w.flush(dctx, false); err != nil {
		logger.Error("canceled status not written", "request_id", w.in.RequestID, "error", err)
	}
	_ = workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) })
	logger.Info("erasure canceled", "request_id", w.in.RequestID)
	return ctx.Err()
}

func (w *erasure) shouldContinueAsNew(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > continueAsNewAfter
}

// continueAsNew hands the request over to a fresh run with a short history,
// carrying everything reached, including confirmations not yet processed.
func (w *erasure) continueAsNew(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return w.stop(ctx, err)
	}
	w.awaitEscalations(ctx)
	if w.features.drainAll {
		// Every signal still queued goes into the state carried over: an
		// extension or a lift dropped here would leave the ledger saying
		// one thing and the next run doing another.
		w.drain(ctx)
	} else {
		ch := workflow.GetSignalChannel(ctx, SignalConfirm)
		for {
			var sig ConfirmSignal
			if !ch.ReceiveAsync(&sig) {
				break
			}
			w.inbox = append(w.inbox, sig.Confirmations...)
		}
	}
	workflow.GetLogger(ctx).Info("erasure continues as new", "request_id", w.in.RequestID,
		"commands", len(w.commands), "inbox", len(w.inbox))
	return workflow.NewContinueAsNewError(ctx, ErasureWorkflowName, w.carry())
}

// carry is the input of the next run.
func (w *erasure) carry() ErasureInput {
	in := w.in
	in.Policy = w.policy
	in.Deadline, in.Target = w.deadline, w.target
	st := &State{
		Status:       w.status,
		Subject:      slices.Clone(w.subject),
		Inbox:        slices.Clone(w.inbox),
		Fired:        workflow.DeterministicKeys(w.fired),
		Overdue:      w.overdue,
		Learned:      slices.Clone(w.learned),
		HoldsChanged: w.holdsChanged,
		Retries:      slices.Clone(w.orders),
	}
	for _, name := range workflow.DeterministicKeys(w.targets) {
		st.Targets = append(st.Targets, w.targets[name])
	}
	if w.features.stableNames {
		st.Drawn, st.Syncs = w.drawn, w.syncs
	}
	var places map[string]int
	if w.features.stableNames {
		places = make(map[string]int, len(w.subject))
		for i, id := range w.subject {
			places[idKey(id)] = i
		}
	}
	for _, cmd := range w.commands {
		c := *cmd
		if places != nil && !c.open() {
			// Final: never dispatched again, so only which identifiers it
			// was sent still matters, and what the view shows of it.
			c.Sent = nil
			for _, id := range c.Identifiers {
				c.Sent = append(c.Sent, places[idKey(id)])
			}
			c.Identifiers = nil
			c.Topic, c.ConfirmWithin = "", 0
			c.IssuedAt, c.ConfirmBy, c.Due, c.FailedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		}
		st.Commands = append(st.Commands, c)
	}
	in.State = st
	return in
}
