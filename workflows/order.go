package workflows

import (
	"strings"
	"time"

	"github.com/lethe-dev/lethe"
)

// Ordering (RevisionOrdered): a system's commands wait until every system
// it is erased after (activities.Target.After) that the request targets
// has reached a final outcome. A held system counts as retained, final: it
// is not erased now, so nothing waits for it. Systems the request does not
// target are skipped. A failed dependency keeps its dependants waiting
// until a retry of it succeeds; meanwhile the request may end failed.

// waitingFor names the systems the commands of system wait for: those of
// its After that the request targets and that are still open, and those
// that cannot finish before a retry (failed, or waiting themselves for
// one that failed).
func (w *erasure) waitingFor(system string) (open, failed []string) {
	return w.waitingAt(system, 0)
}

// waitingAt is waitingFor at depth steps along the chain of After; the
// registry keeps that graph acyclic, depth only bounds the walk should a
// request have seen it change into a cycle over time.
func (w *erasure) waitingAt(system string, depth int) (open, failed []string) {
	for _, dep := range w.targets[system].After {
		depOpen, depFailed := false, false
		for _, c := range w.bySystem[dep] {
			switch {
			case c.Superseded || c.Held:
			case c.Waiting:
				if depth < len(w.targets) && w.stuckAt(c, depth+1) {
					depFailed = true
				} else {
					depOpen = true
				}
			case c.Status == lethe.SystemFailed:
				depFailed = true
			case !c.Status.Final():
				depOpen = true
			}
		}
		switch {
		case depOpen:
			open = append(open, dep)
		case depFailed:
			failed = append(failed, dep)
		}
	}
	return open, failed
}

// dispatchOrWait publishes a new command, or keeps it waiting for the
// systems its system is erased after.
func (w *erasure) dispatchOrWait(now time.Time, cmd *CommandState) {
	open, failed := w.waitingFor(cmd.System)
	if len(open) == 0 && len(failed) == 0 {
		w.publish(cmd)
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditDispatched, System: cmd.System, Attempt: 1,
			Detail: "identifier types: " + strings.Join(identifierTypes(cmd.Identifiers), ", ")})
		return
	}
	cmd.Waiting = true
	cmd.Status = lethe.SystemPending
	cmd.IssuedAt, cmd.ConfirmBy, cmd.Due = time.Time{}, time.Time{}, time.Time{}
	cmd.Detail = waitDetail(open, failed)
	cmd.ChangedAt = now
	w.touch(cmd.System)
	w.event(now, lethe.AuditEvent{Kind: lethe.AuditPlanned, System: cmd.System, Detail: "not dispatched yet: " + cmd.Detail})
}

// releaseWaiting dispatches every waiting command whose system no longer
// waits for another, and brings the detail of the others up to date.
func (w *erasure) releaseWaiting(now time.Time) {
	for _, cmd := range w.commands {
		if !cmd.Waiting {
			continue
		}
		open, failed := w.waitingFor(cmd.System)
		if len(open) > 0 || len(failed) > 0 {
			if d := waitDetail(open, failed); d != cmd.Detail {
				cmd.Detail, cmd.ChangedAt = d, now
				w.touch(cmd.System)
			}
			continue
		}
		cmd.Waiting = false
		w.publishAt(now, cmd)
		w.event(now, lethe.AuditEvent{Kind: lethe.AuditDispatched, System: cmd.System, Attempt: cmd.Attempt,
			Detail: "identifier types: " + strings.Join(identifierTypes(cmd.Identifiers), ", ") +
				"; the systems it is erased after are final"})
	}
}

// stuck reports whether cmd waits only for systems that cannot finish
// before a retry: the request no longer waits for it.
func (w *erasure) stuck(cmd *CommandState) bool { return w.stuckAt(cmd, 0) }

func (w *erasure) stuckAt(cmd *CommandState, depth int) bool {
	if !cmd.Waiting {
		return false
	}
	open, failed := w.waitingAt(cmd.System, depth)
	return len(open) == 0 && len(failed) > 0
}

// waitDetail is a waiting system's detail: whom it waits for, and which of
// them failed and need a retry first.
func waitDetail(open, failed []string) string {
	var parts []string
	if len(open) > 0 {
		parts = append(parts, "waiting for "+strings.Join(open, ", ")+" to finish")
	}
	if len(failed) > 0 {
		parts = append(parts, "held up until a retry: "+strings.Join(failed, ", ")+" failed or waits for a system that failed")
	}
	return strings.Join(parts, "; ")
}
