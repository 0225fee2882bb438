package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
)

// holdRecheck is how often a request with held systems asks again whether
// its holds still hold, in case the signal of a lift was lost.
const holdRecheck = 24 * time.Hour

// hold keeps a target's system out of the wave: its placeholder shows it
// retained with the hold's basis and keeps the request open until the hold
// ends. A system already held just follows the hold found now.
func (w *erasure) hold(now time.Time, t activities.Target) {
	h := *t.Hold
	due := now.Add(holdRecheck)
	if h.ExpiresAt != nil && h.ExpiresAt.Before(due) {
		due = *h.ExpiresAt
	}
	detail := "legal hold " + h.ID + ": " + h.Basis
	for _, cmd := range w.bySystem[t.System] {
		if cmd.Held {
			cmd.Hold, cmd.Due = &h, due
			if cmd.Detail != detail {
				cmd.Detail, cmd.ChangedAt = detail, now
				w.touch(t.System)
			}
			return
		}
	}
	w.add(&CommandState{System: t.System, Topic: t.Topic, Hold: &h, Held: true, Status: lethe.SystemRetained,
		Detail: detail, Due: due, IssuedAt: now, ChangedAt: now})
	w.touch(t.System)
	until := "until lifted"
	if h.ExpiresAt != nil {
		until = "until " + h.ExpiresAt.UTC().Format(time.RFC3339)
	}
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditHeld, System: t.System, Hold: h.ID,
		Detail: fmt.Sprintf("not dispatched, %s: %s", until, h.Basis)})
}

// release ends a system's hold placeholder once its hold no longer holds;
// the commands dispatched next supersede it.
func (w *erasure) release(now time.Time, system string) {
	for _, cmd := range w.bySystem[system] {
		if !cmd.Held {
			continue
		}
		cmd.Held, cmd.Superseded, cmd.ChangedAt = false, true, now
		w.touch(system)
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditPlanned, System: system, Hold: cmd.Hold.ID,
			Detail: "legal hold " + cmd.Hold.ID + " no longer holds: erasing"})
	}
}

// holdsDue reports whether the holds must be checked: a lift was
// signalled, or a held system's hold expires or is due its periodic check.
func (w *erasure) holdsDue(now time.Time) bool {
	if w.holdsChanged {
		return true
	}
	for _, cmd := range w.commands {
		if cmd.Held && !cmd.Due.After(now) {
			return true
		}
	}
	return false
}

// recheckHolds plans the held systems again: those whose hold ended are
// dispatched, the others follow the hold found now. A held system that left
// the registry meanwhile stays retained, and the request no longer waits
// for it.
func (w *erasure) recheckHolds(ctx workflow.Context) error {
	w.holdsChanged = false
	var held []string
	var types []string
	for _, name := range workflow.DeterministicKeys(w.bySystem) {
		for _, cmd := range w.bySystem[name] {
			if cmd.Held {
				held = append(held, name)
				types = append(types, w.targets[name].Types...)
				break
			}
		}
	}
	if len(held) == 0 {
		return nil
	}
	slices.Sort(types)
	targets, err := w.planTargets(ctx, slices.Compact(types))
	if err != nil {
		return err
	}
	byName := map[string]activities.Target{}
	for _, t := range targets {
		byName[t.System] = t
	}
	now := workflow.Now(ctx).UTC()
	var again []activities.Target
	for _, name := range held {
		t, ok := byName[name]
		if ok {
			again = append(again, t)
			continue
		}
		for _, cmd := range w.bySystem[name] {
			if cmd.Held {
				cmd.Held, cmd.ChangedAt = false, now
				cmd.Detail += " (the system was retired while held)"
				w.touch(name)
			}
		}
	}
	return w.dispatchNew(ctx, again)
}

// overdueAfterHolds marks the request overdue, under
// RevisionOverdueAfterHold, when systems are open past a deadline that
// passed quietly: only held systems were open then, and a hold has ended
// since. The erasure it suspended is now late.
func (w *erasure) overdueAfterHolds(ctx workflow.Context, now time.Time) {
	if !w.features.overdueAfterHold || w.overdue || !w.fired[w.deadlinePoint().name] || now.Before(w.deadline) {
		return
	}
	if open := w.openSystems(); len(open) > 0 {
		w.escalatePoint(ctx, now, w.deadlinePoint(), open, 0)
	}
}
