package workflows

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

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
