package registry_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// retryFixture is a failed batch of four subjects over orders and crm:
// 0 erased in both, 1 failed in orders, 2 failed in crm, 3 failed in both.
func retryFixture(t *testing.T, s *registry.Store, tag string) registry.NewBatch {
	t.Helper()
	in := newBatch(t0, tag, 4)
	createBatch(t, s, in)
	setSubjects(t, s, in.ID, lethe.RequestCompleted, 0)
	setSubjects(t, s, in.ID, lethe.RequestFailed, 1, 2, 3)
	outcome := func(failed bool) lethe.SystemStatus {
		if failed {
			return lethe.SystemFailed
		}
		return lethe.SystemErased
	}
	for item := range 4 {
		addOutcome(t, s, in.ID, item, "orders", outcome(item == 1 || item == 3), 0)
		addOutcome(t, s, in.ID, item, "crm", outcome(item == 2 || item == 3), 0)
	}
	finishBatch(t, s, in.ID, lethe.RequestFailed, t0.Add(time.Hour))
	return in
}

// batchState is what a retry changes, read back from the tables.
type batchState struct {
	status   string
	finished bool
	subjects []string
	outcomes map[string]string // "item/system" -> status: detail
}

func readBatchState(t *testing.T, s *registry.Store, id string) batchState {
	t.Helper()
	ctx := testContext(t)
	var st batchState
	var completed sql.NullTime
	var xid sql.NullString
	if err := s.DB().QueryRowContext(ctx, `SELECT status, completed_at, finished_xid::text FROM erasure_batches WHERE id = $1`, id).
		Scan(&st.status, &completed, &xid); err != nil {
		t.Fatal(err)
	}
	if completed.Valid != xid.Valid {
		t.Fatalf("completed_at %v but finished_xid %v", completed, xid)
	}
	st.finished = completed.Valid
	rows, err := s.DB().QueryContext(ctx, `SELECT status FROM batch_subjects WHERE batch_id = $1 ORDER BY item`, id)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		st.subjects = append(st.subjects, v)
	}
	rows.Close()
	rows, err = s.DB().QueryContext(ctx, `SELECT item, system, status, detail FROM batch_outcomes WHERE batch_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	st.outcomes = map[string]string{}
	for rows.Next() {
		var (
			item                   int
			system, status, detail string
		)
		if err := rows.Scan(&item, &system, &status, &detail); err != nil {
			t.Fatal(err)
		}
		st.outcomes[fmt.Sprintf("%d/%s", item, system)] = status + ": " + detail
	}
	return st
}

func TestRetryBatchRefusals(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := retryFixture(t, s, "refusals")
	before := readBatchState(t, s, in.ID)
	audit := len(auditWhere(t, s.DB(), `request_id = $1`, in.ID))
	notify := func(context.Context) error {
		t.Errorf("notify called for a refused retry")
		return nil
	}

	t.Run("unknown batch", func(t *testing.T) {
		for _, id := range []string{uuid.NewString(), "nope"} {
			_, err := s.RetryBatch(ctx, id, "oidc:admin", nil, notify)
			wantCode(t, err, lethe.KindNotFound, "batch_not_found")
		}
	})
	t.Run("no failure in the systems named", func(t *testing.T) {
		_, err := s.RetryBatch(ctx, in.ID, "oidc:admin", []string{"billing"}, notify)
		wantCode(t, err, lethe.KindConflict, "nothing_to_retry")
	})
	t.Run("no failure at all", func(t *testing.T) {
		running := newBatch(t0, "refusals-running", 2)
		createBatch(t, s, running)
		addOutcome(t, s, running.ID, 0, "orders", lethe.SystemDispatched, 0)
		_, err := s.RetryBatch(ctx, running.ID, "oidc:admin", nil, notify)
		wantCode(t, err, lethe.KindConflict, "nothing_to_retry")
	})
	t.Run("canceled", func(t *testing.T) {
		canceled := newBatch(t0, "refusals-canceled", 2)
		createBatch(t, s, canceled)
		addOutcome(t, s, canceled.ID, 0, "orders", lethe.SystemFailed, 0)
		finishBatch(t, s, canceled.ID, lethe.RequestCanceled, t0.Add(time.Hour))
		_, err := s.RetryBatch(ctx, canceled.ID, "oidc:admin", nil, notify)
		wantCode(t, err, lethe.KindConflict, "nothing_to_retry")
	})
	t.Run("the workflow could not be told", func(t *testing.T) {
		errGone := lethe.Errorf(lethe.KindConflict, "workflow_gone", "the workflow is gone")
		_, err := s.RetryBatch(ctx, in.ID, "oidc:admin", nil, func(context.Context) error { return errGone })
		if !errors.Is(err, errGone) {
			t.Errorf("RetryBatch = %v, want the notify error", err)
		}
	})
	if after := readBatchState(t, s, in.ID); !reflect.DeepEqual(after, before) {
		t.Errorf("refusals changed the batch:\n%+v\nwas %+v", after, before)
	}
	if n := len(auditWhere(t, s.DB(), `request_id = $1`, in.ID)); n != audit {
		t.Errorf("refusals wrote %d audit events", n-audit)
	}
}

func TestRetryBatch(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	in := retryFixture(t, s, "retry")
	clk.Advance(2 * time.Hour)

	var notified int
	got, err := s.RetryBatch(ctx, in.ID, "oidc:admin", []string{"orders"}, func(context.Context) error {
		notified++
		return nil
	})
	if err != nil {
		t.Fatalf("RetryBatch(orders): %v", err)
	}
	if notified != 1 {
		t.Errorf("notify called %d times, want 1", notified)
	}
	if got.Status != lethe.RequestRunning || got.CompletedAt != nil ||
		got.Counts != (lethe.BatchCounts{Completed: 1, Running: 2, Failed: 1}) {
		t.Errorf("retried batch = status %s completed %v counts %+v; want running, open, 1 completed 2 running 1 failed",
			got.Status, got.CompletedAt, got.Counts)
	}
	want := batchState{
		status:   "running",
		subjects: []string{"completed", "running", "failed", "running"},
		outcomes: map[string]string{
			"0/orders": "erased: detail of orders", "0/crm": "erased: detail of crm",
			"1/orders": "pending: retry requested", "1/crm": "erased: detail of crm",
			"2/orders": "erased: detail of orders", "2/crm": "failed: detail of crm",
			"3/orders": "pending: retry requested", "3/crm": "failed: detail of crm",
		},
	}
	if st := readBatchState(t, s, in.ID); !reflect.DeepEqual(st, want) {
		t.Errorf("after retrying orders:\n%+v\nwant %+v", st, want)
	}

	// Without systems, every failed one is retried: crm here.
	if _, err := s.RetryBatch(ctx, in.ID, "token:ops", nil, nil); err != nil {
		t.Fatalf("RetryBatch(all): %v", err)
	}
	want.subjects[2] = "running"
	want.outcomes["2/crm"], want.outcomes["3/crm"] = "pending: retry requested", "pending: retry requested"
	if st := readBatchState(t, s, in.ID); !reflect.DeepEqual(st, want) {
		t.Errorf("after retrying everything:\n%+v\nwant %+v", st, want)
	}
	_, err = s.RetryBatch(ctx, in.ID, "token:ops", nil, nil)
	wantCode(t, err, lethe.KindConflict, "nothing_to_retry")

	events := auditWhere(t, s.DB(), `request_id = $1 AND kind = 'retry_requested'`, in.ID)
	wantEvents := []auditRow{
		{Kind: "retry_requested", Actor: "oidc:admin", Detail: "systems: orders"},
		{Kind: "retry_requested", Actor: "token:ops", Detail: "systems: crm"},
	}
	if !reflect.DeepEqual(events, wantEvents) {
		t.Errorf("retry events = %+v\nwant %+v", events, wantEvents)
	}
	verifyIntact(t, s)
}

func TestAuditBatchCancel(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	open := newBatch(t0, "cancel-open", 2)
	createBatch(t, s, open)
	done := newBatch(t0, "cancel-done", 2)
	createBatch(t, s, done)
	finishBatch(t, s, done.ID, lethe.RequestCompleted, t0.Add(time.Hour))

	if err := s.AuditBatchCancel(ctx, open.ID, "oidc:admin"); err != nil {
		t.Fatalf("AuditBatchCancel: %v", err)
	}
	events := auditWhere(t, s.DB(), `request_id = $1`, open.ID)
	if len(events) != 2 || events[1].Kind != string(lethe.AuditCancelRequested) || events[1].Actor != "oidc:admin" {
		t.Errorf("events = %+v, want received then cancel_requested by oidc:admin", events)
	}
	wantCode(t, s.AuditBatchCancel(ctx, done.ID, "oidc:admin"), lethe.KindConflict, "already_finished")
	if events := auditWhere(t, s.DB(), `request_id = $1`, done.ID); len(events) != 1 {
		t.Errorf("a refused cancel wrote events: %+v", events)
	}
	for _, id := range []string{uuid.NewString(), "nope"} {
		wantCode(t, s.AuditBatchCancel(ctx, id, "oidc:admin"), lethe.KindNotFound, "batch_not_found")
	}
	verifyIntact(t, s)
}
