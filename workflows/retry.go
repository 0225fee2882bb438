package workflows

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// applyRetries carries out the retry orders received since the last step
// (RevisionRetry; before it there are none). Every failed command of the
// systems an order names, or of every system when it names none, is
// dispatched again under its command_id at its next attempt, with a fresh
// budget of Policy.MaxAttempts; the redispatched event names who asked. A
// request that had failed runs again. An order that finds nothing failed
// (an earlier order or a confirmation got there first) changes nothing.
func (w *erasure) applyRetries(ctx workflow.Context) {
	if len(w.orders) == 0 {
		return
	}
	orders := w.orders
	w.orders = nil
	now := workflow.Now(ctx).UTC()
	retried := 0
	for _, o := range orders {
		for _, cmd := range w.commands {
			if cmd.ID == "" || cmd.Superseded || cmd.Status != lethe.SystemFailed ||
				(len(o.Systems) > 0 && !slices.Contains(o.Systems, cmd.System)) {
				continue
			}
			w.retry(now, cmd, o.Actor)
			retried++
		}
	}
	workflow.GetLogger(ctx).Info("erasure retried", "request_id", w.in.RequestID, "commands", retried)
	if retried > 0 && w.status.Final() {
		w.status = lethe.RequestRunning
		w.completedAt = nil
		w.out.status = lethe.RequestRunning
		w.out.completedAt = nil
	}
}

// retry dispatches a failed command again with a fresh budget. A command
// carried over from a closed run lost its topic and confirm_within with
// its other dispatch fields (see carry); its target still has them.
func (w *erasure) retry(now time.Time, cmd *CommandState, actor string) {
	t := w.targets[cmd.System]
	if cmd.Topic == "" {
		cmd.Topic = cmp.Or(t.Topic, wire.DefaultTopic(cmd.System))
	}
	if cmd.ConfirmWithin <= 0 {
		cmd.ConfirmWithin = t.ConfirmWithin
		if cmd.ConfirmWithin <= 0 {
			cmd.ConfirmWithin = lethe.DefaultConfirmWithin
		}
	}
	cmd.RetryFrom = cmd.Attempt
	cmd.Status = lethe.SystemDispatched
	cmd.Records = 0
	cmd.ConfirmedAt = nil
	cmd.FailedAt = time.Time{}
	cmd.Detail = ""
	w.resend(now, cmd)
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditRedispatched, System: cmd.System, Attempt: cmd.Attempt,
		Actor: actor, Detail: fmt.Sprintf("retried on request, with a fresh budget of %d attempts", w.policy.MaxAttempts)})
}
