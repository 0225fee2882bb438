package workflows

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

func TestSystemProgressAggregatesCommands(t *testing.T) {
	w := &erasure{bySystem: map[string][]*CommandState{}}
	t1, t2 := testStart.Add(time.Minute), testStart.Add(2*time.Minute)
	tests := []struct {
		name string
		cmds []CommandState
		want lethe.SystemProgress
	}{
		{"open wins", []CommandState{
			{Status: lethe.SystemFailed, Attempt: 3, Detail: "boom", ChangedAt: t1},
			{Status: lethe.SystemDispatched, Attempt: 1, ChangedAt: t2},
		}, lethe.SystemProgress{Status: lethe.SystemDispatched, Attempts: 3, Detail: "boom"}},
		{"failed over erased", []CommandState{
			{Status: lethe.SystemErased, Attempt: 1, Records: 2, ConfirmedAt: &t2, ChangedAt: t2},
			{Status: lethe.SystemFailed, Attempt: 2, Detail: "no confirmation after 2 attempts", ChangedAt: t1},
		}, lethe.SystemProgress{Status: lethe.SystemFailed, Attempts: 2, Records: 2, ConfirmedAt: &t2,
			Detail: "no confirmation after 2 attempts"}},
		{"erased over retained", []CommandState{
			{Status: lethe.SystemRetained, Attempt: 1, Records: 1, Detail: "tax law", ConfirmedAt: &t1, ChangedAt: t1},
			{Status: lethe.SystemErased, Attempt: 2, Records: 4, ConfirmedAt: &t2, ChangedAt: t2},
		}, lethe.SystemProgress{Status: lethe.SystemErased, Attempts: 2, Records: 5, ConfirmedAt: &t2, Detail: "tax law"}},
		{"retained over not_found", []CommandState{
			{Status: lethe.SystemNotFound, Attempt: 1, ConfirmedAt: &t2, ChangedAt: t2},
			{Status: lethe.SystemRetained, Attempt: 1, Detail: "tax law", ConfirmedAt: &t1, ChangedAt: t1},
		}, lethe.SystemProgress{Status: lethe.SystemRetained, Attempts: 1, ConfirmedAt: &t2, Detail: "tax law"}},
		{"latest detail", []CommandState{
			{Status: lethe.SystemNotFound, Attempt: 1, Detail: "older", ChangedAt: t1},
			{Status: lethe.SystemNotFound, Attempt: 1, Detail: "newer", ChangedAt: t2},
		}, lethe.SystemProgress{Status: lethe.SystemNotFound, Attempts: 1, Detail: "newer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := strings.ReplaceAll(tt.name, " ", "_")
			for i := range tt.cmds {
				tt.cmds[i].System = name
				w.bySystem[name] = append(w.bySystem[name], &tt.cmds[i])
			}
			got := w.progress(name)
			tt.want.Name = name
			if got.Name != tt.want.Name || got.Status != tt.want.Status || got.Attempts != tt.want.Attempts ||
				got.Records != tt.want.Records || got.Detail != tt.want.Detail ||
				(got.ConfirmedAt == nil) != (tt.want.ConfirmedAt == nil) ||
				(got.ConfirmedAt != nil && !got.ConfirmedAt.Equal(*tt.want.ConfirmedAt)) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestQueryLivePicture(t *testing.T) {
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 3)}
	})
	queried := false
	w.at(2*time.Minute, func() {
		queried = true
		e := w.query()
		if e.ID != testRequestID || e.WorkflowID != ErasureWorkflowID(testRequestID) {
			t.Errorf("query id %q workflow %q, want %q and %q", e.ID, e.WorkflowID, testRequestID, ErasureWorkflowID(testRequestID))
		}
		if e.Status != lethe.RequestRunning || e.CompletedAt != nil || e.Overdue {
			t.Errorf("query status %q completed_at %v overdue %v, want running, none, false", e.Status, e.CompletedAt, e.Overdue)
		}
		if !e.CreatedAt.Equal(testStart) || !e.Deadline.Equal(testStart.Add(lethe.DefaultDeadline)) {
			t.Errorf("query created %v deadline %v", e.CreatedAt, e.Deadline)
		}
		if !slices.Equal(e.SubjectTypes, []string{"email", "user_id"}) {
			t.Errorf("subject types %v, want [email user_id]", e.SubjectTypes)
		}
		ps := progressByName(e)
		if p := ps["orders"]; p.Status != lethe.SystemErased || p.Records != 3 {
			t.Errorf("orders %+v, want erased with 3 records", p)
		}
		if p := ps["billing"]; p.Status != lethe.SystemDispatched || p.Attempts != 1 {
			t.Errorf("billing %+v, want dispatched, attempt 1", p)
		}
	})
	w.at(31*day, func() {
		if e := w.query(); !e.Overdue {
			t.Errorf("past the deadline the query says overdue=false")
		}
	})
	w.confirmAt(32*day, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeErased, 1)}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Policy.MaxAttempts = 100
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if !queried {
		t.Fatal("the mid-flight query never ran")
	}
}

// listColumns is what one upsert wrote to the list columns.
type listColumns struct {
	status           string
	pending, systems int64
}

// upsertedColumns returns the list columns of every upsert and when each
// was made, in workflow time since the start.
func (w *world) upsertedColumns() ([]listColumns, []time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var cols []listColumns
	var at []time.Duration
	for i, u := range w.upserts {
		status, _ := u.GetKeyword(SearchStatus)
		pending, _ := u.GetInt64(SearchPending)
		systems, _ := u.GetInt64(SearchSystems)
		cols = append(cols, listColumns{status, pending, systems})
		at = append(at, w.upsertedAt[i].Sub(testStart))
	}
	return cols, at
}

// twoSystemsConfirmed runs a request to billing and orders, which confirm
// after first and second, under the given revision.
func twoSystemsConfirmed(t *testing.T, revision int, first, second time.Duration) *world {
	t.Helper()
	w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
	w.recordSearchAttributes()
	var erased wire.Confirmation
	w.confirmAt(first, func() []wire.Confirmation {
		erased = w.answer("orders", wire.OutcomeErased, 3)
		return []wire.Confirmation{erased}
	})
	// A duplicate changes nothing, so nothing is upserted.
	w.confirmAt(first+(second-first)/2, func() []wire.Confirmation { return []wire.Confirmation{erased} })
	w.confirmAt(second, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeErased, 1)}
	})
	in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
	in.Revision = revision
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	return w
}

func TestSearchAttributesUpsertedOnChange(t *testing.T) {
	// Revision 0, the first behaviour, kept for the workflows started under
	// it: the first task upserts at once.
	w := twoSystemsConfirmed(t, 0, time.Minute, 3*time.Minute)
	got, at := w.upsertedColumns()
	want := []listColumns{{"running", 2, 2}, {"running", 1, 2}, {"completed", 0, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("upserts %+v, want %+v", got, want)
	}
	if len(at) > 0 && at[0] != 0 {
		t.Errorf("first upsert at %v, want at the start", at[0])
	}
}

func TestSettledSearchQuickRequestUpsertsOnce(t *testing.T) {
	// Confirmed before it is DefaultSettle old, the request writes its list
	// columns once, in the task that closes it.
	w := twoSystemsConfirmed(t, RevisionSettledSearch, time.Second, 3*time.Second)
	got, at := w.upsertedColumns()
	want := []listColumns{{"completed", 0, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("upserts %+v, want %+v", got, want)
	}
	if len(at) == 1 && at[0] != 3*time.Second {
		t.Errorf("upsert at %v, want at the last confirmation (3s)", at[0])
	}
}

func TestSettledSearchSlowRequestUpsertsWhenSettled(t *testing.T) {
	// A request still open when it is DefaultSettle old writes its columns
	// then, without waiting for a confirmation, and on every change after.
	w := twoSystemsConfirmed(t, RevisionSettledSearch, time.Minute, 3*time.Minute)
	got, at := w.upsertedColumns()
	want := []listColumns{{"running", 2, 2}, {"running", 1, 2}, {"completed", 0, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("upserts %+v, want %+v", got, want)
	}
	wantAt := []time.Duration{DefaultSettle, time.Minute, 3 * time.Minute}
	if !slices.Equal(at, wantAt) {
		t.Errorf("upserts at %v, want %v", at, wantAt)
	}
}
