package workflows

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

// TestStopWritesFailed ends a run on a non-retryable activity error, at
// the first plan and at the plan of a derived identifier: the ledger must
// learn that the request failed, when and why, or the API shows it running
// (later overdue) for good and refuses to cancel it. The reason names the
// error type, never the error's message, which here quotes an identifier
// value.
func TestStopWritesFailed(t *testing.T) {
	leak := "ada@example.com"
	planErr := temporal.NewNonRetryableApplicationError("match systems: bad "+leak, activities.ErrTypeInvalid, nil)
	tests := []struct {
		name      string
		failAt    int
		published int
	}{
		{name: "first plan", failAt: 1, published: 0},
		{name: "derived plan", failAt: 2, published: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, target("accounts", day, "email"), target("billing", day, "user_id"))
			w.planErr = func(n int) error {
				if n == tt.failAt {
					return planErr
				}
				return nil
			}
			w.confirmAt(time.Minute, func() []wire.Confirmation {
				c := w.answer("accounts", wire.OutcomeErased, 1)
				c.DerivedIdentifiers = []wire.Identifier{id("user_id", "u-123")}
				return []wire.Confirmation{c}
			})
			in := input(id("email", leak))
			in.Revision = RevisionNothingDropped
			err := w.run(in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeInvalid {
				t.Fatalf("workflow error %v, want the plan's %s error", err, activities.ErrTypeInvalid)
			}
			status, at := w.finalStatus()
			if status != lethe.RequestFailed || at == nil {
				t.Fatalf("ledger status %q at %v, want failed with its time", status, at)
			}
			ev := w.eventsOf(lethe.AuditFailed)
			want := "stopped on a non-retryable lethe.invalid error; the worker log has the cause"
			if len(ev) != 1 || ev[0].Detail != want {
				t.Errorf("failed events %+v, want one saying %q", ev, want)
			}
			if n := len(w.published()); n != tt.published {
				t.Errorf("%d commands published, want %d", n, tt.published)
			}
			for i, s := range w.syncCalls() {
				b, err := json.Marshal(s.Ledger)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(b), leak) {
					t.Errorf("ledger write %d contains an identifier value: %s", i, b)
				}
			}
			if e := w.query(); e.Status != lethe.RequestFailed || e.CompletedAt == nil {
				t.Errorf("query status %q completed %v, want failed with its time", e.Status, e.CompletedAt)
			}
		})
	}
}

// TestStopBeforeRevision5WritesNoStatus keeps the behaviour the histories
// of earlier revisions recorded: the run fails without a final Sync.
func TestStopBeforeRevision5WritesNoStatus(t *testing.T) {
	w := newWorld(t, target("accounts", day, "email"))
	w.planErr = func(int) error {
		return temporal.NewNonRetryableApplicationError("match systems", activities.ErrTypeInvalid, nil)
	}
	in := input(id("email", "ada@example.com"))
	in.Revision = RevisionSettledLedger
	if err := w.run(in); err == nil {
		t.Fatal("workflow succeeded, want the plan's error")
	}
	if n := len(w.syncCalls()); n != 0 {
		t.Errorf("%d Syncs, want none", n)
	}
}

// TestResultSummary reads what the workflow returns when a request ends:
// its status, each system's outcome and the counts, and no identifier value.
func TestResultSummary(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"), target("mail", day, "email"))
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeErased, 4), w.answer("orders", wire.OutcomeRetained, 0),
			w.answer("mail", wire.OutcomeFailed, 0)}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Revision = RevisionNothingDropped
	if err := w.run(in); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	var got ErasureResult
	if err := w.env.GetWorkflowResult(&got); err != nil {
		t.Fatalf("workflow result: %v", err)
	}
	want := ErasureResult{
		Status: lethe.RequestFailed,
		Systems: []SystemOutcome{
			{Name: "billing", Status: lethe.SystemErased, Attempts: 1, Records: 4},
			{Name: "mail", Status: lethe.SystemFailed, Attempts: 1},
			{Name: "orders", Status: lethe.SystemRetained, Attempts: 1},
		},
		Counts: ResultCounts{Systems: 3, Erased: 1, Retained: 1, Failed: 1, Records: 4},
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("result %s, want %s", gotJSON, wantJSON)
	}
	for _, v := range []string{"u-123", "ada@example.com", "HGB"} {
		if strings.Contains(string(gotJSON), v) {
			t.Errorf("result %s contains %q", gotJSON, v)
		}
	}
}

// TestCancelRevision5 cancels a request of revision 5, whose listener
// waits on the signal channels: the cancellation must end the run as
// canceled, without the listener spinning on the canceled context.
func TestCancelRevision5(t *testing.T) {
	w := newWorld(t, target("orders", day, "user_id"))
	w.at(time.Hour, w.env.CancelWorkflow)
	w.at(time.Hour+time.Second, func() {
		w.env.SignalWorkflow(SignalExtend, ExtendSignal{Deadline: testStart.Add(60 * day)})
	})
	in := input(id("user_id", "u-123"))
	in.Revision = RevisionNothingDropped
	err := w.run(in)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("workflow error %v, want a cancellation", err)
	}
	if status, _ := w.finalStatus(); status != lethe.RequestCanceled {
		t.Errorf("ledger status %q, want canceled", status)
	}
}
