package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

const day = 24 * time.Hour

func TestHappyPathThreeSystems(t *testing.T) {
	w := newWorld(t,
		target("billing", 72*time.Hour, "email"),
		target("crm", 72*time.Hour, "user_id", "email"),
		target("orders", 72*time.Hour, "user_id"),
	)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{
			w.answer("orders", wire.OutcomeErased, 3),
			w.answer("crm", wire.OutcomeNotFound, 0),
		}
	})
	w.confirmAt(2*time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeRetained, 7)}
	})

	if err := w.run(input(id("user_id", "u-123"), id("email", "ada@example.com"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}

	if got := w.planCalls(); len(got) != 1 || !slices.Equal(got[0], []string{"email", "user_id"}) {
		t.Errorf("plan calls %v, want one with [email user_id]", got)
	}
	status, completedAt := w.finalStatus()
	if status != lethe.RequestCompleted {
		t.Errorf("ledger status %q, want completed", status)
	}
	if want := testStart.Add(2 * time.Minute); completedAt == nil || !completedAt.Equal(want) {
		t.Errorf("completed_at %v, want %v", completedAt, want)
	}
	e := w.query()
	if e.Status != lethe.RequestCompleted || e.CompletedAt == nil {
		t.Errorf("query status %q completed_at %v, want completed with a time", e.Status, e.CompletedAt)
	}
	want := map[string]struct {
		status  lethe.SystemStatus
		records int64
	}{
		"billing": {lethe.SystemRetained, 7},
		"crm":     {lethe.SystemNotFound, 0},
		"orders":  {lethe.SystemErased, 3},
	}
	if len(e.Systems) != len(want) {
		t.Fatalf("query lists %d systems, want %d", len(e.Systems), len(want))
	}
	ledger := w.ledgerSystems()
	for i, p := range e.Systems {
		if i > 0 && e.Systems[i-1].Name >= p.Name {
			t.Errorf("systems not sorted by name: %q before %q", e.Systems[i-1].Name, p.Name)
		}
		wt := want[p.Name]
		if p.Status != wt.status || p.Records != wt.records || p.Attempts != 1 || p.ConfirmedAt == nil {
			t.Errorf("system %s: got %+v, want status %s records %d attempts 1 with confirmed_at", p.Name, p, wt.status, wt.records)
		}
		if l := ledger[p.Name]; l.Status != p.Status || l.Records != p.Records {
			t.Errorf("ledger has %s as %+v, query as %+v", p.Name, l, p)
		}
	}
	if d := progressByName(e)["billing"].Detail; !strings.Contains(d, "HGB") {
		t.Errorf("billing detail %q, want the legal basis", d)
	}
	if n := len(w.eventsOf(lethe.AuditCompleted)); n != 1 {
		t.Errorf("%d completed events, want 1", n)
	}
	if n := len(w.eventsOf(lethe.AuditDispatched)); n != 3 {
		t.Errorf("%d dispatched events, want 3", n)
	}
	if n := len(w.eventsOf(lethe.AuditConfirmed)); n != 3 {
		t.Errorf("%d confirmed events, want 3", n)
	}
	if got := w.eventsOf(lethe.AuditPlanned); len(got) != 1 || w.events()[0].Kind != lethe.AuditPlanned {
		t.Errorf("planned events %+v, want one, first", got)
	}
	// The setup is one wave: one Sync with the three commands and the ledger.
	first := w.syncCalls()[0]
	if len(first.Commands) != 3 || first.Ledger.Status != lethe.RequestRunning || len(first.Ledger.Systems) != 3 {
		t.Errorf("first sync has %d commands, status %q, %d systems; want 3, running, 3",
			len(first.Commands), first.Ledger.Status, len(first.Ledger.Systems))
	}
	for _, o := range w.published() {
		c := o.Command
		if err := c.Validate(); err != nil {
			t.Errorf("command to %s breaks the contract: %v", c.System, err)
		}
		if o.Topic != wire.DefaultTopic(c.System) || c.Attempt != 1 || !c.IssuedAt.Equal(testStart) ||
			!c.ConfirmBy.Equal(testStart.Add(72*time.Hour)) || c.DryRun {
			t.Errorf("command to %s: topic %q attempt %d issued %v confirm_by %v dry_run %v",
				c.System, o.Topic, c.Attempt, c.IssuedAt, c.ConfirmBy, c.DryRun)
		}
	}
	assertNoValues(t, w, "u-123", "ada@example.com")
}

func TestDataMinimisation(t *testing.T) {
	w := newWorld(t,
		target("billing", day, "email"),
		target("crm", day, "user_id", "email", "fax"),
		target("orders", day, "user_id"),
	)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{
			w.answer("billing", wire.OutcomeErased, 1),
			w.answer("crm", wire.OutcomeErased, 1),
			w.answer("orders", wire.OutcomeErased, 1),
		}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"), id("phone", "+441234"))
	in.DryRun = true
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	want := map[string][]wire.Identifier{
		"billing": {id("email", "ada@example.com")},
		"crm":     {id("user_id", "u-123"), id("email", "ada@example.com")},
		"orders":  {id("user_id", "u-123")},
	}
	for system, ids := range want {
		cmds := w.commandsTo(system)
		if len(cmds) != 1 {
			t.Fatalf("%s got %d commands, want 1", system, len(cmds))
		}
		if !slices.Equal(cmds[0].Identifiers, ids) {
			t.Errorf("%s was sent %v, want %v", system, cmds[0].Identifiers, ids)
		}
		if !cmds[0].DryRun {
			t.Errorf("%s command is not marked dry_run", system)
		}
	}
}

func TestNoMatchingSystemCompletesEmpty(t *testing.T) {
	w := newWorld(t, target("orders", day, "user_id"))
	if err := w.run(input(id("phone", "+441234"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	syncs := w.syncCalls()
	if len(syncs) != 1 {
		t.Fatalf("%d Sync calls, want 1", len(syncs))
	}
	s := syncs[0]
	if len(s.Commands) != 0 || s.Ledger.Status != lethe.RequestCompleted || s.Ledger.CompletedAt == nil {
		t.Errorf("sync %+v, want no commands, status completed with completed_at", s)
	}
	kinds := []lethe.AuditKind{}
	for _, e := range s.Ledger.Events {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []lethe.AuditKind{lethe.AuditPlanned, lethe.AuditCompleted}) {
		t.Errorf("events %v, want [planned completed]", kinds)
	}
	e := w.query()
	if e.Status != lethe.RequestCompleted || len(e.Systems) != 0 {
		t.Errorf("query status %q with %d systems, want completed with none", e.Status, len(e.Systems))
	}
}

func TestRedispatchAfterConfirmWithin(t *testing.T) {
	w := newWorld(t, target("orders", time.Hour, "user_id"))
	w.confirmAt(90*time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 2)}
	})
	if err := w.run(input(id("user_id", "u-123"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	cmds := w.commandsTo("orders")
	if len(cmds) != 2 {
		t.Fatalf("orders got %d commands, want 2", len(cmds))
	}
	first, second := cmds[0], cmds[1]
	if second.CommandID != first.CommandID {
		t.Errorf("re-dispatch has command_id %s, want the same %s", second.CommandID, first.CommandID)
	}
	if second.Attempt != 2 {
		t.Errorf("re-dispatch attempt %d, want 2", second.Attempt)
	}
	if want := testStart.Add(time.Hour); !second.IssuedAt.Equal(want) || !second.ConfirmBy.Equal(want.Add(time.Hour)) {
		t.Errorf("re-dispatch issued %v confirm_by %v, want %v and an hour later", second.IssuedAt, second.ConfirmBy, want)
	}
	re := w.eventsOf(lethe.AuditRedispatched)
	if len(re) != 1 || re[0].Attempt != 2 || re[0].System != "orders" {
		t.Errorf("redispatched events %+v, want one for orders, attempt 2", re)
	}
	p := progressByName(w.query())["orders"]
	if p.Status != lethe.SystemErased || p.Attempts != 2 || p.Records != 2 {
		t.Errorf("orders %+v, want erased after 2 attempts with 2 records", p)
	}
}

func TestFailsAfterMaxAttempts(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", time.Hour, "user_id"))
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeErased, 1)}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Policy.MaxAttempts = 3
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	cmds := w.commandsTo("orders")
	if len(cmds) != 3 {
		t.Fatalf("orders got %d commands, want 3", len(cmds))
	}
	for i, c := range cmds {
		if c.Attempt != i+1 || c.CommandID != cmds[0].CommandID {
			t.Errorf("command %d: attempt %d id %s, want attempt %d id %s", i, c.Attempt, c.CommandID, i+1, cmds[0].CommandID)
		}
	}
	status, completedAt := w.finalStatus()
	if status != lethe.RequestFailed {
		t.Errorf("ledger status %q, want failed", status)
	}
	if want := testStart.Add(3 * time.Hour); completedAt == nil || !completedAt.Equal(want) {
		t.Errorf("completed_at %v, want %v", completedAt, want)
	}
	var systemFailed, requestFailed int
	for _, e := range w.eventsOf(lethe.AuditFailed) {
		switch e.System {
		case "orders":
			systemFailed++
			if e.Detail != "no confirmation after 3 attempts" || e.Attempt != 3 {
				t.Errorf("orders failed event %+v, want detail %q attempt 3", e, "no confirmation after 3 attempts")
			}
		case "":
			requestFailed++
		}
	}
	if systemFailed != 1 || requestFailed != 1 {
		t.Errorf("failed events: %d for orders, %d for the request; want 1 and 1", systemFailed, requestFailed)
	}
	ps := progressByName(w.query())
	if p := ps["orders"]; p.Status != lethe.SystemFailed || p.Attempts != 3 || p.Detail != "no confirmation after 3 attempts" {
		t.Errorf("orders %+v, want failed after 3 attempts", p)
	}
	if p := ps["billing"]; p.Status != lethe.SystemErased {
		t.Errorf("billing %+v, want erased", p)
	}
}

func TestRetryableFailureThenErased(t *testing.T) {
	w := newWorld(t, target("orders", day, "user_id"))
	var failure wire.Confirmation
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		failure = w.answer("orders", wire.OutcomeFailed, 0)
		failure.Retryable = true
		failure.Detail = "database busy"
		return []wire.Confirmation{failure}
	})
	// The same failure delivered again after the retry went out must not
	// cost another attempt.
	w.confirmAt(100*time.Second, func() []wire.Confirmation { return []wire.Confirmation{failure} })
	w.at(110*time.Second, func() {
		p := progressByName(w.query())["orders"]
		if p.Status != lethe.SystemDispatched || p.Attempts != 2 || p.Detail != "database busy" {
			t.Errorf("orders mid-retry %+v, want dispatched, attempt 2, detail of the failure", p)
		}
	})
	w.confirmAt(3*time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 4)}
	})
	in := input(id("user_id", "u-123"))
	in.Policy.RetryDelay = 30 * time.Second
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	cmds := w.commandsTo("orders")
	if len(cmds) != 2 {
		t.Fatalf("orders got %d commands, want 2", len(cmds))
	}
	if cmds[1].CommandID != cmds[0].CommandID || cmds[1].Attempt != 2 {
		t.Errorf("retry %s attempt %d, want %s attempt 2", cmds[1].CommandID, cmds[1].Attempt, cmds[0].CommandID)
	}
	if want := testStart.Add(90 * time.Second); !cmds[1].IssuedAt.Equal(want) {
		t.Errorf("retry issued at %v, want %v (after the retry delay)", cmds[1].IssuedAt, want)
	}
	if re := w.eventsOf(lethe.AuditRedispatched); len(re) != 1 || re[0].Attempt != 2 {
		t.Errorf("redispatched events %+v, want one with attempt 2", re)
	}
	if status, _ := w.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("ledger status %q, want completed", status)
	}
	p := progressByName(w.query())["orders"]
	if p.Status != lethe.SystemErased || p.Records != 4 || p.Attempts != 2 || p.Detail != "" {
		t.Errorf("orders %+v, want erased, 4 records, 2 attempts, no detail", p)
	}
}

func TestNonRetryableFailure(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		f := w.answer("orders", wire.OutcomeFailed, 0)
		f.Detail = "account under legal hold"
		return []wire.Confirmation{f, w.answer("billing", wire.OutcomeErased, 1)}
	})
	if err := w.run(input(id("user_id", "u-123"), id("email", "ada@example.com"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if n := len(w.commandsTo("orders")); n != 1 {
		t.Errorf("orders got %d commands, want 1 (no retry)", n)
	}
	if status, _ := w.finalStatus(); status != lethe.RequestFailed {
		t.Errorf("ledger status %q, want failed", status)
	}
	e := w.query()
	if e.Status != lethe.RequestFailed {
		t.Errorf("query status %q, want failed", e.Status)
	}
	if p := progressByName(e)["orders"]; p.Status != lethe.SystemFailed || p.Detail != "account under legal hold" {
		t.Errorf("orders %+v, want failed with the system's detail", p)
	}
}

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

func TestDuplicateConfirmationCountedOnce(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	var erased wire.Confirmation
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		erased = w.answer("orders", wire.OutcomeErased, 3)
		return []wire.Confirmation{erased, erased}
	})
	w.confirmAt(2*time.Minute, func() []wire.Confirmation { return []wire.Confirmation{erased} })
	w.confirmAt(3*time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeErased, 1)}
	})
	if err := w.run(input(id("user_id", "u-123"), id("email", "ada@example.com"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if p := progressByName(w.query())["orders"]; p.Records != 3 || p.Status != lethe.SystemErased {
		t.Errorf("orders %+v, want erased with 3 records", p)
	}
	var confirmed int
	for _, e := range w.eventsOf(lethe.AuditConfirmed) {
		if e.System == "orders" {
			confirmed++
		}
	}
	if confirmed != 1 {
		t.Errorf("%d confirmed events for orders, want 1", confirmed)
	}
	if n := len(w.eventsOf(lethe.AuditConfirmationRejected)); n != 0 {
		t.Errorf("%d rejected events, want none: duplicates are harmless", n)
	}
}

func TestForgedConfirmationsRejected(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		unknown := w.answer("orders", wire.OutcomeErased, 99)
		unknown.CommandID = unknownCmdID
		wrongSystem := w.answer("orders", wire.OutcomeErased, 99)
		wrongSystem.System = "billing"
		wrongRequest := w.answer("orders", wire.OutcomeErased, 99)
		wrongRequest.RequestID = otherRequest
		malformed := w.answer("orders", wire.OutcomeErased, 99)
		malformed.Schema = ""
		return []wire.Confirmation{unknown, wrongSystem, wrongRequest, malformed}
	})
	w.at(90*time.Second, func() {
		e := w.query()
		for _, p := range e.Systems {
			if p.Status != lethe.SystemDispatched || p.Records != 0 {
				t.Errorf("after forgeries %s is %+v, want still dispatched with no records", p.Name, p)
			}
		}
	})
	w.confirmAt(2*time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 3), w.answer("billing", wire.OutcomeNotFound, 0)}
	})
	if err := w.run(input(id("user_id", "u-123"), id("email", "ada@example.com"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var details []string
	for _, e := range w.eventsOf(lethe.AuditConfirmationRejected) {
		details = append(details, e.Detail)
		if strings.Contains(e.Detail, w.latest("orders").CommandID) || strings.Contains(e.Detail, unknownCmdID) {
			t.Errorf("rejection detail %q quotes a command_id", e.Detail)
		}
	}
	want := []string{
		"unknown command_id",
		"command_id was not issued to this system",
		"request_id does not match the command",
		"malformed confirmation",
	}
	if !slices.Equal(details, want) {
		t.Errorf("rejections %q, want %q", details, want)
	}
	ps := progressByName(w.query())
	if p := ps["orders"]; p.Records != 3 || p.Status != lethe.SystemErased {
		t.Errorf("orders %+v, want erased with the 3 records of the genuine confirmation", p)
	}
	if p := ps["billing"]; p.Status != lethe.SystemNotFound {
		t.Errorf("billing %+v, want not_found (the forgery naming it did not count)", p)
	}
	if n := len(w.eventsOf(lethe.AuditConfirmed)); n != 2 {
		t.Errorf("%d confirmed events, want 2", n)
	}
}

func TestDerivedIdentifiers(t *testing.T) {
	w := newWorld(t,
		target("crm", day, "user_id"),
		target("mail", day, "email"),
		target("orders", day, "user_id", "stripe_customer_id"),
		target("stripe", day, "stripe_customer_id"),
	)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		c := w.answer("orders", wire.OutcomeErased, 2)
		c.DerivedIdentifiers = []wire.Identifier{id("stripe_customer_id", "cus_1"), id("user_id", "u-123")}
		return []wire.Confirmation{c}
	})
	w.confirmAt(2*time.Minute, func() []wire.Confirmation {
		crm := w.answer("crm", wire.OutcomeErased, 1)
		crm.DerivedIdentifiers = []wire.Identifier{id("stripe_customer_id", "cus_1")}
		stripe := w.answer("stripe", wire.OutcomeErased, 5)
		stripe.DerivedIdentifiers = []wire.Identifier{id("email", "ada@example.com")}
		return []wire.Confirmation{crm, stripe}
	})
	w.confirmAt(3*time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 1), w.answer("mail", wire.OutcomeNotFound, 0)}
	})
	if err := w.run(input(id("user_id", "u-123"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}

	wantPlans := [][]string{{"user_id"}, {"stripe_customer_id"}, {"email"}}
	if got := w.planCalls(); !slices.EqualFunc(got, wantPlans, slices.Equal[[]string]) {
		t.Errorf("plan calls %v, want %v", got, wantPlans)
	}
	stripe := w.commandsTo("stripe")
	if len(stripe) != 1 || !slices.Equal(stripe[0].Identifiers, []wire.Identifier{id("stripe_customer_id", "cus_1")}) {
		t.Errorf("stripe got %+v, want one command with only the derived stripe_customer_id", stripe)
	}
	orders := w.commandsTo("orders")
	if len(orders) != 2 {
		t.Fatalf("orders got %d commands, want 2", len(orders))
	}
	if orders[1].CommandID == orders[0].CommandID {
		t.Errorf("orders' second command reuses the first command_id")
	}
	if !slices.Equal(orders[1].Identifiers, []wire.Identifier{id("stripe_customer_id", "cus_1")}) {
		t.Errorf("orders' second command carries %v, want only the new stripe_customer_id", orders[1].Identifiers)
	}
	if mail := w.commandsTo("mail"); len(mail) != 1 || !slices.Equal(mail[0].Identifiers, []wire.Identifier{id("email", "ada@example.com")}) {
		t.Errorf("mail got %+v, want one command with the derived email", mail)
	}
	if n := len(w.commandsTo("crm")); n != 1 {
		t.Errorf("crm got %d commands, want 1", n)
	}
	// Never twice the same identifier to the same system under different commands.
	sent := map[string]string{}
	for _, o := range w.published() {
		for _, i := range o.Command.Identifiers {
			k := o.Command.System + "/" + i.Type + "/" + i.Value
			if prev, ok := sent[k]; ok && prev != o.Command.CommandID {
				t.Errorf("%s was sent the same %s in two commands", o.Command.System, i.Type)
			}
			sent[k] = o.Command.CommandID
		}
	}
	var derivedDetails []string
	for _, e := range w.eventsOf(lethe.AuditDerived) {
		derivedDetails = append(derivedDetails, e.System+": "+e.Detail)
	}
	wantDerived := []string{"orders: new identifier types: stripe_customer_id", "stripe: new identifier types: email"}
	if !slices.Equal(derivedDetails, wantDerived) {
		t.Errorf("derived events %q, want %q", derivedDetails, wantDerived)
	}
	e := w.query()
	if e.Status != lethe.RequestCompleted {
		t.Errorf("query status %q, want completed", e.Status)
	}
	if !slices.Equal(e.SubjectTypes, []string{"email", "stripe_customer_id", "user_id"}) {
		t.Errorf("subject types %v, want the derived ones too", e.SubjectTypes)
	}
	if p := progressByName(e)["orders"]; p.Status != lethe.SystemErased || p.Records != 3 || p.Attempts != 1 {
		t.Errorf("orders %+v, want erased with 2+1 records over its two commands", p)
	}
	assertNoValues(t, w, "u-123", "cus_1", "ada@example.com")
}

func TestSystemProgressAggregatesCommands(t *testing.T) {
	w := &erasure{bySystem: map[string][]*CommandState{}}
	t1, t2 := testStart.Add(time.Minute), testStart.Add(2*time.Minute)
	tests := []struct {
		name string
		cmds []CommandState
		want lethe.SystemProgress
	}{
		{"open wins", []CommandState{
			{Status: lethe.SystemFailed, Attempt: 3, Detail: "boom", ChangedAt: t1},
			{Status: lethe.SystemDispatched, Attempt: 1, ChangedAt: t2},
		}, lethe.SystemProgress{Status: lethe.SystemDispatched, Attempts: 3, Detail: "boom"}},
		{"failed over erased", []CommandState{
			{Status: lethe.SystemErased, Attempt: 1, Records: 2, ConfirmedAt: &t2, ChangedAt: t2},
			{Status: lethe.SystemFailed, Attempt: 2, Detail: "no confirmation after 2 attempts", ChangedAt: t1},
		}, lethe.SystemProgress{Status: lethe.SystemFailed, Attempts: 2, Records: 2, ConfirmedAt: &t2,
			Detail: "no confirmation after 2 attempts"}},
		{"erased over retained", []CommandState{
			{Status: lethe.SystemRetained, Attempt: 1, Records: 1, Detail: "tax law", ConfirmedAt: &t1, ChangedAt: t1},
			{Status: lethe.SystemErased, Attempt: 2, Records: 4, ConfirmedAt: &t2, ChangedAt: t2},
		}, lethe.SystemProgress{Status: lethe.SystemErased, Attempts: 2, Records: 5, ConfirmedAt: &t2, Detail: "tax law"}},
		{"retained over not_found", []CommandState{
			{Status: lethe.SystemNotFound, Attempt: 1, ConfirmedAt: &t2, ChangedAt: t2},
			{Status: lethe.SystemRetained, Attempt: 1, Detail: "tax law", ConfirmedAt: &t1, ChangedAt: t1},
		}, lethe.SystemProgress{Status: lethe.SystemRetained, Attempts: 1, ConfirmedAt: &t2, Detail: "tax law"}},
		{"latest detail", []CommandState{
			{Status: lethe.SystemNotFound, Attempt: 1, Detail: "older", ChangedAt: t1},
			{Status: lethe.SystemNotFound, Attempt: 1, Detail: "newer", ChangedAt: t2},
		}, lethe.SystemProgress{Status: lethe.SystemNotFound, Attempts: 1, Detail: "newer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := strings.ReplaceAll(tt.name, " ", "_")
			for i := range tt.cmds {
				tt.cmds[i].System = name
				w.bySystem[name] = append(w.bySystem[name], &tt.cmds[i])
			}
			got := w.progress(name)
			tt.want.Name = name
			if got.Name != tt.want.Name || got.Status != tt.want.Status || got.Attempts != tt.want.Attempts ||
				got.Records != tt.want.Records || got.Detail != tt.want.Detail ||
				(got.ConfirmedAt == nil) != (tt.want.ConfirmedAt == nil) ||
				(got.ConfirmedAt != nil && !got.ConfirmedAt.Equal(*tt.want.ConfirmedAt)) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestQueryLivePicture(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 3)}
	})
	queried := false
	w.at(2*time.Minute, func() {
		queried = true
		e := w.query()
		if e.ID != testRequestID || e.WorkflowID != ErasureWorkflowID(testRequestID) {
			t.Errorf("query id %q workflow %q, want %q and %q", e.ID, e.WorkflowID, testRequestID, ErasureWorkflowID(testRequestID))
		}
		if e.Status != lethe.RequestRunning || e.CompletedAt != nil || e.Overdue {
			t.Errorf("query status %q completed_at %v overdue %v, want running, none, false", e.Status, e.CompletedAt, e.Overdue)
		}
		if !e.CreatedAt.Equal(testStart) || !e.Deadline.Equal(testStart.Add(lethe.DefaultDeadline)) {
			t.Errorf("query created %v deadline %v", e.CreatedAt, e.Deadline)
		}
		if !slices.Equal(e.SubjectTypes, []string{"email", "user_id"}) {
			t.Errorf("subject types %v, want [email user_id]", e.SubjectTypes)
		}
		ps := progressByName(e)
		if p := ps["orders"]; p.Status != lethe.SystemErased || p.Records != 3 {
			t.Errorf("orders %+v, want erased with 3 records", p)
		}
		if p := ps["billing"]; p.Status != lethe.SystemDispatched || p.Attempts != 1 {
			t.Errorf("billing %+v, want dispatched, attempt 1", p)
		}
	})
	w.at(31*day, func() {
		if e := w.query(); !e.Overdue {
			t.Errorf("past the deadline the query says overdue=false")
		}
	})
	w.confirmAt(32*day, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeErased, 1)}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Policy.MaxAttempts = 100
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if !queried {
		t.Fatal("the mid-flight query never ran")
	}
}

// listColumns is what one upsert wrote to the list columns.
type listColumns struct {
	status           string
	pending, systems int64
}

// upsertedColumns returns the list columns of every upsert and when each
// was made, in workflow time since the start.
func (w *world) upsertedColumns() ([]listColumns, []time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var cols []listColumns
	var at []time.Duration
	for i, u := range w.upserts {
		status, _ := u.GetKeyword(SearchStatus)
		pending, _ := u.GetInt64(SearchPending)
		systems, _ := u.GetInt64(SearchSystems)
		cols = append(cols, listColumns{status, pending, systems})
		at = append(at, w.upsertedAt[i].Sub(testStart))
	}
	return cols, at
}

// twoSystemsConfirmed runs a request to billing and orders, which confirm
// after first and second, under the given revision.
func twoSystemsConfirmed(t *testing.T, revision int, first, second time.Duration) *world {
	t.Helper()
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.recordSearchAttributes()
	var erased wire.Confirmation
	w.confirmAt(first, func() []wire.Confirmation {
		erased = w.answer("orders", wire.OutcomeErased, 3)
		return []wire.Confirmation{erased}
	})
	// A duplicate changes nothing, so nothing is upserted.
	w.confirmAt(first+(second-first)/2, func() []wire.Confirmation { return []wire.Confirmation{erased} })
	w.confirmAt(second, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeErased, 1)}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Revision = revision
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	return w
}

func TestSearchAttributesUpsertedOnChange(t *testing.T) {
	// Revision 0, the first behaviour, kept for the workflows started under
	// it: the first task upserts at once.
	w := twoSystemsConfirmed(t, 0, time.Minute, 3*time.Minute)
	got, at := w.upsertedColumns()
	want := []listColumns{{"running", 2, 2}, {"running", 1, 2}, {"completed", 0, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("upserts %+v, want %+v", got, want)
	}
	if len(at) > 0 && at[0] != 0 {
		t.Errorf("first upsert at %v, want at the start", at[0])
	}
}

func TestSettledSearchQuickRequestUpsertsOnce(t *testing.T) {
	// Confirmed before it is DefaultSettle old, the request writes its list
	// columns once, in the task that closes it.
	w := twoSystemsConfirmed(t, RevisionSettledSearch, time.Second, 3*time.Second)
	got, at := w.upsertedColumns()
	want := []listColumns{{"completed", 0, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("upserts %+v, want %+v", got, want)
	}
	if len(at) == 1 && at[0] != 3*time.Second {
		t.Errorf("upsert at %v, want at the last confirmation (3s)", at[0])
	}
}

func TestSettledSearchSlowRequestUpsertsWhenSettled(t *testing.T) {
	// A request still open when it is DefaultSettle old writes its columns
	// then, without waiting for a confirmation, and on every change after.
	w := twoSystemsConfirmed(t, RevisionSettledSearch, time.Minute, 3*time.Minute)
	got, at := w.upsertedColumns()
	want := []listColumns{{"running", 2, 2}, {"running", 1, 2}, {"completed", 0, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("upserts %+v, want %+v", got, want)
	}
	wantAt := []time.Duration{DefaultSettle, time.Minute, 3 * time.Minute}
	if !slices.Equal(at, wantAt) {
		t.Errorf("upserts at %v, want %v", at, wantAt)
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

func TestFanOutThousandSystems(t *testing.T) {
	const n = 1000
	systems := make([]activities.Target, n)
	for i := range systems {
		systems[i] = target(fmt.Sprintf("svc-%04d", i), day, "user_id")
	}
	w := newWorld(t, systems...)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		out := make([]wire.Confirmation, 0, n)
		for _, o := range w.published() {
			out = append(out, wire.Confirmation{Schema: wire.SchemaConfirmation, CommandID: o.Command.CommandID,
				RequestID: testRequestID, System: o.Command.System, Outcome: wire.OutcomeErased, Records: 1,
				ConfirmedAt: w.env.Now().UTC()})
		}
		return out
	})
	if err := w.run(input(id("user_id", "u-123"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	ids := map[string]bool{}
	for i, s := range w.syncCalls() {
		if len(s.Commands) > syncChunk || len(s.Ledger.Systems) > syncChunk || len(s.Ledger.Events) > syncChunk {
			t.Errorf("sync %d carries %d commands, %d systems, %d events; want at most %d each",
				i, len(s.Commands), len(s.Ledger.Systems), len(s.Ledger.Events), syncChunk)
		}
		for _, o := range s.Commands {
			ids[o.Command.CommandID] = true
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct command_ids, want %d", len(ids), n)
	}
	if status, _ := w.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("ledger status %q, want completed", status)
	}
	e := w.query()
	var records int64
	for _, p := range e.Systems {
		records += p.Records
	}
	if len(e.Systems) != n || records != n {
		t.Errorf("query lists %d systems with %d records, want %d and %d", len(e.Systems), records, n, n)
	}
	if got := len(w.ledgerSystems()); got != n {
		t.Errorf("ledger has %d systems, want %d", got, n)
	}
}

func TestChunkSync(t *testing.T) {
	cmds := make([]activities.Outbound, 1001)
	delta := lethe.LedgerDelta{Status: lethe.RequestRunning, Events: make([]lethe.AuditEvent, 1200),
		Systems: make([]lethe.SystemProgress, 10)}
	for i := range delta.Events {
		delta.Events[i].Attempt = i
	}
	calls := chunkSync(testRequestID, cmds, delta)
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	var events []lethe.AuditEvent
	for i, c := range calls {
		if len(c.Commands) > syncChunk || len(c.Ledger.Events) > syncChunk {
			t.Errorf("call %d too large: %d commands, %d events", i, len(c.Commands), len(c.Ledger.Events))
		}
		if (c.Ledger.Status != "") != (i == len(calls)-1) {
			t.Errorf("call %d status %q, want the status on the last call only", i, c.Ledger.Status)
		}
		events = append(events, c.Ledger.Events...)
	}
	for i, e := range events {
		if e.Attempt != i {
			t.Fatalf("event %d out of order", i)
		}
	}
	if got := chunkSync(testRequestID, nil, lethe.LedgerDelta{}); len(got) != 0 {
		t.Errorf("nothing to write gave %d calls, want 0", len(got))
	}
}

func TestInvalidInputFails(t *testing.T) {
	tests := []struct {
		name string
		in   ErasureInput
	}{
		{"no request id", ErasureInput{Subject: []wire.Identifier{id("user_id", "u-123")}}},
		{"no subject", ErasureInput{RequestID: testRequestID}},
		{"bad type", ErasureInput{RequestID: testRequestID, Subject: []wire.Identifier{id("User ID", "u-123")}}},
		{"empty value", ErasureInput{RequestID: testRequestID, Subject: []wire.Identifier{id("user_id", "")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, target("orders", day, "user_id"))
			err := w.run(tt.in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != "InvalidInput" {
				t.Errorf("error %v, want an InvalidInput application error", err)
			}
			if strings.Contains(fmt.Sprint(err), "u-123") {
				t.Errorf("error %q contains an identifier value", err)
			}
			if n := len(w.syncCalls()); n != 0 {
				t.Errorf("%d Sync calls, want none", n)
			}
		})
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
