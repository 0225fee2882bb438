package registry_test

import (
	"math"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
)

// TestSystemStats: a system's stats count its open commands of running
// requests only, its failures of the last 24 hours only, and take the
// confirmation percentiles from first dispatch to confirmation over the
// last week, ignoring other systems.
func TestSystemStats(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	for _, name := range []string{"crm", "billing"} {
		if _, _, err := s.PutSystem(ctx, lethe.System{Name: name, Identifiers: []string{"user_id"}}, ops); err != nil {
			t.Fatal(err)
		}
	}
	empty, err := s.SystemStats(ctx, "crm")
	if err != nil {
		t.Fatal(err)
	}
	if empty.OpenCommands != 0 || empty.Confirmations != 0 || empty.ConfirmationP50Seconds != nil || empty.LastConfirmationAt != nil {
		t.Errorf("stats of a system never asked = %+v, want zeros and nils", empty)
	}

	// The ledger stamps each write with the store's clock: request sets it
	// to the time of each step, then back to now.
	now := clk.Now()
	setClock := func(at time.Time) { clk.Advance(at.Sub(clk.Now())) }
	defer setClock(now)
	// request runs one step for crm and billing: dispatched at its
	// creation, then the given crm outcome after took.
	request := func(at time.Time, crm lethe.SystemStatus, took time.Duration, status lethe.RequestStatus) {
		t.Helper()
		defer setClock(now)
		setClock(at)
		e := create(t, s, newErasure(at))
		dispatched := lethe.LedgerDelta{Status: lethe.RequestRunning,
			Systems: []lethe.SystemProgress{{Name: "crm", Status: lethe.SystemDispatched, Attempts: 1},
				{Name: "billing", Status: lethe.SystemDispatched, Attempts: 1}},
			Events: []lethe.AuditEvent{{Kind: lethe.AuditDispatched, System: "crm", Attempt: 1, At: at},
				{Kind: lethe.AuditDispatched, System: "billing", Attempt: 1, At: at}}}
		if err := s.ApplyLedger(ctx, e.ID, dispatched); err != nil {
			t.Fatal(err)
		}
		if crm == lethe.SystemDispatched {
			return
		}
		done := at.Add(took)
		setClock(done)
		p := lethe.SystemProgress{Name: "crm", Status: crm, Attempts: 1}
		if crm != lethe.SystemFailed {
			p.ConfirmedAt = &done
		}
		// billing confirms in an hour every time: it must not move crm's figures.
		billingDone := at.Add(time.Hour)
		d := lethe.LedgerDelta{Status: status,
			Systems: []lethe.SystemProgress{p, {Name: "billing", Status: lethe.SystemErased, Attempts: 1, ConfirmedAt: &billingDone}}}
		if status.Final() {
			d.CompletedAt = &done
		}
		if err := s.ApplyLedger(ctx, e.ID, d); err != nil {
			t.Fatal(err)
		}
	}

	// Eight days ago: a confirmation outside the window, and a failure
	// outside the last 24 hours.
	request(clk.Now().Add(-8*24*time.Hour), lethe.SystemErased, time.Hour, lethe.RequestCompleted)
	request(clk.Now().Add(-8*24*time.Hour), lethe.SystemFailed, 0, lethe.RequestFailed)
	// Within the week: confirmations after 10, 20, 30 and 40 seconds.
	for i, took := range []time.Duration{10, 20, 30, 40} {
		request(clk.Now().Add(-time.Duration(i+1)*time.Hour), lethe.SystemErased, took*time.Second, lethe.RequestCompleted)
	}
	// Today: one failure, two commands still open, one of a canceled
	// request that no longer counts.
	request(clk.Now().Add(-2*time.Hour), lethe.SystemFailed, 0, lethe.RequestFailed)
	request(clk.Now().Add(-time.Minute), lethe.SystemDispatched, 0, lethe.RequestRunning)
	request(clk.Now().Add(-time.Minute), lethe.SystemDispatched, 0, lethe.RequestRunning)
	canceled := create(t, s, newErasure(clk.Now()))
	if err := s.ApplyLedger(ctx, canceled.ID, lethe.LedgerDelta{Status: lethe.RequestCanceled, CompletedAt: ptr(clk.Now()),
		Systems: []lethe.SystemProgress{{Name: "crm", Status: lethe.SystemDispatched, Attempts: 1}}}); err != nil {
		t.Fatal(err)
	}

	st, err := s.SystemStats(ctx, "crm")
	if err != nil {
		t.Fatal(err)
	}
	if st.System != "crm" || st.OpenCommands != 2 || st.FailedLast24h != 1 || st.Confirmations != 4 {
		t.Errorf("stats = %+v, want 2 open, 1 failed in 24h, 4 confirmations in the window", st)
	}
	// percentile_cont interpolates: the median of 10..40 s is 25 s, the
	// 95th percentile 38.5 s.
	if st.ConfirmationP50Seconds == nil || math.Abs(*st.ConfirmationP50Seconds-25) > 1e-6 ||
		st.ConfirmationP95Seconds == nil || math.Abs(*st.ConfirmationP95Seconds-38.5) > 1e-6 {
		t.Errorf("percentiles = %v, %v; want 25 s and 38.5 s", deref(st.ConfirmationP50Seconds), deref(st.ConfirmationP95Seconds))
	}
	if want := clk.Now().Add(-time.Hour).Add(10 * time.Second); st.LastConfirmationAt == nil || !st.LastConfirmationAt.Equal(want) {
		t.Errorf("last confirmation = %v, want %v", st.LastConfirmationAt, want)
	}
	if time.Duration(st.Window) != lethe.StatsWindow {
		t.Errorf("window = %v, want %v", st.Window, lethe.StatsWindow)
	}

	if _, err := s.SystemStats(ctx, "nobody"); err == nil {
		t.Error("stats of an unknown system answered")
	} else {
		wantCode(t, err, lethe.KindNotFound, "system_not_found")
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
