package registry_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// ApplyLedgerOutcomes reports each system's move into a final status once,
// with its first dispatch: not for a delta written again, not for a system
// already final, not for a held system never dispatched.
func TestApplyLedgerOutcomes(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	create(t, s, in)
	first, second := t0.Add(time.Minute), t0.Add(time.Hour)
	confirmed := t0.Add(2 * time.Hour)
	steps := []struct {
		name  string
		delta lethe.LedgerDelta
		want  []registry.Outcome
	}{{
		name: "dispatch",
		delta: lethe.LedgerDelta{Batch: "r/1", Status: lethe.RequestRunning,
			Systems: []lethe.SystemProgress{
				{Name: "orders", Status: lethe.SystemDispatched, Attempts: 1},
				{Name: "crm", Status: lethe.SystemDispatched, Attempts: 1},
				{Name: "archive", Status: lethe.SystemRetained, Detail: "held"},
			},
			Events: []lethe.AuditEvent{
				{System: "orders", Kind: lethe.AuditDispatched, Attempt: 1, At: first},
				{System: "crm", Kind: lethe.AuditDispatched, Attempt: 1, At: first},
				{System: "archive", Kind: lethe.AuditHeld, At: first},
			}},
	}, {
		name: "redispatch and a second wave",
		delta: lethe.LedgerDelta{Batch: "r/2",
			Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemDispatched, Attempts: 2}},
			Events: []lethe.AuditEvent{
				{System: "orders", Kind: lethe.AuditRedispatched, Attempt: 2, At: second},
				{System: "orders", Kind: lethe.AuditDispatched, Attempt: 1, At: second},
			}},
	}, {
		name: "orders confirms, crm fails for silence",
		delta: lethe.LedgerDelta{Batch: "r/3",
			Systems: []lethe.SystemProgress{
				{Name: "orders", Status: lethe.SystemErased, Attempts: 2, Records: 3, ConfirmedAt: &confirmed},
				{Name: "crm", Status: lethe.SystemFailed, Attempts: 5},
			}},
		want: []registry.Outcome{
			{System: "crm", Status: lethe.SystemFailed, Dispatched: first},
			{System: "orders", Status: lethe.SystemErased, Dispatched: first, ConfirmedAt: &confirmed},
		},
	}, {
		name: "the same delta again",
		delta: lethe.LedgerDelta{Batch: "r/3",
			Systems: []lethe.SystemProgress{
				{Name: "orders", Status: lethe.SystemErased, Attempts: 2, Records: 3, ConfirmedAt: &confirmed},
				{Name: "crm", Status: lethe.SystemFailed, Attempts: 5},
			}},
	}, {
		name: "a final system written again",
		delta: lethe.LedgerDelta{Batch: "r/4", Status: lethe.RequestFailed,
			Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemErased, Attempts: 2, Records: 3, ConfirmedAt: &confirmed}}},
	}}
	for _, step := range steps {
		got, err := s.ApplyLedgerOutcomes(ctx, in.ID, step.delta)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for i := range got {
			got[i].Dispatched = got[i].Dispatched.UTC()
		}
		if !reflect.DeepEqual(got, step.want) {
			t.Errorf("%s: outcomes %+v, want %+v", step.name, got, step.want)
		}
	}
}

// A request whose ledger waited for it to settle writes its dispatch and
// its confirmation in one delta: the dispatch is read from the delta.
func TestApplyLedgerOutcomesInOneDelta(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	create(t, s, in)
	dispatched, confirmed := t0.Add(time.Second), t0.Add(3*time.Second)
	got, err := s.ApplyLedgerOutcomes(ctx, in.ID, lethe.LedgerDelta{Batch: "r/1",
		Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemNotFound, Attempts: 1, ConfirmedAt: &confirmed}},
		Events: []lethe.AuditEvent{
			{System: "orders", Kind: lethe.AuditDispatched, Attempt: 1, At: dispatched},
			{System: "orders", Kind: lethe.AuditConfirmed, Attempt: 1, At: confirmed},
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := []registry.Outcome{{System: "orders", Status: lethe.SystemNotFound, Dispatched: dispatched, ConfirmedAt: &confirmed}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outcomes %+v, want %+v", got, want)
	}
}

// CountErasures counts requests by status, the open ones, and the open
// ones past their deadline, marked overdue or not yet; and the open
// batches, and those past their deadline.
func TestCountErasures(t *testing.T) {
	t.Parallel()
	s, c := newStore(t)
	ctx := testContext(t)
	marked, late, fresh, done := newErasure(t0), newErasure(t0), newErasure(t0), newErasure(t0)
	late.Deadline = t0.Add(time.Hour)
	for _, in := range []registry.NewErasure{marked, late, fresh, done} {
		create(t, s, in)
	}
	apply := func(id string, d lethe.LedgerDelta) {
		if err := s.ApplyLedger(ctx, id, d); err != nil {
			t.Fatal(err)
		}
	}
	apply(marked.ID, lethe.LedgerDelta{Status: lethe.RequestRunning, Overdue: true})
	apply(fresh.ID, lethe.LedgerDelta{Status: lethe.RequestRunning})
	apply(done.ID, lethe.LedgerDelta{Status: lethe.RequestCompleted, Overdue: true})
	lateBatch, openBatch, doneBatch := newBatch(t0, "count-late", 1), newBatch(t0, "count-open", 1), newBatch(t0, "count-done", 1)
	lateBatch.Deadline = t0.Add(time.Hour)
	for _, b := range []registry.NewBatch{lateBatch, openBatch, doneBatch} {
		createBatch(t, s, b)
	}
	finishBatch(t, s, doneBatch.ID, lethe.RequestCompleted, t0)
	c.Advance(2 * time.Hour)

	got, err := s.CountErasures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := registry.ErasureCounts{
		ByStatus: map[lethe.RequestStatus]int64{lethe.RequestPending: 1, lethe.RequestRunning: 2,
			lethe.RequestCompleted: 1, lethe.RequestFailed: 0, lethe.RequestCanceled: 0},
		Open: 3, Overdue: 2, BatchesOpen: 2, BatchesOverdue: 1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CountErasures = %+v, want %+v", got, want)
	}
}
