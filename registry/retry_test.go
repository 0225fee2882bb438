package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// ended writes a request's end as its workflow would: each system in its
// status, and the request failed when one failed, else completed.
func ended(t *testing.T, s *registry.Store, id string, systems map[string]lethe.SystemStatus) {
	t.Helper()
	status := lethe.RequestCompleted
	var progress []lethe.SystemProgress
	for _, name := range sortedKeys(systems) {
		progress = append(progress, lethe.SystemProgress{Name: name, Status: systems[name], Attempts: 5})
		if systems[name] == lethe.SystemFailed {
			status = lethe.RequestFailed
		}
	}
	if err := s.ApplyLedger(testContext(t), id, lethe.LedgerDelta{Status: status, Systems: progress}); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestRetryErasureReopensFailedSystems(t *testing.T) {
	s, clk := newStore(t)
	ctx := testContext(t)
	e := create(t, s, newErasure(t0))
	ended(t, s, e.ID, map[string]lethe.SystemStatus{"billing": lethe.SystemFailed, "crm": lethe.SystemFailed,
		"orders": lethe.SystemErased})
	clk.Advance(time.Hour)

	var told []string
	got, err := s.RetryErasure(ctx, e.ID, "token:ops", []string{"crm"}, func(_ context.Context, systems []string) error {
		told = systems
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(told, []string{"crm"}) {
		t.Errorf("notify was told %v, want [crm]", told)
	}
	if got.Status != lethe.RequestRunning || got.CompletedAt != nil {
		t.Errorf("retried request: status %s, completed %v; want running, not completed", got.Status, got.CompletedAt)
	}
	byName := map[string]lethe.SystemProgress{}
	for _, p := range got.Systems {
		byName[p.Name] = p
	}
	if byName["crm"].Status != lethe.SystemDispatched || byName["billing"].Status != lethe.SystemFailed ||
		byName["orders"].Status != lethe.SystemErased {
		t.Errorf("systems after retrying crm: %+v", got.Systems)
	}
	audit, err := s.Audit(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := audit[len(audit)-1]
	if last.Kind != lethe.AuditRetryRequested || last.Actor != "token:ops" || last.Detail != "systems: crm" {
		t.Errorf("last audit event %+v, want retry_requested by token:ops for crm", last)
	}

	// The rest, with no systems named: billing only, crm is no longer failed.
	if _, err := s.RetryErasure(ctx, e.ID, "token:ops", nil, func(_ context.Context, systems []string) error {
		told = systems
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(told, []string{"billing"}) {
		t.Errorf("second retry told %v, want [billing]", told)
	}
	_, err = s.RetryErasure(ctx, e.ID, "token:ops", nil, nil)
	wantCode(t, err, lethe.KindConflict, "nothing_to_retry")
}

func TestRetryErasureChangesNothingWhenTheWorkflowRefuses(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	e := create(t, s, newErasure(t0))
	ended(t, s, e.ID, map[string]lethe.SystemStatus{"crm": lethe.SystemFailed})
	refused := lethe.Errorf(lethe.KindConflict, "workflow_gone", "gone")
	_, err := s.RetryErasure(ctx, e.ID, "token:ops", nil, func(context.Context, []string) error { return refused })
	if !errors.Is(err, refused) {
		t.Fatalf("err = %v, want the workflow's refusal", err)
	}
	got, err := s.GetErasure(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != lethe.RequestFailed || got.Systems[0].Status != lethe.SystemFailed {
		t.Errorf("after a refused retry: %s with %+v, want failed as before", got.Status, got.Systems)
	}
	audit, _ := s.Audit(ctx, e.ID)
	for _, ev := range audit {
		if ev.Kind == lethe.AuditRetryRequested {
			t.Errorf("a refused retry was audited: %+v", ev)
		}
	}
}

func TestRetryErasureRefusals(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	_, err := s.RetryErasure(ctx, "6f1c0000-0000-4000-8000-00000000dead", "token:ops", nil, nil)
	wantCode(t, err, lethe.KindNotFound, "erasure_not_found")

	done := create(t, s, newErasure(t0))
	ended(t, s, done.ID, map[string]lethe.SystemStatus{"crm": lethe.SystemErased})
	_, err = s.RetryErasure(ctx, done.ID, "token:ops", nil, nil)
	wantCode(t, err, lethe.KindConflict, "nothing_to_retry")

	canceled := create(t, s, newErasure(t0))
	if err := s.ApplyLedger(ctx, canceled.ID, lethe.LedgerDelta{Status: lethe.RequestCanceled,
		Systems: []lethe.SystemProgress{{Name: "crm", Status: lethe.SystemFailed}}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.RetryErasure(ctx, canceled.ID, "token:ops", nil, nil)
	wantCode(t, err, lethe.KindConflict, "nothing_to_retry")
}

func TestFailedErasuresFilters(t *testing.T) {
	s, clk := newStore(t)
	ctx := testContext(t)
	var ids []string
	for i, systems := range []map[string]lethe.SystemStatus{
		{"crm": lethe.SystemFailed},
		{"crm": lethe.SystemFailed, "billing": lethe.SystemFailed},
		{"billing": lethe.SystemFailed},
		{"crm": lethe.SystemErased},
	} {
		e := create(t, s, newErasure(t0))
		ended(t, s, e.ID, systems)
		ids = append(ids, e.ID)
		if i == 0 {
			clk.Advance(24 * time.Hour) // the first failure is a day older
		}
	}
	running := create(t, s, newErasure(t0))
	if err := s.ApplyLedger(ctx, running.ID, lethe.LedgerDelta{Status: lethe.RequestRunning,
		Systems: []lethe.SystemProgress{{Name: "crm", Status: lethe.SystemFailed}, {Name: "orders", Status: lethe.SystemDispatched}}}); err != nil {
		t.Fatal(err)
	}
	sorted := func(v ...string) []string { slices.Sort(v); return v }
	tests := []struct {
		name string
		f    registry.RetryFilter
		want []string
	}{
		{"all failed", registry.RetryFilter{Limit: 10}, sorted(ids[0], ids[1], ids[2])},
		{"crm", registry.RetryFilter{System: "crm", Limit: 10}, sorted(ids[0], ids[1])},
		{"since", registry.RetryFilter{Since: t0.Add(time.Hour), Limit: 10}, sorted(ids[1], ids[2])},
		{"running", registry.RetryFilter{Status: lethe.RequestRunning, Limit: 10}, []string{running.ID}},
	}
	for _, tt := range tests {
		got, more, err := s.FailedErasures(ctx, tt.f)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(got, tt.want) || more {
			t.Errorf("%s: %v more %v, want %v", tt.name, got, more, tt.want)
		}
	}
	all := sorted(ids[0], ids[1], ids[2])
	page, more, err := s.FailedErasures(ctx, registry.RetryFilter{Limit: 2})
	if err != nil || !more || !slices.Equal(page, all[:2]) {
		t.Fatalf("first page %v more %v err %v, want %v and more", page, more, err, all[:2])
	}
	page, more, err = s.FailedErasures(ctx, registry.RetryFilter{Limit: 2, After: page[1]})
	if err != nil || more || !slices.Equal(page, all[2:]) {
		t.Errorf("second page %v more %v err %v, want %v", page, more, err, all[2:])
	}
	_, _, err = s.FailedErasures(ctx, registry.RetryFilter{Status: lethe.RequestCompleted, Limit: 1})
	wantCode(t, err, lethe.KindInvalid, "invalid_status")
}

func TestBulkRetryOnceIsIdempotentPerKey(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	runs := 0
	run := func(context.Context) (json.RawMessage, error) {
		runs++
		return json.RawMessage(`{"retried":2}`), nil
	}
	out, replayed, err := s.BulkRetryOnce(ctx, "key-1", "hash-a", "token:ops", run)
	if err != nil || replayed || string(out) != `{"retried":2}` {
		t.Fatalf("first call: %s replayed %v err %v", out, replayed, err)
	}
	out, replayed, err = s.BulkRetryOnce(ctx, "key-1", "hash-a", "token:ops", run)
	if err != nil || !replayed || string(out) != `{"retried": 2}` && string(out) != `{"retried":2}` {
		t.Fatalf("repeat: %s replayed %v err %v, want the stored answer", out, replayed, err)
	}
	if runs != 1 {
		t.Errorf("run ran %d times, want once", runs)
	}
	_, _, err = s.BulkRetryOnce(ctx, "key-1", "hash-b", "token:ops", run)
	wantCode(t, err, lethe.KindConflict, "idempotency_conflict")

	// A failed run stores nothing: the key can be used again.
	boom := errors.New("temporal down")
	if _, _, err := s.BulkRetryOnce(ctx, "key-2", "hash-a", "token:ops", func(context.Context) (json.RawMessage, error) {
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("failing run: err %v", err)
	}
	if _, replayed, err := s.BulkRetryOnce(ctx, "key-2", "hash-a", "token:ops", run); err != nil || replayed {
		t.Errorf("after a failed run the key replayed %v, err %v; want a fresh run", replayed, err)
	}
}

func TestOpenErasuresAndFailOrphan(t *testing.T) {
	s, clk := newStore(t)
	ctx := testContext(t)
	pending := create(t, s, newErasure(t0))
	running := create(t, s, newErasure(t0))
	if err := s.ApplyLedger(ctx, running.ID, lethe.LedgerDelta{Status: lethe.RequestRunning}); err != nil {
		t.Fatal(err)
	}
	done := create(t, s, newErasure(t0))
	ended(t, s, done.ID, map[string]lethe.SystemStatus{"crm": lethe.SystemErased})
	clk.Advance(time.Hour)
	young := create(t, s, newErasure(clk.Now()))

	open, err := s.OpenErasures(ctx, clk.Now().Add(-time.Minute), "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range open {
		got = append(got, r.ID)
		if r.WorkflowID != "erasure-"+r.ID {
			t.Errorf("open request %s has workflow id %q", r.ID, r.WorkflowID)
		}
	}
	want := []string{pending.ID, running.ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("open erasures %v, want %v (not the finished one, not the young %s)", got, want, young.ID)
	}

	ok, err := s.FailOrphan(ctx, pending.ID, "no workflow", "lethe:reconciler")
	if err != nil || !ok {
		t.Fatalf("FailOrphan = %v, %v", ok, err)
	}
	if ok, err := s.FailOrphan(ctx, pending.ID, "no workflow", "lethe:reconciler"); err != nil || ok {
		t.Errorf("FailOrphan of a request no longer open = %v, %v; want false", ok, err)
	}
	if ok, err := s.FailOrphan(ctx, done.ID, "no workflow", "lethe:reconciler"); err != nil || ok {
		t.Errorf("FailOrphan of a completed request = %v, %v; want false", ok, err)
	}
	e, err := s.GetErasure(ctx, pending.ID)
	if err != nil || e.Status != lethe.RequestFailed || e.CompletedAt == nil {
		t.Fatalf("failed orphan: %+v, %v", e, err)
	}
	n, err := s.Reconciled(ctx, pending.ID)
	if err != nil || n != 1 {
		t.Errorf("Reconciled = %d, %v; want 1", n, err)
	}
	audit, _ := s.Audit(ctx, pending.ID)
	kinds := []lethe.AuditKind{}
	for _, ev := range audit {
		kinds = append(kinds, ev.Kind)
	}
	if !slices.Contains(kinds, lethe.AuditReconciled) || !slices.Contains(kinds, lethe.AuditFailed) {
		t.Errorf("audit kinds %v, want reconciled and failed", kinds)
	}
}
