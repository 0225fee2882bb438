package workflows

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

const retryActor = "token:ops"

// failed builds a failure of the latest command sent to system that it
// cannot retry.
func (w *world) failed(system string) wire.Confirmation {
	c := w.answer(system, wire.OutcomeFailed, 0)
	c.Detail = "the account store refused the delete"
	return c
}

// retryAt signals a retry order at d.
func (w *world) retryAt(d time.Duration, order RetrySignal) {
	w.at(d, func() { w.env.SignalWorkflow(SignalRetry, order) })
}

// carried runs the carry query on the world's workflow, run or closed.
func (w *world) carried() ErasureInput {
	w.t.Helper()
	v, err := w.env.QueryWorkflow(QueryCarry)
	if err != nil {
		w.t.Fatalf("query %s: %v", QueryCarry, err)
	}
	var in ErasureInput
	if err := v.Get(&in); err != nil {
		w.t.Fatalf("decode carried input: %v", err)
	}
	return in
}

func TestRetryRedispatchesAFailedSystem(t *testing.T) {
	w := newWorld(t, target("crm", 72*time.Hour, "email"), target("orders", 72*time.Hour, "email"))
	w.confirmAt(time.Minute, func() []wire.Confirmation { return []wire.Confirmation{w.failed("crm")} })
	w.retryAt(time.Hour, RetrySignal{Actor: retryActor})
	w.confirmAt(2*time.Hour, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("crm", wire.OutcomeErased, 3), w.answer("orders", wire.OutcomeErased, 1)}
	})
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.CommandSeed = "seed"
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	cmds := w.commandsTo("crm")
	if len(cmds) != 2 {
		t.Fatalf("%d commands to crm, want the first and the retry", len(cmds))
	}
	if cmds[1].CommandID != cmds[0].CommandID || cmds[1].Attempt != 2 {
		t.Errorf("retry sent command %s attempt %d, want the same command_id %s at attempt 2",
			cmds[1].CommandID, cmds[1].Attempt, cmds[0].CommandID)
	}
	if n := len(w.commandsTo("orders")); n != 1 {
		t.Errorf("%d commands to orders, want 1: the retry is for failed systems only", n)
	}
	var retried []lethe.AuditEvent
	for _, e := range w.eventsOf(lethe.AuditRedispatched) {
		if e.Actor == retryActor {
			retried = append(retried, e)
		}
	}
	if len(retried) != 1 || retried[0].System != "crm" || retried[0].Attempt != 2 {
		t.Errorf("redispatched events naming the actor: %+v, want one for crm at attempt 2", retried)
	}
	if st, _ := w.finalStatus(); st != lethe.RequestCompleted {
		t.Errorf("final status %s, want completed once crm confirmed its retry", st)
	}
	if p := w.ledgerSystems()["crm"]; p.Status != lethe.SystemErased || p.Records != 3 || p.Attempts != 2 {
		t.Errorf("crm in the ledger: %+v, want erased, 3 records, 2 attempts", p)
	}
	assertNoValues(t, w, "ada@example.com")
}

func TestRetryGivesAFreshBudget(t *testing.T) {
	w := newWorld(t, target("crm", time.Hour, "email"), target("orders", 72*time.Hour, "email"))
	// crm never answers: two attempts an hour apart, failed at 2h.
	w.retryAt(3*time.Hour, RetrySignal{Actor: retryActor, Systems: []string{"crm"}})
	w.confirmAt(10*time.Hour, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 1)}
	})
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.Policy.MaxAttempts = 2
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	cmds := w.commandsTo("crm")
	if len(cmds) != 4 {
		t.Fatalf("%d commands to crm, want 2 before the retry and 2 after", len(cmds))
	}
	for i, c := range cmds {
		if c.CommandID != cmds[0].CommandID || c.Attempt != i+1 {
			t.Errorf("command %d to crm: %s attempt %d, want %s attempt %d", i, c.CommandID, c.Attempt, cmds[0].CommandID, i+1)
		}
	}
	fails := w.eventsOf(lethe.AuditFailed)
	var crmFails int
	for _, e := range fails {
		if e.System == "crm" {
			crmFails++
			if !strings.Contains(e.Detail, "after 2 attempts") {
				t.Errorf("failure detail %q, want it to count the attempts of its budget (2)", e.Detail)
			}
		}
	}
	if crmFails != 2 {
		t.Errorf("crm failed %d times, want twice: before and after the retry", crmFails)
	}
	if st, _ := w.finalStatus(); st != lethe.RequestFailed {
		t.Errorf("final status %s, want failed", st)
	}
}

func TestRetryStartsAClosedRequestAgain(t *testing.T) {
	first := newWorld(t, target("crm", 72*time.Hour, "email"), target("orders", 72*time.Hour, "email"))
	first.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{first.failed("crm"), first.answer("orders", wire.OutcomeErased, 1)}
	})
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.CommandSeed = "seed"
	if err := first.run(in); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if st, _ := first.finalStatus(); st != lethe.RequestFailed {
		t.Fatalf("first run ended %s, want failed", st)
	}
	sent := first.latest("crm")

	again := first.carried()
	if again.State == nil || again.State.Status != lethe.RequestFailed {
		t.Fatalf("the closed run carries %+v, want its state, failed", again.State)
	}
	again.Retry = &RetrySignal{Actor: retryActor}
	second := newWorld(t, target("crm", 72*time.Hour, "email"), target("orders", 72*time.Hour, "email"))
	// An operator retries days later.
	second.env.SetStartTime(testStart.Add(48 * time.Hour))
	second.confirmAt(time.Minute, func() []wire.Confirmation {
		return []wire.Confirmation{second.answer("crm", wire.OutcomeErased, 2)}
	})
	if err := second.run(again); err != nil {
		t.Fatalf("second run: %v", err)
	}
	cmds := second.commandsTo("crm")
	if len(cmds) != 1 {
		t.Fatalf("the second run sent %d commands to crm, want 1", len(cmds))
	}
	got := cmds[0]
	if got.CommandID != sent.CommandID || got.Attempt != 2 || len(got.Identifiers) != 1 ||
		got.Identifiers[0] != id("email", "ada@example.com") {
		t.Errorf("retried command %s attempt %d to %v, want %s attempt 2 to the same identifier",
			got.CommandID, got.Attempt, got.Identifiers, sent.CommandID)
	}
	if out := second.published(); out[0].Topic != wire.DefaultTopic("crm") {
		t.Errorf("retried command published to %q, want crm's topic", out[0].Topic)
	}
	if n := len(second.commandsTo("orders")); n != 0 {
		t.Errorf("orders, erased before, was sent %d commands", n)
	}
	syncs := second.syncCalls()
	if syncs[0].Ledger.Status != lethe.RequestRunning {
		t.Errorf("the second run's first write sets status %q, want running", syncs[0].Ledger.Status)
	}
	if st, _ := second.finalStatus(); st != lethe.RequestCompleted {
		t.Errorf("the second run ended %s, want completed", st)
	}
	// The ledger names its batches apart from the first run's.
	names := map[string]bool{}
	for _, s := range first.syncCalls() {
		names[s.Ledger.Batch] = true
	}
	for _, s := range syncs {
		if s.Ledger.Batch != "" && names[s.Ledger.Batch] {
			t.Errorf("the second run reused ledger batch %q of the first", s.Ledger.Batch)
		}
	}
	assertNoValues(t, second, "ada@example.com")
}

func TestRetryAsTheRequestEnds(t *testing.T) {
	w := newWorld(t, target("crm", 72*time.Hour, "email"))
	w.confirmAt(time.Minute, func() []wire.Confirmation { return []wire.Confirmation{w.failed("crm")} })
	// The write of the failed end is refused a few times: its retries,
	// a second apart, keep the run in its end while the order comes.
	w.syncErr = func(in activities.SyncInput, n int) error {
		if in.Ledger.Status == lethe.RequestFailed && n <= localAttempts+1 {
			return errors.New("database busy")
		}
		return nil
	}
	w.retryAt(time.Minute+500*time.Millisecond, RetrySignal{Actor: retryActor})
	w.confirmAt(time.Hour, func() []wire.Confirmation { return []wire.Confirmation{w.answer("crm", wire.OutcomeErased, 1)} })
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var endedFailed bool
	for _, s := range w.syncCalls() {
		if s.Ledger.Status == lethe.RequestFailed {
			endedFailed = true
		}
	}
	if !endedFailed {
		t.Fatal("the request never wrote its failed end: the order came before it, not as it ended")
	}
	if n := len(w.commandsTo("crm")); n != 2 {
		t.Errorf("%d commands to crm, want the retry after the failed end", n)
	}
	if st, _ := w.finalStatus(); st != lethe.RequestCompleted {
		t.Errorf("final status %s, want completed: the run went on after its end", st)
	}
}

func TestRetryIgnoredBeforeItsRevision(t *testing.T) {
	w := newWorld(t, target("crm", 72*time.Hour, "email"), target("orders", 72*time.Hour, "email"))
	w.confirmAt(time.Minute, func() []wire.Confirmation { return []wire.Confirmation{w.failed("crm")} })
	w.retryAt(time.Hour, RetrySignal{Actor: retryActor})
	w.confirmAt(2*time.Hour, func() []wire.Confirmation {
		return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 1)}
	})
	in := input(id("email", "ada@example.com"))
	in.Revision = RevisionRetry - 1
	if err := w.run(in); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	if n := len(w.commandsTo("crm")); n != 1 {
		t.Errorf("%d commands to crm, want 1: a run before RevisionRetry does not read the signal", n)
	}
	if st, _ := w.finalStatus(); st != lethe.RequestFailed {
		t.Errorf("final status %s, want failed", st)
	}
}

func TestRetryWithoutStateIsRefused(t *testing.T) {
	w := newWorld(t, target("crm", 72*time.Hour, "email"))
	in := input(id("email", "ada@example.com"))
	in.Revision = CurrentRevision
	in.Retry = &RetrySignal{Actor: retryActor}
	err := w.run(in)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != "InvalidInput" {
		t.Fatalf("workflow error %v, want InvalidInput", err)
	}
}
