package e2e_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/reconcile"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/workflows"
)

// actions counts the reconciler's actions, as lethe_reconciler_actions_total.
type actions struct {
	mu  sync.Mutex
	got []string
}

func (a *actions) Reconciled(action string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, action)
}

// reconciler builds the worker's reconciler on the stack with no grace,
// so that it looks at requests at once.
func (s *stack) reconciler(count *actions) *reconcile.Reconciler {
	return reconcile.New(reconcile.Config{Ledger: s.Store, Workflows: reconcile.NewWorkflows(s.Temporal, 0),
		Logger: s.Log, Counter: count, Grace: time.Nanosecond})
}

// orphanRow records a request in the ledger whose workflow never started,
// as a crash between the two would leave it, in status.
func (s *stack) orphanRow(status lethe.RequestStatus) string {
	s.t.Helper()
	id := uuid.NewString()
	now := time.Now().UTC().Truncate(time.Microsecond)
	_, _, err := s.Store.CreateErasure(s.ctx, registry.NewErasure{ID: id, RequestHash: "orphan-" + id,
		Subject: []lethe.SubjectDigest{{Type: "email", Digest: "00aa"}}, Reason: "gdpr_art17", CreatedAt: now,
		Deadline: now.Add(lethe.DefaultDeadline), WorkflowID: workflows.ErasureWorkflowID(id)},
		func(context.Context) error { return nil })
	if err != nil {
		s.t.Fatal(err)
	}
	if status != lethe.RequestPending {
		if err := s.Store.ApplyLedger(s.ctx, id, lethe.LedgerDelta{Status: status}); err != nil {
			s.t.Fatal(err)
		}
	}
	return id
}

// TestReconcilerHealsOrphans creates each kind of orphan on the real stack
// (Temporal, PostgreSQL, Kafka) and runs a round of the reconciler: a
// request left pending without a workflow and one running whose workflow
// Temporal does not know are failed with the reason; one running whose
// workflow was terminated is started again and completes once its system
// confirms; a healthy running request is left alone. Each action is audited
// by the reconciler and counted.
func TestReconcilerHealsOrphans(t *testing.T) {
	s := newStack(t, stackOptions{})
	gate := make(chan struct{})
	s.putSystem(lethe.System{Name: "crm", Identifiers: []string{"email"}, Owner: "e2e"})
	s.runConnector("crm", gated(gate))

	terminated := s.submit(map[string]string{"email": "orphan-1@example.test"})
	healthy := s.submit(map[string]string{"email": "orphan-2@example.test"})
	for _, id := range []string{terminated.ID, healthy.ID} {
		s.inLedger(id, "running with crm dispatched", systemIs("crm", lethe.SystemDispatched))
	}
	if err := s.Temporal.TerminateWorkflow(s.ctx, workflows.ErasureWorkflowID(terminated.ID), "", "operator mistake"); err != nil {
		t.Fatal(err)
	}
	pending := s.orphanRow(lethe.RequestPending)
	running := s.orphanRow(lethe.RequestRunning)

	count := &actions{}
	rep, err := s.reconciler(count).Round(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Restarted != 1 || rep.Failed != 2 || rep.Errors != 0 {
		t.Fatalf("round %+v, want 1 restarted, 2 failed, no errors", rep)
	}
	slices.Sort(count.got)
	if want := []string{reconcile.ActionFailed, reconcile.ActionFailed, reconcile.ActionRestarted}; !slices.Equal(count.got, want) {
		t.Errorf("counted %v, want %v", count.got, want)
	}

	for _, id := range []string{pending, running} {
		e, err := s.Store.GetErasure(s.ctx, id)
		if err != nil || e.Status != lethe.RequestFailed {
			t.Errorf("orphan %s is %s (%v), want failed", id, e.Status, err)
		}
		if ev := lastOf(t, s, id, lethe.AuditReconciled); ev.Actor != reconcile.Actor ||
			!strings.Contains(ev.Detail, "Temporal does not know its workflow") {
			t.Errorf("orphan %s: reconciled event %+v, want the reason, by the reconciler", id, ev)
		}
	}
	if ev := lastOf(t, s, terminated.ID, lethe.AuditReconciled); ev.Actor != reconcile.Actor ||
		!strings.Contains(ev.Detail, "restarted: its workflow had closed (terminated)") {
		t.Errorf("terminated request: reconciled event %+v, want the restart", ev)
	}
	for _, ev := range audit(t, s, healthy.ID) {
		if ev.Kind == lethe.AuditReconciled {
			t.Errorf("a healthy request was reconciled: %+v", ev)
		}
	}

	// The restarted run goes on where the terminated one stood: the
	// command out before is answered, and both requests complete.
	close(gate)
	for _, id := range []string{terminated.ID, healthy.ID} {
		if e := s.await(id, time.Minute); e.Status != lethe.RequestCompleted {
			t.Errorf("request %s ended %s, want completed", id, e.Status)
		}
	}
	if e := s.await(terminated.ID, time.Minute); systemByName(t, e, "crm").Attempts != 1 {
		t.Errorf("crm was sent the restarted request's command again: %+v", e.Systems)
	}
}

func audit(t *testing.T, s *stack, id string) []lethe.AuditEvent {
	t.Helper()
	events, err := s.Store.Audit(s.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// lastOf is the request's last audit event of kind.
func lastOf(t *testing.T, s *stack, id string, kind lethe.AuditKind) lethe.AuditEvent {
	t.Helper()
	var last lethe.AuditEvent
	for _, ev := range audit(t, s, id) {
		if ev.Kind == kind {
			last = ev
		}
	}
	return last
}
