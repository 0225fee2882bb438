package workflows

import (
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
)

// TestUndeliveredSystemHoldsUpNoOther: billing's topic fails twice
// (RevisionRegularRetries). Orders is dispatched and erases meanwhile;
// billing shows pending with the reason, escalates once (not_dispatched),
// is audited as escalated rather than dispatched, and gets its command
// after the retry delay and then twice that, under attempt 1; then it
// erases and the request completes.
func TestUndeliveredSystemHoldsUpNoOther(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "email"))
	w.undeliver = map[string]int{"billing": 2}
	w.confirmAt(10*time.Second, one2(w, "orders"))
	var atTwo lethe.SystemProgress
	var ordersAtTwo lethe.SystemProgress
	w.at(20*time.Second, func() {
		p := progressByName(w.query())
		atTwo, ordersAtTwo = p["billing"], p["orders"]
	})
	w.confirmAt(3*time.Minute, one2(w, "billing"))
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.Policy.Settle = -1
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if ordersAtTwo.Status != lethe.SystemErased {
		t.Errorf("orders at 20 seconds: %s, want erased while billing is stuck", ordersAtTwo.Status)
	}
	if atTwo.Status != lethe.SystemPending || !strings.Contains(atTwo.Detail, "not dispatched") ||
		!strings.Contains(atTwo.Detail, "not authorized") {
		t.Errorf("billing at 20 seconds: %s %q, want pending with the reason", atTwo.Status, atTwo.Detail)
	}
	cmds := w.commandsTo("billing")
	if len(cmds) != 1 || cmds[0].Attempt != 1 {
		t.Fatalf("billing got %d commands (%+v), want one, attempt 1", len(cmds), cmds)
	}
	if got := w.syncedAtOf("billing"); got != DefaultRetryDelay+2*DefaultRetryDelay {
		t.Errorf("billing's command published after %s, want %s", got, 3*DefaultRetryDelay)
	}
	var stuck, dispatched int
	for _, ev := range w.events() {
		switch {
		case ev.System == "billing" && ev.Kind == lethe.AuditEscalated && strings.HasPrefix(ev.Detail, "not dispatched"):
			stuck++
		case ev.System == "billing" && ev.Kind == lethe.AuditDispatched:
			dispatched++
		}
	}
	if stuck != 2 || dispatched != 1 {
		t.Errorf("billing audit: %d not-dispatched escalations, %d dispatches; want 2 and 1", stuck, dispatched)
	}
	escs := w.escalations()
	if len(escs) != 1 || escs[0].Kind != lethe.EscalationNotDispatched || len(escs[0].Open) != 1 || escs[0].Open[0] != "billing" {
		t.Errorf("escalations %+v, want one not_dispatched for billing", escs)
	}
	if st, _ := w.finalStatus(); st != lethe.RequestCompleted {
		t.Errorf("request %s, want completed", st)
	}
	for name, p := range w.ledgerSystems() {
		if p.Status != lethe.SystemErased {
			t.Errorf("ledger: %s %s, want erased", name, p.Status)
		}
	}
	assertNoValues(t, w, "ada@example.com")
}

// syncedAtOf is how long after the start a system's first command was
// published.
func (w *world) syncedAtOf(system string) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.syncs {
		for _, o := range s.Commands {
			if o.Command.System == system {
				return w.syncedAt[i].Sub(testStart)
			}
		}
	}
	return -1
}
