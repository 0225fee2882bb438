package workflows

import (
	"errors"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

func TestCancelMidFlight(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 3)}
	})
	w.at(2*time.Minute, w.env.CancelWorkflow)
	err := w.run(input(id("user_id", "u-123"), id("email", "ada@example.com")))
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("workflow error %v, want a cancellation", err)
	}
	syncs := w.syncCalls()
	last := syncs[len(syncs)-1]
	if last.Ledger.Status != lethe.RequestCanceled || last.Ledger.CompletedAt == nil || len(last.Commands) != 0 {
		t.Errorf("last sync %+v, want status canceled with completed_at and no commands", last)
	}
	if ev := w.eventsOf(lethe.AuditCanceled); len(ev) != 1 {
		t.Errorf("%d canceled events, want 1", len(ev))
	}
	if n := len(w.commandsTo("billing")); n != 1 {
		t.Errorf("billing got %d commands, want 1", n)
	}
	e := w.query()
	if e.Status != lethe.RequestCanceled {
		t.Errorf("query status %q, want canceled", e.Status)
	}
	ps := progressByName(e)
	if p := ps["orders"]; p.Status != lethe.SystemErased || p.Records != 3 {
		t.Errorf("orders %+v, want still erased with 3 records", p)
	}
	if p := w.ledgerSystems()["orders"]; p.Status != lethe.SystemErased {
		t.Errorf("ledger orders %+v, want erased", p)
	}
}

func TestContinueAsNewCarriesState(t *testing.T) {
	prev := continueAsNewAfter
	continueAsNewAfter = 50
	t.Cleanup(func() { continueAsNewAfter = prev })

	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"), target("stripe", day, "stripe_customer_id"))
	var erased wire.Confirmation
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		erased = w.answer("orders", wire.OutcomeErased, 3)
		erased.DerivedIdentifiers = []wire.Identifier{id("stripe_customer_id", "cus_1")}
		return []wire.Confirmation{erased}
	})
	w.at(2*time.Minute, func() {
		w.env.SetCurrentHistoryLength(100)
		// Something to wake the workflow so it reaches a loop boundary.
		w.env.SignalWorkflow(SignalConfirm, ConfirmSignal{Confirmations: []wire.Confirmation{erased}})
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Policy.MaxAttempts = 4
	err := w.run(in)
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow error %v, want continue-as-new", err)
	}
	if can.WorkflowType == nil || can.WorkflowType.Name != ErasureWorkflowName {
		t.Errorf("continues as %v, want %s", can.WorkflowType, ErasureWorkflowName)
	}
	var next ErasureInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatalf("decode carried input: %v", err)
	}
	st := next.State
	if st == nil {
		t.Fatal("carried input has no state")
	}
	if next.RequestID != testRequestID || next.Policy.MaxAttempts != 4 || next.Policy.RetryDelay != DefaultRetryDelay ||
		!next.Deadline.Equal(in.Deadline) {
		t.Errorf("carried input %+v, want the request, its policy (defaults filled) and deadline", next)
	}
	if st.Status != lethe.RequestRunning {
		t.Errorf("carried status %q, want running", st.Status)
	}
	wantSubject := []wire.Identifier{id("user_id", "u-123"), id("email", "ada@example.com"), id("stripe_customer_id", "cus_1")}
	if !slices.Equal(st.Subject, wantSubject) {
		t.Errorf("carried subject %v, want %v", st.Subject, wantSubject)
	}
	if len(st.Targets) != 3 {
		t.Errorf("carried %d targets, want 3", len(st.Targets))
	}
	bySystem := map[string][]CommandState{}
	for _, c := range st.Commands {
		bySystem[c.System] = append(bySystem[c.System], c)
	}
	if c := bySystem["orders"]; len(c) != 1 || c[0].Status != lethe.SystemErased || c[0].Records != 3 {
		t.Errorf("carried orders commands %+v, want one erased with 3 records", c)
	}
	if c := bySystem["stripe"]; len(c) != 1 || c[0].Status != lethe.SystemDispatched ||
		!slices.Equal(c[0].Identifiers, []wire.Identifier{id("stripe_customer_id", "cus_1")}) {
		t.Errorf("carried stripe commands %+v, want one open with the derived identifier", c)
	}
	billing := bySystem["billing"]
	if len(billing) != 1 || billing[0].Status != lethe.SystemDispatched || billing[0].Attempt != 1 ||
		billing[0].ID != w.latest("billing").CommandID || !billing[0].Due.Equal(testStart.Add(day)) ||
		billing[0].Topic != "lethe.erasure.billing" || billing[0].ConfirmWithin != day {
		t.Errorf("carried billing %+v, want open attempt 1 with its command_id, topic and due time", billing)
	}
	if len(st.Inbox) != 0 {
		t.Errorf("carried inbox %+v, want empty", st.Inbox)
	}
	published := len(w.published())

	// The next run goes on from there: no new plan, no new dispatch, and
	// the request completes once the open commands are confirmed. Its first
	// confirmation travels in the carried inbox, as a drained signal would.
	w2 := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"), target("stripe", day, "stripe_customer_id"))
	w2.env.SetStartTime(testStart.Add(2 * time.Minute))
	answer := func(c CommandState, outcome wire.Outcome, records int64) wire.Confirmation {
		return wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: c.ID, RequestID: testRequestID,
			System: c.System, Outcome: outcome, Records: records, ConfirmedAt: testStart.Add(2 * time.Minute)}
	}
	next.State.Inbox = []wire.Confirmation{answer(billing[0], wire.OutcomeErased, 1)}
	w2.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{answer(bySystem["stripe"][0], wire.OutcomeErased, 2)}
	})
	if err := w2.run(next); err != nil {
		t.Fatalf("continued run: %v", err)
	}
	if got := w2.planCalls(); len(got) != 0 {
		t.Errorf("continued run planned %v, want no plan", got)
	}
	if n := len(w2.published()); n != 0 {
		t.Errorf("continued run published %d commands, want none", n)
	}
	if status, _ := w2.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("continued run ended %q, want completed", status)
	}
	e := w2.query()
	ps := progressByName(e)
	if len(ps) != 3 || ps["orders"].Records != 3 || ps["orders"].Status != lethe.SystemErased ||
		ps["billing"].Status != lethe.SystemErased || ps["stripe"].Records != 2 {
		t.Errorf("continued run systems %+v, want orders erased (3), billing erased, stripe erased (2)", e.Systems)
	}
	if published != 3 {
		t.Errorf("first run published %d commands, want 3", published)
	}
}

func TestCancelBeforeAnyConfirmation(t *testing.T) {
	w := newWorld(t, target("orders", day, "user_id"))
	w.at(time.Hour, w.env.CancelWorkflow)
	err := w.run(input(id("user_id", "u-123")))
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("workflow error %v, want a cancellation", err)
	}
	// Cancellation stops the waiting: no re-dispatch at confirm_within.
	if n := len(w.commandsTo("orders")); n != 1 {
		t.Errorf("orders got %d commands, want 1", n)
	}
	status, at := w.finalStatus()
	if status != lethe.RequestCanceled || at == nil || !at.Equal(testStart.Add(time.Hour)) {
		t.Errorf("ledger status %q at %v, want canceled at %v", status, at, testStart.Add(time.Hour))
	}
	ev := w.eventsOf(lethe.AuditCanceled)
	if len(ev) != 1 || ev[0].Detail != "canceled with 1 of 1 systems still open" {
		t.Errorf("canceled events %+v, want one saying 1 of 1 systems still open", ev)
	}
}
