package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

const day = 24 * time.Hour

func TestHappyPathThreeSystems(t *testing.T) {
	w := newWorld(t,
		target("billing", 72*time.Hour, "email"),
		target("crm", 72*time.Hour, "user_id", "email"),
		target("orders", 72*time.Hour, "user_id"),
	)
	w.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{
			w.answer("orders", wire.OutcomeErased, 3),
			w.answer("crm", wire.OutcomeNotFound, 0),
		}
	})
	w.confirmAt(2*time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("billing", wire.OutcomeRetained, 7)}
	})

	if err := w.run(input(id("user_id", "u-123"), id("email", "ada@example.com"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}

	if got := w.planCalls(); len(got) != 1 || !slices.Equal(got[0], []string{"email", "user_id"}) {
		t.Errorf("plan calls %v, want one with [email user_id]", got)
	}
	status, completedAt := w.finalStatus()
	if status != lethe.RequestCompleted {
		t.Errorf("ledger status %q, want completed", status)
	}
	if want := testStart.Add(2 * time.Minute); completedAt == nil || !completedAt.Equal(want) {
		t.Errorf("completed_at %v, want %v", completedAt, want)
	}
	e := w.query()
	if e.Status != lethe.RequestCompleted || e.CompletedAt == nil {
		t.Errorf("query status %q completed_at %v, want completed with a time", e.Status, e.CompletedAt)
	}
	want := map[string]struct {
		status  lethe.SystemStatus
		records int64
	}{
		"billing": {lethe.SystemRetained, 7},
		"crm":     {lethe.SystemNotFound, 0},
		"orders":  {lethe.SystemErased, 3},
	}
	if len(e.Systems) != len(want) {
		t.Fatalf("query lists %d systems, want %d", len(e.Systems), len(want))
	}
	ledger := w.ledgerSystems()
	for i, p := range e.Systems {
		if i > 0 && e.Systems[i-1].Name >= p.Name {
			t.Errorf("systems not sorted by name: %q before %q", e.Systems[i-1].Name, p.Name)
		}
		wt := want[p.Name]
		if p.Status != wt.status || p.Records != wt.records || p.Attempts != 1 || p.ConfirmedAt == nil {
			t.Errorf("system %s: got %+v, want status %s records %d attempts 1 with confirmed_at", p.Name, p, wt.status, wt.records)
		}
		if l := ledger[p.Name]; l.Status != p.Status || l.Records != p.Records {
			t.Errorf("ledger has %s as %+v, query as %+v", p.Name, l, p)
		}
	}
	if d := progressByName(e)["billing"].Detail; !strings.Contains(d, "HGB") {
		t.Errorf("billing detail %q, want the legal basis", d)
	}
	if n := len(w.eventsOf(lethe.AuditCompleted)); n != 1 {
		t.Errorf("%d completed events, want 1", n)
	}
	if n := len(w.eventsOf(lethe.AuditDispatched)); n != 3 {
		t.Errorf("%d dispatched events, want 3", n)
	}
	if n := len(w.eventsOf(lethe.AuditConfirmed)); n != 3 {
		t.Errorf("%d confirmed events, want 3", n)
	}
	if got := w.eventsOf(lethe.AuditPlanned); len(got) != 1 || w.events()[0].Kind != lethe.AuditPlanned {
		t.Errorf("planned events %+v, want one, first", got)
	}
	// The setup is one wave: one Sync with the three commands and the ledger.
	first := w.syncCalls()[0]
	if len(first.Commands) != 3 || first.Ledger.Status != lethe.RequestRunning || len(first.Ledger.Systems) != 3 {
		t.Errorf("first sync has %d commands, status %q, %d systems; want 3, running, 3",
			len(first.Commands), first.Ledger.Status, len(first.Ledger.Systems))
	}
	for _, o := range w.published() {
		c := o.Command
		if err := c.Validate(); err != nil {
			t.Errorf("command to %s breaks the contract: %v", c.System, err)
		}
		if o.Topic != wire.DefaultTopic(c.System) || c.Attempt != 1 || !c.IssuedAt.Equal(testStart) ||
			!c.ConfirmBy.Equal(testStart.Add(72*time.Hour)) || c.DryRun {
			t.Errorf("command to %s: topic %q attempt %d issued %v confirm_by %v dry_run %v",
				c.System, o.Topic, c.Attempt, c.IssuedAt, c.ConfirmBy, c.DryRun)
		}
	}
	assertNoValues(t, w, "u-123", "ada@example.com")
}

func TestNoMatchingSystemCompletesEmpty(t *testing.T) {
	w := newWorld(t, target("orders", day, "user_id"))
	if err := w.run(input(id("phone", "+441234"))); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	syncs := w.syncCalls()
	if len(syncs) != 1 {
		t.Fatalf("%d Sync calls, want 1", len(syncs))
	}
	s := syncs[0]
	if len(s.Commands) != 0 || s.Ledger.Status != lethe.RequestCompleted || s.Ledger.CompletedAt == nil {
		t.Errorf("sync %+v, want no commands, status completed with completed_at", s)
	}
	kinds := []lethe.AuditKind{}
	for _, e := range s.Ledger.Events {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []lethe.AuditKind{lethe.AuditPlanned, lethe.AuditCompleted}) {
		t.Errorf("events %v, want [planned completed]", kinds)
	}
	e := w.query()
	if e.Status != lethe.RequestCompleted || len(e.Systems) != 0 {
		t.Errorf("query status %q with %d systems, want completed with none", e.Status, len(e.Systems))
	}
}

func TestInvalidInputFails(t *testing.T) {
	tests := []struct {
		name string
		in   ErasureInput
	}{
		{"no request id", ErasureInput{Subject: []wire.Identifier{id("user_id", "u-123")}}},
		{"no subject", ErasureInput{RequestID: testRequestID}},
		{"bad type", ErasureInput{RequestID: testRequestID, Subject: []wire.Identifier{id("User ID", "u-123")}}},
		{"empty value", ErasureInput{RequestID: testRequestID, Subject: []wire.Identifier{id("user_id", "")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, target("orders", day, "user_id"))
			err := w.run(tt.in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != "InvalidInput" {
				t.Errorf("error %v, want an InvalidInput application error", err)
			}
			if strings.Contains(fmt.Sprint(err), "u-123") {
				t.Errorf("error %q contains an identifier value", err)
			}
			if n := len(w.syncCalls()); n != 0 {
				t.Errorf("%d Sync calls, want none", n)
			}
		})
	}
}

func TestFeaturesOfRevision(t *testing.T) {
	tests := []struct {
		revision int
		want     features
	}{
		{0, features{}},
		{RevisionSettledSearch, features{settledSearch: true}},
		{RevisionOverdueAfterHold, features{settledSearch: true, overdueAfterHold: true}},
		{RevisionSettledLedger, features{settledSearch: true, overdueAfterHold: true, settledLedger: true}},
		{RevisionRegularRetries, features{settledSearch: true, overdueAfterHold: true, settledLedger: true,
			regularRetries: true, partialDispatch: true}},
		{RevisionNothingDropped, features{settledSearch: true, overdueAfterHold: true, settledLedger: true,
			regularRetries: true, partialDispatch: true,
			drainAll: true, awaitEscalations: true, failedLedger: true, receiveAsync: true}},
		{RevisionStableNames, features{settledSearch: true, overdueAfterHold: true, settledLedger: true,
			regularRetries: true, partialDispatch: true,
			drainAll: true, awaitEscalations: true, failedLedger: true, receiveAsync: true, stableNames: true}},
		{RevisionWakeCarriedHolds, features{settledSearch: true, overdueAfterHold: true, settledLedger: true,
			regularRetries: true, partialDispatch: true,
			drainAll: true, awaitEscalations: true, failedLedger: true, receiveAsync: true, stableNames: true,
			wakeCarriedHolds: true}},
		{RevisionRetry, features{settledSearch: true, overdueAfterHold: true, settledLedger: true,
			regularRetries: true, partialDispatch: true,
			drainAll: true, awaitEscalations: true, failedLedger: true, receiveAsync: true, stableNames: true,
			wakeCarriedHolds: true, retry: true}},
		{RevisionOrdered, features{settledSearch: true, overdueAfterHold: true, settledLedger: true,
			regularRetries: true, partialDispatch: true,
			drainAll: true, awaitEscalations: true, failedLedger: true, receiveAsync: true, stableNames: true,
			wakeCarriedHolds: true, retry: true, ordered: true}},
	}
	for _, tt := range tests {
		if got := featuresOf(tt.revision); got != tt.want {
			t.Errorf("featuresOf(%d) = %+v, want %+v", tt.revision, got, tt.want)
		}
	}
}

func TestUnknownRevisionFailsTheTask(t *testing.T) {
	w := newWorld(t, target("crm", day, "email"))
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision + 1
	err := w.run(in)
	// A panic fails the workflow task: the test environment reports it as
	// the workflow's error, a worker retries the task.
	var panicked *temporal.PanicError
	if !errors.As(err, &panicked) || !strings.Contains(panicked.Error(), "upgrade the worker") {
		t.Fatalf("workflow error %v, want a panic that asks for a worker upgrade", err)
	}
	if n := len(w.syncCalls()) + len(w.planCalls()); n != 0 {
		t.Errorf("%d activities ran at an unknown revision, want none", n)
	}
	w.mu.Lock()
	logs := w.logs.String()
	w.mu.Unlock()
	if !strings.Contains(logs, "revision this worker does not know") {
		t.Errorf("no log line names the unknown revision:\n%s", logs)
	}
}
