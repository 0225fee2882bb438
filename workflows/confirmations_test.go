package workflows

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

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
