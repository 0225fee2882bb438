package workflows

import (
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

// after is target with the systems it is erased after.
func after(t activities.Target, deps ...string) activities.Target {
	t.After = deps
	return t
}

// chain is a ← b ← c, plus x, which waits for no one, and y, which waits
// for a system the request does not target.
func chain() []activities.Target {
	return []activities.Target{
		target("a", 72*time.Hour, "email"),
		after(target("b", 72*time.Hour, "email"), "a"),
		// c sorts after b but b waits for it in no way: c waits for b.
		after(target("c", 72*time.Hour, "email"), "b"),
		target("x", 72*time.Hour, "email"),
		after(target("y", 72*time.Hour, "email"), "phone"),
	}
}

func TestOrderedDispatchFollowsAfter(t *testing.T) {
	w := newWorld(t, chain()...)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("a", wire.OutcomeErased, 1), w.answer("x", wire.OutcomeErased, 1),
			w.answer("y", wire.OutcomeNotFound, 0)}
	})
	var waiting lethe.Erasure
	w.at(90*time.Second, func() { waiting = w.query() })
	w.confirmAt(2*time.Minute, func() []wire.Confirmation { return one(w.answer("b", wire.OutcomeNotFound, 0))() })
	w.confirmAt(3*time.Minute, func() []wire.Confirmation { return one(w.answer("c", wire.OutcomeErased, 2))() })
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.CommandSeed = "seed"
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	for system, at := range map[string]time.Duration{"a": 0, "x": 0, "y": 0, "b": time.Minute, "c": 2 * time.Minute} {
		cmds := w.commandsTo(system)
		if len(cmds) != 1 {
			t.Fatalf("%d commands to %s, want 1", len(cmds), system)
		}
		if got := cmds[0].IssuedAt.Sub(testStart); got != at {
			t.Errorf("%s dispatched at +%s, want +%s", system, got, at)
		}
		if cmds[0].Attempt != 1 || cmds[0].ConfirmBy != cmds[0].IssuedAt.Add(72*time.Hour) {
			t.Errorf("%s: attempt %d, confirm_by %s, want attempt 1 and 72h after its dispatch", system,
				cmds[0].Attempt, cmds[0].ConfirmBy)
		}
	}
	if c := progressByName(waiting)["c"]; c.Status != lethe.SystemPending || c.Detail != "waiting for b to finish" {
		t.Errorf("c while b runs: %s %q, want pending, waiting for b to finish", c.Status, c.Detail)
	}
	if st, _ := w.finalStatus(); st != lethe.RequestCompleted {
		t.Errorf("final status %s, want completed", st)
	}
	if p := w.ledgerSystems()["c"]; p.Status != lethe.SystemErased || p.Detail != "" {
		t.Errorf("c in the ledger: %+v, want erased with no detail left", p)
	}
	assertNoValues(t, w, "ada@example.com")
}

func TestOrderedFailedDependencyHoldsDependantsUntilRetry(t *testing.T) {
	systems := chain()[:3]
	first := newWorld(t, systems...)
	first.confirmAt(time.Minute, func() []wire.Confirmation { return []wire.Confirmation{first.failed("a")} })
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.CommandSeed = "seed"
	if err := first.run(in); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if st, _ := first.finalStatus(); st != lethe.RequestFailed {
		t.Fatalf("first run ended %s, want failed: a failed and nothing else can move", st)
	}
	ledger := first.ledgerSystems()
	for _, s := range []string{"b", "c"} {
		if n := len(first.commandsTo(s)); n != 0 {
			t.Errorf("%s was sent %d commands while a failed", s, n)
		}
		if p := ledger[s]; p.Status != lethe.SystemPending || !strings.Contains(p.Detail, "held up until a retry") {
			t.Errorf("%s in the ledger: %s %q, want pending, held up until a retry", s, p.Status, p.Detail)
		}
	}
	if p := ledger["b"]; !strings.Contains(p.Detail, "a failed") {
		t.Errorf("b's detail %q, want it to name a", p.Detail)
	}

	again := first.carried()
	again.Retry = &RetrySignal{Actor: retryActor, Systems: []string{"a"}}
	second := newWorld(t, systems...)
	second.confirmAt(time.Minute, func() []wire.Confirmation { return one(second.answer("a", wire.OutcomeErased, 1))() })
	second.confirmAt(2*time.Minute, func() []wire.Confirmation { return one(second.answer("b", wire.OutcomeErased, 1))() })
	second.confirmAt(3*time.Minute, func() []wire.Confirmation { return one(second.answer("c", wire.OutcomeErased, 1))() })
	if err := second.run(again); err != nil {
		t.Fatalf("second run: %v", err)
	}
	b, c := second.commandsTo("b"), second.commandsTo("c")
	if len(b) != 1 || len(c) != 1 {
		t.Fatalf("after the retry b got %d commands and c %d, want 1 each", len(b), len(c))
	}
	if !b[0].IssuedAt.Equal(testStart.Add(time.Minute)) || !c[0].IssuedAt.Equal(testStart.Add(2*time.Minute)) {
		t.Errorf("b dispatched at %s and c at %s, want after a's and then b's confirmation", b[0].IssuedAt, c[0].IssuedAt)
	}
	if st, _ := second.finalStatus(); st != lethe.RequestCompleted {
		t.Errorf("after the retry the request ended %s, want completed", st)
	}
}

// A held dependency is retained, final: nothing waits for it.
func TestOrderedHeldDependencyDelaysNoOne(t *testing.T) {
	w := newWorld(t, chain()[:2]...)
	w.setHold("a", &lethe.Hold{ID: "case-1", Basis: "litigation", Active: true})
	w.confirmAt(time.Minute, func() []wire.Confirmation { return one(w.answer("b", wire.OutcomeErased, 1))() })
	w.at(2*time.Minute, func() { w.env.CancelWorkflow() })
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	_ = w.run(in)
	if b := w.commandsTo("b"); len(b) != 1 || !b[0].IssuedAt.Equal(testStart) {
		t.Fatalf("commands to b: %+v, want one at once", b)
	}
}

// Before RevisionOrdered, After changes nothing: histories recorded then
// replay.
func TestOrderIgnoredBeforeItsRevision(t *testing.T) {
	w := newWorld(t, chain()[:2]...)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("a", wire.OutcomeErased, 1), w.answer("b", wire.OutcomeErased, 1)}
	})
	in := input(id("email", "ada@example.com"))
	in.Revision = RevisionRetry
	if err := w.run(in); err != nil {
		t.Fatal(err)
	}
	if b := w.commandsTo("b"); len(b) != 1 || !b[0].IssuedAt.Equal(testStart) {
		t.Errorf("commands to b: %+v, want one at once", b)
	}
}
