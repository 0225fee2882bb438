package workflows

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
)

// point is a moment of the request's window at which it escalates if
// systems are still open.
type point struct {
	name  string
	label string
	kind  lethe.EscalationKind
	at    time.Time
}

// points lists the escalation points in time order: the reminders, the
// internal target, the deadline. A request without a deadline has none.
func (w *erasure) points() []point {
	if w.deadline.IsZero() {
		return nil
	}
	window := w.deadline.Sub(w.in.CreatedAt)
	reminders := w.policy.Reminders
	if reminders == nil {
		reminders = DefaultReminders
	}
	var out []point
	for _, f := range reminders {
		if f <= 0 || f >= 1 {
			continue
		}
		label := strconv.FormatFloat(math.Round(f*10000)/100, 'f', -1, 64) + "%"
		out = append(out, point{name: "reminder:" + label, label: label, kind: lethe.EscalationReminder,
			at: w.in.CreatedAt.Add(time.Duration(f * float64(window)))})
	}
	if !w.target.IsZero() && w.target.Before(w.deadline) {
		out = append(out, point{name: "target", label: "target", kind: lethe.EscalationTarget, at: w.target})
	}
	out = append(out, w.deadlinePoint())
	slices.SortStableFunc(out, func(a, b point) int { return a.at.Compare(b.at) })
	return slices.DeleteFunc(out, func(p point) bool { return w.fired[p.name] })
}

// firePoints escalates at every point passed: a reminder sends the silent
// systems their command again, the deadline marks the request overdue, and
// each is audited and handed to the Escalate activity (log, metric,
// webhook). A point passed with no system open (confirmed or held) passes
// quietly.
func (w *erasure) firePoints(ctx workflow.Context, now time.Time) {
	for _, p := range w.points() {
		if p.at.After(now) {
			return
		}
		w.fired[p.name] = true
		open := w.openSystems()
		if len(open) == 0 {
			continue
		}
		resent := 0
		if p.kind == lethe.EscalationReminder {
			for _, cmd := range w.commands {
				if cmd.Status == lethe.SystemDispatched && !cmd.RetryPending && cmd.IssuedAt.Before(now) &&
					cmd.Attempt < w.policy.MaxAttempts {
					w.redispatch(now, cmd, fmt.Sprintf("reminder at %s of the window to the deadline", p.label))
					resent++
				}
			}
		}
		w.escalatePoint(ctx, now, p, open, resent)
	}
}

// escalatePoint audits point p, passed with the systems open still to
// confirm (resent of them sent their command again), marks the request
// overdue at the deadline, and hands the escalation to Escalate.
func (w *erasure) escalatePoint(ctx workflow.Context, now time.Time, p point, open []string, resent int) {
	ev := lethe.AuditEvent{Kind: lethe.AuditEscalated}
	switch p.kind {
	case lethe.EscalationReminder:
		ev.Detail = fmt.Sprintf("reminder at %s of the window: %s open, %d re-dispatched", p.label, names(open), resent)
	case lethe.EscalationTarget:
		ev.Detail = fmt.Sprintf("internal target %s passed: %s open", w.target.Format(time.RFC3339), names(open))
	case lethe.EscalationOverdue:
		w.overdue = true
		w.out.overdue = true
		ev.Kind = lethe.AuditOverdue
		ev.Detail = fmt.Sprintf("deadline %s passed: %s open", w.deadline.Format(time.RFC3339), names(open))
	}
	w.event(now, ev)
	w.escalate(ctx, lethe.Escalation{RequestID: w.in.RequestID, Kind: p.kind, Point: p.label, At: now,
		Deadline: w.deadline, Target: w.target, Open: open, Redispatched: resent})
}

// deadlinePoint is the last escalation point: the deadline, which marks
// the request overdue.
func (w *erasure) deadlinePoint() point {
	return point{name: "deadline", label: "deadline", kind: lethe.EscalationOverdue, at: w.deadline}
}

// openSystems names the systems still to confirm, held ones excepted.
func (w *erasure) openSystems() []string {
	var out []string
	for _, name := range workflow.DeterministicKeys(w.bySystem) {
		for _, cmd := range w.bySystem[name] {
			if !cmd.Status.Final() {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// names lists systems for an audit line, the first ten by name.
func names(systems []string) string {
	const shown = 10
	s := fmt.Sprintf("%d systems (%s", len(systems), strings.Join(systems[:min(len(systems), shown)], ", "))
	if len(systems) > shown {
		s += fmt.Sprintf(" and %d more", len(systems)-shown)
	}
	return s + ")"
}

// escalate runs the Escalate activity beside the main loop, so that a
// webhook that is down delays nobody; after an hour of retries it gives up,
// the escalation staying in the audit and the logs.
func (w *erasure) escalate(ctx workflow.Context, e lethe.Escalation) {
	w.escalating++
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer func() { w.escalating-- }()
		var a *activities.Activities
		if err := w.runActivity(ctx, escalateWithin, a.Escalate, e, nil); err != nil {
			workflow.GetLogger(ctx).Warn("escalation not delivered", "request_id", w.in.RequestID,
				"kind", string(e.Kind), "error", err)
			return
		}
		workflow.GetLogger(ctx).Debug("escalation delivered", "request_id", w.in.RequestID, "kind", string(e.Kind))
	})
}

// awaitEscalations waits, under RevisionNothingDropped, until the
// escalations in flight are delivered or given up (escalateWithin bounds
// each): their points are marked fired, so one abandoned when the run ends
// would never be escalated again. Earlier revisions end without waiting.
func (w *erasure) awaitEscalations(ctx workflow.Context) {
	if !w.features.awaitEscalations || w.escalating == 0 {
		return
	}
	_ = workflow.Await(ctx, func() bool { return w.escalating == 0 })
}
