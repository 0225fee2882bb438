package registry_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/lethe-dev/lethe"
)

func TestApplyLedgerStatus(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	finished := t0.Add(3 * time.Hour)

	tests := []struct {
		name          string
		from          []lethe.LedgerDelta // applied first, to reach the starting status
		delta         lethe.LedgerDelta
		wantStatus    lethe.RequestStatus
		wantCompleted *time.Time
	}{
		{
			name:       "pending to running",
			delta:      lethe.LedgerDelta{Status: lethe.RequestRunning},
			wantStatus: lethe.RequestRunning,
		},
		{
			name:          "running to completed at the given time",
			from:          []lethe.LedgerDelta{{Status: lethe.RequestRunning}},
			delta:         lethe.LedgerDelta{Status: lethe.RequestCompleted, CompletedAt: &finished},
			wantStatus:    lethe.RequestCompleted,
			wantCompleted: &finished,
		},
		{
			name:          "failed without a time takes the clock's",
			delta:         lethe.LedgerDelta{Status: lethe.RequestFailed},
			wantStatus:    lethe.RequestFailed,
			wantCompleted: ptr(t0.Add(time.Hour)),
		},
		{
			name:          "completed never goes back to running",
			from:          []lethe.LedgerDelta{{Status: lethe.RequestCompleted, CompletedAt: &finished}},
			delta:         lethe.LedgerDelta{Status: lethe.RequestRunning},
			wantStatus:    lethe.RequestCompleted,
			wantCompleted: &finished,
		},
		{
			name:          "canceled is not overwritten by a late completion",
			from:          []lethe.LedgerDelta{{Status: lethe.RequestCanceled, CompletedAt: &finished}},
			delta:         lethe.LedgerDelta{Status: lethe.RequestCompleted, CompletedAt: ptr(finished.Add(time.Hour))},
			wantStatus:    lethe.RequestCanceled,
			wantCompleted: &finished,
		},
		{
			name:       "no status leaves it",
			from:       []lethe.LedgerDelta{{Status: lethe.RequestRunning}},
			delta:      lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditPlanned}}},
			wantStatus: lethe.RequestRunning,
		},
	}
	clk.Advance(time.Hour)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newErasure(t0)
			create(t, s, in)
			for _, d := range append(tt.from, tt.delta) {
				if err := s.ApplyLedger(ctx, in.ID, d); err != nil {
					t.Fatalf("ApplyLedger(%+v): %v", d, err)
				}
			}
			got, err := s.GetErasure(ctx, in.ID)
			if err != nil {
				t.Fatalf("GetErasure: %v", err)
			}
			if got.Status != tt.wantStatus {
				t.Errorf("status = %s, want %s", got.Status, tt.wantStatus)
			}
			if !reflect.DeepEqual(got.CompletedAt, tt.wantCompleted) {
				t.Errorf("completed_at = %v, want %v", got.CompletedAt, tt.wantCompleted)
			}
		})
	}
}

func TestApplyLedgerFinalRequestStillRecordsHistory(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	create(t, s, in)
	if err := s.ApplyLedger(ctx, in.ID, lethe.LedgerDelta{Status: lethe.RequestCanceled}); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	late := lethe.LedgerDelta{
		Status:  lethe.RequestCompleted,
		Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 2}},
		Events:  []lethe.AuditEvent{{System: "orders", Kind: lethe.AuditConfirmationLate, Attempt: 1, At: t0}},
	}
	if err := s.ApplyLedger(ctx, in.ID, late); err != nil {
		t.Fatalf("late delta: %v", err)
	}
	got, err := s.GetErasure(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != lethe.RequestCanceled || len(got.Systems) != 1 {
		t.Errorf("after a late delta: status %s with %d systems, want canceled with 1", got.Status, len(got.Systems))
	}
	events, err := s.Audit(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if last := events[len(events)-1]; last.Kind != lethe.AuditConfirmationLate {
		t.Errorf("last event = %s, want %s", last.Kind, lethe.AuditConfirmationLate)
	}
}

func TestApplyLedgerSystems(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	create(t, s, in)
	confirmed := t0.Add(90 * time.Second)

	steps := []struct {
		name  string
		delta []lethe.SystemProgress
		want  []lethe.SystemProgress
	}{
		{
			name: "insert",
			delta: []lethe.SystemProgress{
				{Name: "orders", Status: lethe.SystemPending},
				{Name: "crm", Status: lethe.SystemDispatched, Attempts: 1},
			},
			want: []lethe.SystemProgress{
				{Name: "crm", Status: lethe.SystemDispatched, Attempts: 1},
				{Name: "orders", Status: lethe.SystemPending},
			},
		},
		{
			name: "update one, keep the other",
			delta: []lethe.SystemProgress{
				{Name: "orders", Status: lethe.SystemRetained, Attempts: 2, Records: 4, ConfirmedAt: &confirmed, Detail: "tax law: 10 years"},
			},
			want: []lethe.SystemProgress{
				{Name: "crm", Status: lethe.SystemDispatched, Attempts: 1},
				{Name: "orders", Status: lethe.SystemRetained, Attempts: 2, Records: 4, ConfirmedAt: &confirmed, Detail: "tax law: 10 years"},
			},
		},
		{
			name: "the later entry of a system wins within a batch",
			delta: []lethe.SystemProgress{
				{Name: "crm", Status: lethe.SystemFailed, Attempts: 5},
				{Name: "crm", Status: lethe.SystemErased, Attempts: 2, ConfirmedAt: &confirmed},
			},
			want: []lethe.SystemProgress{
				{Name: "crm", Status: lethe.SystemErased, Attempts: 2, ConfirmedAt: &confirmed},
				{Name: "orders", Status: lethe.SystemRetained, Attempts: 2, Records: 4, ConfirmedAt: &confirmed, Detail: "tax law: 10 years"},
			},
		},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if err := s.ApplyLedger(ctx, in.ID, lethe.LedgerDelta{Systems: step.delta}); err != nil {
				t.Fatalf("ApplyLedger: %v", err)
			}
			got, err := s.GetErasure(ctx, in.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Systems, step.want) {
				t.Errorf("systems = %+v\nwant %+v", got.Systems, step.want)
			}
		})
	}

	t.Run("an unknown system status is refused whole", func(t *testing.T) {
		err := s.ApplyLedger(ctx, in.ID, lethe.LedgerDelta{
			Status:  lethe.RequestRunning,
			Systems: []lethe.SystemProgress{{Name: "billing", Status: "gone"}},
		})
		wantCode(t, err, lethe.KindInvalid, "invalid_system_status")
		got, _ := s.GetErasure(ctx, in.ID)
		if got.Status != lethe.RequestPending {
			t.Errorf("status = %s after a refused delta, want it unchanged (pending)", got.Status)
		}
	})
}

func TestApplyLedgerEventsInOrder(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	create(t, s, in)
	clk.Advance(time.Minute)

	// Enough events that a row-by-row insert would show, in an order that
	// is neither by kind nor by time.
	var events []lethe.AuditEvent
	for i := range 500 {
		events = append(events, lethe.AuditEvent{
			RequestID: "ignored: the delta's request wins",
			System:    fmt.Sprintf("sys-%03d", 499-i),
			Kind:      []lethe.AuditKind{lethe.AuditDispatched, lethe.AuditConfirmed, lethe.AuditPlanned}[i%3],
			Attempt:   i,
			Detail:    fmt.Sprintf("event %d", i),
			At:        t0.Add(time.Duration(500-i) * time.Millisecond),
		})
	}
	events[7].At = time.Time{} // takes the clock
	if err := s.ApplyLedger(ctx, in.ID, lethe.LedgerDelta{Events: events}); err != nil {
		t.Fatalf("ApplyLedger: %v", err)
	}

	got, err := s.Audit(ctx, in.ID)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	want := []lethe.AuditEvent{{RequestID: in.ID, Kind: lethe.AuditReceived, At: t0}}
	for _, e := range events {
		e.RequestID = in.ID
		if e.At.IsZero() {
			e.At = t0.Add(time.Minute)
		}
		want = append(want, e)
	}
	if len(got) != len(want) {
		t.Fatalf("Audit has %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("event %d = %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestApplyLedgerUnknownRequest(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	delta := lethe.LedgerDelta{
		Status: lethe.RequestRunning,
		Events: []lethe.AuditEvent{{Kind: lethe.AuditPlanned}},
	}
	for _, id := range []string{uuid.NewString(), "erasure-123"} {
		wantCode(t, s.ApplyLedger(ctx, id, delta), lethe.KindNotFound, "erasure_not_found")
	}
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("audit_events has %d rows after deltas for unknown requests, want 0", n)
	}
}

func TestAppendAudit(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	known := newErasure(t0)
	create(t, s, known)
	forged := uuid.NewString()
	clk.Advance(time.Second)

	err := s.AppendAudit(ctx, []lethe.AuditEvent{
		{RequestID: forged, System: "orders", Kind: lethe.AuditConfirmationRejected, Detail: "unknown command_id", At: t0},
		{RequestID: known.ID, System: "orders", Kind: lethe.AuditConfirmationRejected, Detail: "system mismatch"},
	})
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}

	tests := []struct {
		name string
		id   string
		want []lethe.AuditEvent
	}{
		{"a request id nobody created", forged, []lethe.AuditEvent{
			{RequestID: forged, System: "orders", Kind: lethe.AuditConfirmationRejected, Detail: "unknown command_id", At: t0},
		}},
		{"a real request, after its received event", known.ID, []lethe.AuditEvent{
			{RequestID: known.ID, Kind: lethe.AuditReceived, At: t0},
			{RequestID: known.ID, System: "orders", Kind: lethe.AuditConfirmationRejected, Detail: "system mismatch", At: t0.Add(time.Second)},
		}},
		{"an id with no events", uuid.NewString(), []lethe.AuditEvent{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Audit(ctx, tt.id)
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Audit = %+v\nwant %+v", got, tt.want)
			}
		})
	}

	t.Run("a request id that is not a UUID is refused", func(t *testing.T) {
		err := s.AppendAudit(ctx, []lethe.AuditEvent{{RequestID: "<script>", Kind: lethe.AuditConfirmationRejected}})
		wantCode(t, err, lethe.KindInvalid, "invalid_request_id")
	})
	t.Run("nothing to append", func(t *testing.T) {
		if err := s.AppendAudit(ctx, nil); err != nil {
			t.Errorf("AppendAudit(nil) = %v, want nil", err)
		}
	})
}

func TestAuditIsAppendOnly(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	create(t, s, in)

	for _, stmt := range []string{
		`UPDATE audit_events SET detail = 'rewritten'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
	} {
		t.Run(stmt, func(t *testing.T) {
			_, err := s.DB().ExecContext(ctx, stmt)
			if pq.As(err, pqerror.RaiseException) == nil {
				t.Errorf("err = %v, want the trigger's exception (P0001)", err)
			}
		})
	}
	events, err := s.Audit(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Detail != "" {
		t.Errorf("audit after the attempts = %+v, want the one untouched received event", events)
	}
}

// TestApplyLedgerRerunAddsOnlyNewEvents is a workflow task run again with
// a signal its first attempt had not seen: its batch has the same number
// and other contents, and only what the signal added reaches the audit.
// Equal events are counted, and another number is another batch.
func TestApplyLedgerRerunAddsOnlyNewEvents(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	e := create(t, s, newErasure(t0))
	ev := func(kind lethe.AuditKind, system string, at time.Duration) lethe.AuditEvent {
		return lethe.AuditEvent{Kind: kind, System: system, Attempt: 1, Detail: "d", At: t0.Add(at)}
	}
	rejected := lethe.AuditEvent{Kind: lethe.AuditConfirmationRejected, Detail: "unknown command_id", At: t0}
	first := lethe.LedgerDelta{Batch: "3/aaaa", Events: []lethe.AuditEvent{
		ev(lethe.AuditDispatched, "crm", 0), ev(lethe.AuditConfirmed, "crm", 0), rejected}}
	// Run again a second later, with billing's confirmation and a second
	// rejected confirmation taken in too.
	again := lethe.LedgerDelta{Batch: "3/bbbb", Events: []lethe.AuditEvent{
		ev(lethe.AuditDispatched, "crm", time.Second), ev(lethe.AuditConfirmed, "crm", time.Second),
		ev(lethe.AuditConfirmed, "billing", time.Second), rejected, rejected}}
	later := lethe.LedgerDelta{Batch: "4/cccc", Events: []lethe.AuditEvent{rejected}}
	for _, d := range []lethe.LedgerDelta{first, again, again, later} {
		if err := s.ApplyLedger(ctx, e.ID, d); err != nil {
			t.Fatal(err)
		}
	}
	audit, err := s.Audit(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, a := range audit {
		count[string(a.Kind)+" "+a.System]++
	}
	want := map[string]int{
		"received ": 1, "dispatched crm": 1, "confirmed crm": 1, "confirmed billing": 1,
		// Two in batch 3 (one in each attempt's contents beyond the first's), one in batch 4.
		"confirmation_rejected ": 3,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%q recorded %d times, want %d (audit %v)", k, count[k], n, count)
		}
	}
	if len(count) != len(want) {
		t.Errorf("audit kinds %v, want %v", count, want)
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.Intact() {
		t.Errorf("the chain does not verify after filtered inserts: %+v, %v", v.Broken, err)
	}
}
