package reconcile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// fakeLedger holds open requests and records what the reconciler writes.
type fakeLedger struct {
	mu         sync.Mutex
	open       []registry.OpenRequest
	before     []time.Time
	failed     map[string]string
	reconciled map[string]int
	audit      []lethe.AuditEvent
}

func (l *fakeLedger) OpenErasures(_ context.Context, before time.Time, after string, limit int) ([]registry.OpenRequest, error) {
	l.before = append(l.before, before)
	var out []registry.OpenRequest
	for _, r := range l.open {
		if r.ID > after && r.UpdatedAt.Before(before) && len(out) < limit {
			if _, gone := l.failed[r.ID]; !gone {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (l *fakeLedger) FailOrphan(_ context.Context, id, reason, actor string) (bool, error) {
	if _, done := l.failed[id]; done {
		return false, nil
	}
	l.failed[id] = reason
	l.reconciled[id]++
	l.audit = append(l.audit, lethe.AuditEvent{RequestID: id, Kind: lethe.AuditReconciled, Actor: actor, Detail: "failed: " + reason})
	return true, nil
}

func (l *fakeLedger) Reconciled(_ context.Context, id string) (int, error) {
	return l.reconciled[id], nil
}

func (l *fakeLedger) AppendAudit(_ context.Context, events []lethe.AuditEvent) error {
	for _, e := range events {
		l.reconciled[e.RequestID]++
	}
	l.audit = append(l.audit, events...)
	return nil
}

// fakeWorkflows answers each request's status and records restarts.
type fakeWorkflows struct {
	status     map[string]enumspb.WorkflowExecutionStatus
	err        map[string]error
	racing     map[string]bool // another caller starts it first
	restarted  []string
	restartErr error
}

func (w *fakeWorkflows) Status(_ context.Context, id string) (enumspb.WorkflowExecutionStatus, bool, error) {
	if err := w.err[id]; err != nil {
		return 0, false, err
	}
	st, ok := w.status[id]
	return st, ok, nil
}

func (w *fakeWorkflows) Restart(_ context.Context, id string) (bool, error) {
	if w.restartErr != nil {
		return false, w.restartErr
	}
	if w.racing[id] {
		return false, nil
	}
	w.restarted = append(w.restarted, id)
	w.status[id] = enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	return true, nil
}

type counter struct{ actions []string }

func (c *counter) Reconciled(action string) { c.actions = append(c.actions, action) }

func open(id string, status lethe.RequestStatus, age time.Duration) registry.OpenRequest {
	return registry.OpenRequest{ID: id, Status: status, WorkflowID: "erasure-" + id, UpdatedAt: now.Add(-age)}
}

func newTest(reqs ...registry.OpenRequest) (*fakeLedger, *fakeWorkflows, *counter, *Reconciler) {
	l := &fakeLedger{open: reqs, failed: map[string]string{}, reconciled: map[string]int{}}
	w := &fakeWorkflows{status: map[string]enumspb.WorkflowExecutionStatus{}, err: map[string]error{}, racing: map[string]bool{}}
	c := &counter{}
	r := New(Config{Ledger: l, Workflows: w, Counter: c, Now: func() time.Time { return now }})
	return l, w, c, r
}

func TestRoundActsOnEachOrphanKind(t *testing.T) {
	l, w, c, r := newTest(
		open("a-running-fine", lethe.RequestRunning, time.Hour),
		open("b-pending-unknown", lethe.RequestPending, time.Hour),
		open("c-running-unknown", lethe.RequestRunning, time.Hour),
		open("d-running-terminated", lethe.RequestRunning, time.Hour),
		open("e-running-timed-out", lethe.RequestRunning, time.Hour),
		open("f-young-unknown", lethe.RequestPending, time.Minute),
	)
	w.status["a-running-fine"] = enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	w.status["d-running-terminated"] = enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED
	w.status["e-running-timed-out"] = enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT

	rep, err := r.Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep != (Report{Checked: 5, Restarted: 2, Failed: 2}) {
		t.Errorf("report %+v, want 5 checked, 2 restarted, 2 failed (the young one left to settle)", rep)
	}
	if want := []string{"d-running-terminated", "e-running-timed-out"}; !slices.Equal(w.restarted, want) {
		t.Errorf("restarted %v, want %v", w.restarted, want)
	}
	for _, id := range []string{"b-pending-unknown", "c-running-unknown"} {
		if !strings.Contains(l.failed[id], "Temporal does not know its workflow") {
			t.Errorf("%s failed with %q, want the reason", id, l.failed[id])
		}
	}
	if _, ok := l.failed["f-young-unknown"]; ok {
		t.Error("a request changed within the grace period was failed")
	}
	if got := l.before[0]; !got.Equal(now.Add(-DefaultGrace)) {
		t.Errorf("asked for requests unchanged since %v, want %v", got, now.Add(-DefaultGrace))
	}
	var restartedAudit int
	for _, e := range l.audit {
		if e.Actor != Actor || e.Kind != lethe.AuditReconciled {
			t.Errorf("audit event %+v, want reconciled by %s", e, Actor)
		}
		if strings.HasPrefix(e.Detail, "restarted: its workflow had closed (terminated)") {
			restartedAudit++
		}
	}
	if restartedAudit != 1 {
		t.Errorf("audit %+v, want one restart naming the terminated workflow", l.audit)
	}
	slices.Sort(c.actions)
	if want := []string{ActionFailed, ActionFailed, ActionRestarted, ActionRestarted}; !slices.Equal(c.actions, want) {
		t.Errorf("counted %v, want %v", c.actions, want)
	}

	// The next round finds nothing more to do.
	rep, err = r.Round(context.Background())
	if err != nil || rep.Restarted+rep.Failed != 0 {
		t.Errorf("second round %+v, %v; want nothing done", rep, err)
	}
}

func TestRoundGivesUpAfterMaxRestarts(t *testing.T) {
	l, w, _, r := newTest(open("a", lethe.RequestRunning, time.Hour))
	for i := range DefaultMaxRestarts + 1 {
		w.status["a"] = enumspb.WORKFLOW_EXECUTION_STATUS_FAILED // it closes again each time
		rep, err := r.Round(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if i < DefaultMaxRestarts && rep.Restarted != 1 {
			t.Fatalf("round %d: %+v, want a restart", i+1, rep)
		}
		if i == DefaultMaxRestarts && rep.Failed != 1 {
			t.Fatalf("round %d: %+v, want it failed", i+1, rep)
		}
	}
	if !strings.Contains(l.failed["a"], "closed (failed)") || !strings.Contains(l.failed["a"], "3 times") {
		t.Errorf("reason %q, want it to say how the workflow closed and how often", l.failed["a"])
	}
}

func TestRoundLeavesARaceToTheWinner(t *testing.T) {
	l, w, c, r := newTest(open("a", lethe.RequestRunning, time.Hour))
	w.status["a"] = enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED
	w.racing["a"] = true
	rep, err := r.Round(context.Background())
	if err != nil || rep.Restarted != 0 || len(l.audit) != 0 || len(c.actions) != 0 {
		t.Errorf("round %+v %v, audit %v, counted %v; want nothing done by the loser", rep, err, l.audit, c.actions)
	}
}

func TestRoundCountsErrorsAndGoesOn(t *testing.T) {
	_, w, _, r := newTest(open("a", lethe.RequestRunning, time.Hour), open("b", lethe.RequestPending, time.Hour))
	w.err["a"] = errors.New("temporal: unavailable")
	rep, err := r.Round(context.Background())
	if err != nil || rep.Errors != 1 || rep.Failed != 1 {
		t.Errorf("round %+v %v; want one error and b failed", rep, err)
	}
}

func TestRoundsWalkAllOpenRequests(t *testing.T) {
	var reqs []registry.OpenRequest
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		reqs = append(reqs, open(id, lethe.RequestPending, time.Hour))
	}
	l, _, _, _ := newTest(reqs...)
	r := New(Config{Ledger: l, Workflows: &fakeWorkflows{status: map[string]enumspb.WorkflowExecutionStatus{
		"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}}, Batch: 2, Now: func() time.Time { return now }})
	var seen []int
	for range 4 {
		rep, err := r.Round(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, rep.Checked)
	}
	if want := []int{2, 2, 1, 2}; !slices.Equal(seen, want) {
		t.Errorf("checked per round %v, want %v: pages of two, then from the start again", seen, want)
	}
}
