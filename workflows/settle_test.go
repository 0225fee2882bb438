package workflows

import (
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

// ledgerKinds lists the kinds of the audit events of every Sync, in order.
func ledgerKinds(syncs []activities.SyncInput) []lethe.AuditKind {
	var out []lethe.AuditKind
	for _, s := range syncs {
		for _, e := range s.Ledger.Events {
			out = append(out, e.Kind)
		}
	}
	return out
}

// settleRun runs a request to billing and orders under revision, billing
// confirming after first and orders after second, and returns its world.
func settleRun(t *testing.T, revision int, first, second time.Duration) *world {
	t.Helper()
	return settleRunWith(t, revision, 0, first, second)
}

// settleRunWith is settleRun with Policy.Settle set to settle.
func settleRunWith(t *testing.T, revision int, settle, first, second time.Duration) *world {
	t.Helper()
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.recordSearchAttributes()
	w.confirmAt(first, one2(w, "billing"))
	w.confirmAt(second, one2(w, "orders"))
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Revision = revision
	in.Policy.Settle = settle
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	return w
}

func (w *world) syncTimes() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]time.Duration, len(w.syncedAt))
	for i, at := range w.syncedAt {
		out[i] = at.Sub(testStart)
	}
	return out
}

// A request confirmed within DefaultSettle publishes its commands at once and
// writes the ledger once, when it ends, with the same events in the same
// order as a request that writes every step.
func TestSettledLedgerQuickRequestWritesOnce(t *testing.T) {
	w := settleRun(t, RevisionSettledLedger, time.Second, 3*time.Second)
	syncs := w.syncCalls()
	if len(syncs) != 2 {
		t.Fatalf("%d Sync calls, want 2 (the commands, then the ledger once): %+v", len(syncs), syncs)
	}
	if len(syncs[0].Commands) != 2 || !syncs[0].Ledger.Empty() {
		t.Errorf("first Sync: %d commands, ledger %+v; want both commands and no ledger", len(syncs[0].Commands), syncs[0].Ledger)
	}
	last := syncs[1]
	if len(last.Commands) != 0 || last.Ledger.Status != lethe.RequestCompleted || last.Ledger.Batch == "" {
		t.Errorf("last Sync: %d commands, status %q, batch %q; want none, completed, named", len(last.Commands), last.Ledger.Status, last.Ledger.Batch)
	}
	if got, want := w.syncTimes(), []time.Duration{0, 3 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("Syncs at %v, want %v", got, want)
	}
	every := settleRun(t, 0, time.Second, 3*time.Second)
	if got, want := ledgerKinds(syncs), ledgerKinds(every.syncCalls()); !slices.Equal(got, want) {
		t.Errorf("ledger events %v, want those of a request that writes every step: %v", got, want)
	}
	for name, p := range w.ledgerSystems() {
		if p.Status != lethe.SystemErased {
			t.Errorf("ledger %s: %+v, want erased", name, p)
		}
	}
}

// A request still open at DefaultSettle writes what it held then, without
// waiting for a confirmation, and every step after that as it happens.
func TestSettledLedgerSlowRequestWritesWhenSettled(t *testing.T) {
	w := settleRun(t, RevisionSettledLedger, time.Minute, 3*time.Minute)
	want := []time.Duration{0, DefaultSettle, time.Minute, 3 * time.Minute}
	if got := w.syncTimes(); !slices.Equal(got, want) {
		t.Fatalf("Syncs at %v, want %v", got, want)
	}
	syncs := w.syncCalls()
	if !syncs[0].Ledger.Empty() {
		t.Errorf("first Sync wrote the ledger %+v, want the commands only", syncs[0].Ledger)
	}
	settled := syncs[1]
	if len(settled.Commands) != 0 || settled.Ledger.Status != lethe.RequestRunning || len(settled.Ledger.Systems) != 2 {
		t.Errorf("Sync at DefaultSettle: %d commands, status %q, %d systems; want none, running, both",
			len(settled.Commands), settled.Ledger.Status, len(settled.Ledger.Systems))
	}
	every := settleRun(t, 0, time.Minute, 3*time.Minute)
	if got, want := ledgerKinds(syncs), ledgerKinds(every.syncCalls()); !slices.Equal(got, want) {
		t.Errorf("ledger events %v, want %v", got, want)
	}
}

// A run that stops on an error writes the ledger changes it still held, so
// that the ledger shows what was dispatched and confirmed before it failed.
func TestSettledLedgerWrittenWhenTheRunFails(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.planErr = func(n int) error {
		if n > 1 {
			return temporal.NewNonRetryableApplicationError("registry gone", "test", nil)
		}
		return nil
	}
	w.confirmAt(time.Second, func() []wire.Confirmation {
		c := w.answer("orders", wire.OutcomeErased, 1)
		// A revealed identifier makes the workflow plan again, which fails.
		c.DerivedIdentifiers = []wire.Identifier{id("stripe_customer_id", "cus_1")}
		return []wire.Confirmation{c}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Revision = RevisionSettledLedger
	if err := w.run(in); err == nil {
		t.Fatal("the workflow succeeded although planning failed")
	}
	kinds := ledgerKinds(w.syncCalls())
	for _, want := range []lethe.AuditKind{lethe.AuditPlanned, lethe.AuditDispatched, lethe.AuditConfirmed} {
		if !slices.Contains(kinds, want) {
			t.Errorf("ledger events %v lack %s", kinds, want)
		}
	}
	if p := w.ledgerSystems()["orders"]; p.Status != lethe.SystemErased {
		t.Errorf("ledger orders %+v, want erased", p)
	}
}

// Policy.Settle sets the window: a longer one holds the ledger and the list
// columns longer, and a negative one writes every step at once, as before
// revision 1.
func TestSettleWindowFromPolicy(t *testing.T) {
	w := settleRunWith(t, RevisionSettledLedger, 30*time.Second, time.Minute, 3*time.Minute)
	if got, want := w.syncTimes(), []time.Duration{0, 30 * time.Second, time.Minute, 3 * time.Minute}; !slices.Equal(got, want) {
		t.Errorf("settle 30s: Syncs at %v, want %v", got, want)
	}
	if _, at := w.upsertedColumns(); len(at) == 0 || at[0] != 30*time.Second {
		t.Errorf("settle 30s: upserts at %v, want the first at 30s", at)
	}

	w = settleRunWith(t, RevisionSettledLedger, -1, time.Second, 3*time.Second)
	syncs := w.syncCalls()
	if got, want := w.syncTimes(), []time.Duration{0, time.Second, 3 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("no settling: Syncs at %v, want one per step %v", got, want)
	}
	if len(syncs[0].Commands) != 2 || syncs[0].Ledger.Status != lethe.RequestRunning || len(syncs[0].Ledger.Systems) != 2 {
		t.Errorf("no settling: first Sync %d commands, status %q, %d systems; want the wave written with it",
			len(syncs[0].Commands), syncs[0].Ledger.Status, len(syncs[0].Ledger.Systems))
	}
	if _, at := w.upsertedColumns(); len(at) == 0 || at[0] != 0 {
		t.Errorf("no settling: upserts at %v, want the first at the start", at)
	}
}
