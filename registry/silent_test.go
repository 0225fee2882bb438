package registry_test

import (
	"maps"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
)

// TestCountSilentCommands: a command counts as silent when its request is
// open and its system has not answered for longer than the system's
// confirm_within since the command's dispatch, or since its redispatch
// after the system's last answer. A younger command, a confirmed one, one
// of a canceled request and one of a system with a longer confirm_within
// do not count.
func TestCountSilentCommands(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	for name, within := range map[string]time.Duration{"crm": time.Hour, "billing": 72 * time.Hour} {
		if _, _, err := s.PutSystem(ctx, lethe.System{Name: name, Identifiers: []string{"user_id"},
			ConfirmWithin: lethe.Duration(within)}, ops); err != nil {
			t.Fatal(err)
		}
	}
	none, err := s.CountSilentCommands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"crm": 0, "billing": 0}; !maps.Equal(none, want) {
		t.Errorf("silent commands of an empty ledger = %v, want %v", none, want)
	}

	now := clk.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	// request writes a request of the given status whose crm and billing
	// commands are dispatched at sent, with the crm events that follow.
	request := func(status lethe.RequestStatus, sent time.Time, crm lethe.SystemStatus, crmEvents ...lethe.AuditEvent) {
		t.Helper()
		e := create(t, s, newErasure(sent))
		d := lethe.LedgerDelta{Status: status,
			Systems: []lethe.SystemProgress{{Name: "crm", Status: crm, Attempts: 1},
				{Name: "billing", Status: lethe.SystemDispatched, Attempts: 1}},
			Events: append([]lethe.AuditEvent{{Kind: lethe.AuditDispatched, System: "crm", Attempt: 1, At: sent},
				{Kind: lethe.AuditDispatched, System: "billing", Attempt: 1, At: sent}}, crmEvents...)}
		if status.Final() {
			d.CompletedAt = &now
		}
		if err := s.ApplyLedger(ctx, e.ID, d); err != nil {
			t.Fatal(err)
		}
	}
	// Silent: dispatched two hours ago, no answer.
	request(lethe.RequestRunning, ago(2*time.Hour), lethe.SystemDispatched)
	// Not yet: dispatched half an hour ago.
	request(lethe.RequestRunning, ago(30*time.Minute), lethe.SystemDispatched)
	// Answered: confirmed after two hours and a half, late but not silent.
	request(lethe.RequestRunning, ago(3*time.Hour), lethe.SystemErased,
		lethe.AuditEvent{Kind: lethe.AuditConfirmed, System: "crm", Attempt: 1, At: ago(30 * time.Minute)})
	// A retryable failure four hours ago, then a redispatch: silent again
	// only when the redispatch is older than an hour.
	for _, redispatched := range []time.Duration{30 * time.Minute, 90 * time.Minute} {
		request(lethe.RequestRunning, ago(5*time.Hour), lethe.SystemDispatched,
			lethe.AuditEvent{Kind: lethe.AuditConfirmed, System: "crm", Attempt: 1, At: ago(4 * time.Hour)},
			lethe.AuditEvent{Kind: lethe.AuditRedispatched, System: "crm", Attempt: 2, At: ago(redispatched)})
	}
	// A canceled request's command no longer waits.
	request(lethe.RequestCanceled, ago(2*time.Hour), lethe.SystemDispatched)

	got, err := s.CountSilentCommands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"crm": 2, "billing": 0}; !maps.Equal(got, want) {
		t.Errorf("silent commands = %v, want %v", got, want)
	}

	// A retired system still reports its silent commands; without them it
	// leaves the gauge.
	for _, name := range []string{"crm", "billing"} {
		if err := s.RetireSystem(ctx, name, "token:ops"); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.CountSilentCommands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"crm": 2}; !maps.Equal(got, want) {
		t.Errorf("silent commands after both systems retired = %v, want %v", got, want)
	}
}
