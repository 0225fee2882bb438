package workflows

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// deadlineInput is a request with the default 30-day window, its target two
// days before, and the given reminders.
func deadlineInput(reminders []float64, subject ...wire.Identifier) ErasureInput {
	in := input(subject...)
	in.Target = in.Deadline.Add(-2 * day)
	in.Policy.Reminders = reminders
	return in
}

// A system silent past a reminder is sent its command again (same id, next
// attempt), and each reminder is audited and escalated at its exact point.
func TestRemindersEscalateAndRedispatchSilentSystems(t *testing.T) {
	w := newWorld(t, target("billing", 40*day, "email"), target("orders", 40*day, "user_id"))
	w.confirmAt(time.Hour, one2(w, "billing"))
	w.confirmAt(25*day, one2(w, "orders"))
	if err := w.run(deadlineInput(nil, id("user_id", "u-123"), id("email", "ada@example.com"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	escs := w.escalations()
	if len(escs) != 2 {
		t.Fatalf("escalations %+v, want the reminders at 50%% and 80%%", escs)
	}
	for i, want := range []struct {
		point string
		at    time.Time
	}{{"50%", testStart.Add(15 * day)}, {"80%", testStart.Add(24 * day)}} {
		e := escs[i]
		if e.Kind != lethe.EscalationReminder || e.Point != want.point || !e.At.Equal(want.at) ||
			!slices.Equal(e.Open, []string{"orders"}) || e.Redispatched != 1 || e.RequestID != testRequestID {
			t.Errorf("escalation %d = %+v, want a reminder at %s (%v) for orders, 1 re-dispatched", i, e, want.point, want.at)
		}
	}
	cmds := w.commandsTo("orders")
	if len(cmds) != 3 || cmds[1].Attempt != 2 || cmds[2].Attempt != 3 || cmds[2].CommandID != cmds[0].CommandID {
		t.Fatalf("orders commands %+v, want attempts 1, 2, 3 under one command_id", cmds)
	}
	if !cmds[1].IssuedAt.Equal(testStart.Add(15*day)) || !cmds[2].IssuedAt.Equal(testStart.Add(24*day)) {
		t.Errorf("re-dispatches issued at %v and %v, want the reminder points", cmds[1].IssuedAt, cmds[2].IssuedAt)
	}
	if n := len(w.commandsTo("billing")); n != 1 {
		t.Errorf("billing, which confirmed, got %d commands; want 1", n)
	}
	audited := w.eventsOf(lethe.AuditEscalated)
	if len(audited) != 2 || !strings.Contains(audited[0].Detail, "reminder at 50%") ||
		!strings.Contains(audited[1].Detail, "reminder at 80%") {
		t.Errorf("escalated events %+v, want the two reminders", audited)
	}
	if re := w.eventsOf(lethe.AuditRedispatched); len(re) != 2 || !strings.Contains(re[0].Detail, "reminder") {
		t.Errorf("redispatched events %+v, want two reminders", re)
	}
	if status, _ := w.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("status %q, want completed", status)
	}
	if len(w.eventsOf(lethe.AuditOverdue)) != 0 || w.query().Overdue {
		t.Error("a request done before its deadline was flagged overdue")
	}
}

// Past the internal target the request escalates; past the deadline it is
// overdue: in the ledger, the query, the audit, the search attributes and
// the webhook, and it stays overdue once it completes.
func TestOverdueAfterDeadline(t *testing.T) {
	w := newWorld(t, target("orders", 100*day, "user_id"))
	w.recordSearchAttributes()
	var before lethe.Erasure
	w.at(30*day-time.Minute, func() { before = w.query() })
	w.confirmAt(31*day, one2(w, "orders"))
	if err := w.run(deadlineInput([]float64{}, id("user_id", "u-123"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if before.Overdue {
		t.Error("overdue a minute before the deadline")
	}
	escs := w.escalations()
	if len(escs) != 2 || escs[0].Kind != lethe.EscalationTarget || !escs[0].At.Equal(testStart.Add(28*day)) ||
		escs[1].Kind != lethe.EscalationOverdue || !escs[1].At.Equal(testStart.Add(30*day)) {
		t.Fatalf("escalations %+v, want the target at day 28 and overdue at day 30", escs)
	}
	assertOverdueWrittenOnce(t, w)
	if ev := w.eventsOf(lethe.AuditOverdue); len(ev) != 1 || !ev[0].At.Equal(testStart.Add(30*day)) {
		t.Errorf("overdue events %+v, want one at the deadline", ev)
	}
	if e := w.query(); !e.Overdue || e.Status != lethe.RequestCompleted {
		t.Errorf("after completion: overdue %v status %s, want overdue and completed", e.Overdue, e.Status)
	}
	var flagged bool
	w.mu.Lock()
	for _, u := range w.upserts {
		if v, ok := u.GetBool(SearchOverdue); ok && v {
			flagged = true
		}
	}
	w.mu.Unlock()
	if !flagged {
		t.Error("LetheOverdue was never upserted")
	}
}

// An extension moves the deadline: the reminders follow the new window, the
// old deadline passes quietly, and the new one is shown and upserted.
func TestExtensionMovesDeadline(t *testing.T) {
	w := newWorld(t, target("orders", 100*day, "user_id"))
	w.recordSearchAttributes()
	newDeadline := testStart.Add(60 * day)
	w.at(10*day, func() {
		w.env.SignalWorkflow(SignalExtend, ExtendSignal{Deadline: newDeadline, Target: newDeadline.Add(-2 * day)})
	})
	var during lethe.Erasure
	w.at(35*day, func() { during = w.query() })
	w.confirmAt(40*day, one2(w, "orders"))
	if err := w.run(deadlineInput([]float64{0.5}, id("user_id", "u-123"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if !during.Deadline.Equal(newDeadline) || !during.Target.Equal(newDeadline.Add(-2*day)) || during.Overdue {
		t.Errorf("at day 35: deadline %v target %v overdue %v; want %v, two days before, not overdue",
			during.Deadline, during.Target, during.Overdue, newDeadline)
	}
	escs := w.escalations()
	if len(escs) != 1 || escs[0].Point != "50%" || !escs[0].At.Equal(testStart.Add(30*day)) {
		t.Fatalf("escalations %+v, want only the reminder half-way through the new window (day 30)", escs)
	}
	if len(w.eventsOf(lethe.AuditOverdue)) != 0 {
		t.Error("the old deadline made the request overdue")
	}
	var upserted []time.Time
	w.mu.Lock()
	for _, u := range w.upserts {
		if v, ok := u.GetTime(SearchDeadline); ok {
			upserted = append(upserted, v)
		}
	}
	w.mu.Unlock()
	if len(upserted) != 1 || !upserted[0].Equal(newDeadline) {
		t.Errorf("LetheDeadline upserts %v, want the new deadline once", upserted)
	}
}

func litigation(expires *time.Time) *lethe.Hold {
	return &lethe.Hold{ID: "case-1", Basis: "Art. 17(3)(e): pending litigation", ExpiresAt: expires, Active: true}
}

// A held system gets no command and shows retained with the basis while the
// request waits; a lift signalled by the API dispatches it and the request
// completes. Passing the deadline with only held systems open is not
// overdue.
func TestHoldRetainsThenErasesAfterLift(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.setHold("orders", litigation(nil))
	w.confirmAt(time.Minute, one2(w, "billing"))
	var held lethe.Erasure
	w.at(31*day, func() {
		held = w.query()
		w.setHold("orders", nil)
		w.env.SignalWorkflow(SignalHolds, nil)
	})
	w.confirmAt(31*day+time.Hour, one2(w, "orders"))
	if err := w.run(deadlineInput(nil, id("user_id", "u-123"), id("email", "ada@example.com"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	p := progressByName(held)["orders"]
	if held.Status != lethe.RequestRunning || p.Status != lethe.SystemRetained ||
		!strings.Contains(p.Detail, "case-1") || !strings.Contains(p.Detail, "pending litigation") {
		t.Errorf("while held: request %s, orders %+v; want running, orders retained with the hold's basis", held.Status, p)
	}
	if held.Overdue || len(w.escalations()) != 0 {
		t.Errorf("held past the deadline: overdue %v, escalations %+v; want neither", held.Overdue, w.escalations())
	}
	cmds := w.commandsTo("orders")
	if len(cmds) != 1 || !cmds[0].IssuedAt.Equal(testStart.Add(31*day)) {
		t.Fatalf("orders commands %+v, want one, issued when the hold was lifted", cmds)
	}
	if ev := w.eventsOf(lethe.AuditHeld); len(ev) != 1 || ev[0].System != "orders" || ev[0].Hold != "case-1" {
		t.Errorf("held events %+v, want one for orders naming case-1", ev)
	}
	if status, _ := w.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("status %q, want completed", status)
	}
	if got := progressByName(w.query())["orders"]; got.Status != lethe.SystemErased {
		t.Errorf("orders %+v after the lift, want erased", got)
	}
	if got := w.ledgerSystems()["orders"]; got.Status != lethe.SystemErased {
		t.Errorf("ledger orders %+v, want erased", got)
	}
}

// A hold lifted after the deadline leaves the released system open past
// it: under RevisionOverdueAfterHold the request is overdue from the lift,
// audited and escalated once, although the deadline itself passed quietly.
func TestHoldLiftedAfterDeadlineIsOverdue(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.setHold("orders", litigation(nil))
	w.confirmAt(time.Minute, one2(w, "billing"))
	var atDeadline lethe.Erasure
	w.at(30*day+time.Hour, func() { atDeadline = w.query() })
	w.at(31*day, func() {
		w.setHold("orders", nil)
		w.env.SignalWorkflow(SignalHolds, nil)
	})
	w.confirmAt(31*day+time.Hour, one2(w, "orders"))
	in := deadlineInput([]float64{}, id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Revision = RevisionOverdueAfterHold
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if atDeadline.Overdue {
		t.Error("overdue while only a held system was open")
	}
	escs := w.escalations()
	if len(escs) != 1 || escs[0].Kind != lethe.EscalationOverdue || !escs[0].At.Equal(testStart.Add(31*day)) ||
		!slices.Equal(escs[0].Open, []string{"orders"}) {
		t.Fatalf("escalations %+v, want one, overdue at the lift (day 31) naming orders", escs)
	}
	if ev := w.eventsOf(lethe.AuditOverdue); len(ev) != 1 || !ev[0].At.Equal(testStart.Add(31*day)) {
		t.Errorf("overdue events %+v, want one at the lift", ev)
	}
	assertOverdueWrittenOnce(t, w)
	if e := w.query(); !e.Overdue || e.Status != lethe.RequestCompleted {
		t.Errorf("after completion: overdue %v status %s, want overdue and completed", e.Overdue, e.Status)
	}
}

// A hold that expires ends on its own: the workflow checks at its expiry,
// without any signal, and erases then.
func TestHoldExpiresOnItsOwn(t *testing.T) {
	w := newWorld(t, target("orders", day, "user_id"))
	expires := testStart.Add(3*day + 5*time.Hour)
	w.setHold("orders", litigation(&expires))
	w.confirmAt(4*day, one2(w, "orders"))
	if err := w.run(deadlineInput(nil, id("user_id", "u-123"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	cmds := w.commandsTo("orders")
	if len(cmds) != 1 || !cmds[0].IssuedAt.Equal(expires) {
		t.Fatalf("orders commands %+v, want one issued at the hold's expiry %v", cmds, expires)
	}
	if status, _ := w.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("status %q, want completed", status)
	}
	w.mu.Lock()
	planned := slices.Clone(w.planned)
	w.mu.Unlock()
	// Planned at the start, then checked daily and at the expiry.
	var ats []time.Time
	for _, p := range planned {
		ats = append(ats, p.At)
	}
	want := []time.Time{testStart, testStart.Add(day), testStart.Add(2 * day), testStart.Add(3 * day), expires}
	if !slices.EqualFunc(ats, want, time.Time.Equal) {
		t.Errorf("plans at %v, want %v", ats, want)
	}
}

// one2 confirms, when called, the latest command sent to system as erased.
func one2(w *world, system string) func() []wire.Confirmation {
	return func() []wire.Confirmation { return []wire.Confirmation{w.answer(system, wire.OutcomeErased, 1)} }
}

// assertOverdueWrittenOnce checks that the ledger was told once that the
// request is overdue.
func assertOverdueWrittenOnce(t *testing.T, w *world) {
	t.Helper()
	var writes int
	for _, s := range w.syncCalls() {
		if s.Ledger.Overdue {
			writes++
		}
	}
	if writes != 1 {
		t.Errorf("overdue written to the ledger %d times, want once", writes)
	}
}
