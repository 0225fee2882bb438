package workflows

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// TestContinueAsNewAppliesQueuedSignals delivers each kind of signal with
// the timer of an escalation point that passes quietly (the one system
// open is held) and hands the request over to a new run at that point: what
// the signal said must hold either in this run or in the state it carries,
// never in neither.
func TestContinueAsNewAppliesQueuedSignals(t *testing.T) {
	deadline := 10 * time.Hour
	extended := testStart.Add(deadline + 30*day)
	tests := []struct {
		name   string
		signal string
		arg    func(w *world) any
		check  func(t *testing.T, w *world, next ErasureInput)
	}{
		{
			name:   "confirm",
			signal: SignalConfirm,
			arg: func(w *world) any {
				// Of a command the request never issued: handled, it is audited as rejected.
				c := w.answer("billing", wire.OutcomeErased, 1)
				c.CommandID = unknownCmdID
				return ConfirmSignal{Confirmations: []wire.Confirmation{c}}
			},
			check: func(t *testing.T, w *world, next ErasureInput) {
				rejected := len(w.eventsOf(lethe.AuditConfirmationRejected))
				if in := next.State.Inbox; rejected == 0 && (len(in) != 1 || in[0].System != "billing") {
					t.Errorf("carried inbox %+v and no confirmation rejected, want the signal's in one or the other", in)
				}
			},
		},
		{
			name:   "extend",
			signal: SignalExtend,
			arg:    func(*world) any { return ExtendSignal{Deadline: extended} },
			check: func(t *testing.T, _ *world, next ErasureInput) {
				if !next.Deadline.Equal(extended) {
					t.Errorf("carried deadline %v, want the extended %v", next.Deadline, extended)
				}
			},
		},
		{
			name:   "holds",
			signal: SignalHolds,
			arg:    func(*world) any { return nil },
			check: func(t *testing.T, w *world, next ErasureInput) {
				if rechecked := len(w.planCalls()) > 1; !rechecked && !next.State.HoldsChanged {
					t.Error("the holds were not checked again and the carried state does not say they changed")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := continueAsNewAfter
			continueAsNewAfter = 50
			t.Cleanup(func() { continueAsNewAfter = prev })

			w := newWorld(t, target("billing", day, "email"), target("orders", day, "user_id"))
			w.setHold("orders", &lethe.Hold{ID: "case-1", Basis: "Art. 17(3)(e)"})
			w.confirmAt(time.Minute, one2(w, "billing"))
			// Queued without a workflow task of its own, the signal is
			// delivered with the reminder's timer at half the window.
			w.at(deadline/2-time.Second, func() {
				w.env.SetCurrentHistoryLength(100)
				w.env.SignalWorkflowSkippingWorkflowTask(tt.signal, tt.arg(w))
			})
			in := input(id("user_id", "u-123"), id("email", "ada@example.com"))
			in.Deadline = testStart.Add(deadline)
			in.Policy.Reminders = []float64{0.5}
			in.Revision = RevisionNothingDropped
			next, _ := continuedAs(t, w.run(in))
			tt.check(t, w, next)
		})
	}
}

// TestEscalationInFlightAwaited confirms the last open system while the
// deadline's escalation is still on its way (its webhook answers late):
// the request completes, and its run ends only once the workflow has seen
// the escalation through, rather than abandoning it with its point marked
// fired. The webhook answers at a workflow time after the confirmation,
// which the test server reaches only while the workflow still runs.
func TestEscalationInFlightAwaited(t *testing.T) {
	w := newWorld(t, target("orders", day, "user_id"))
	deadline := 2 * time.Hour
	gate := make(chan struct{})
	w.escalateErr = func(int) error {
		select {
		case <-gate:
			return nil
		case <-time.After(time.Minute):
			return errors.New("webhook never answered")
		}
	}
	w.confirmAt(deadline+500*time.Millisecond, one2(w, "orders"))
	w.at(deadline+time.Second, func() { close(gate) })
	// The test server gives a local activity a deadline on its own clock
	// and checks it on the wall's: a request of the past would see its
	// late webhook time out.
	start := time.Now().UTC().Add(365 * day).Truncate(time.Second)
	w.env.SetStartTime(start)
	in := input(id("user_id", "u-123"))
	in.CreatedAt, in.Deadline = start, start.Add(deadline)
	in.Policy.Reminders = []float64{}
	in.Revision = RevisionNothingDropped
	if err := w.run(in); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if status, _ := w.finalStatus(); status != lethe.RequestCompleted {
		t.Errorf("ledger status %q, want completed", status)
	}
	w.mu.Lock()
	logs := w.logs.String()
	w.mu.Unlock()
	if n := strings.Count(logs, `msg="escalation delivered"`); n != 1 {
		t.Errorf("the workflow saw %d escalations delivered, want the deadline's", n)
	}
}

// TestUndecodableSignalStallsNothing sends a confirm signal the workflow
// cannot decode (the codec refuses it, or it has the wrong shape): the
// listener must drop it and go on, so that the signals and the timers after
// it still act.
func TestUndecodableSignalStallsNothing(t *testing.T) {
	t.Run("timer", func(t *testing.T) {
		w := newWorld(t, target("orders", time.Hour, "user_id"))
		w.at(time.Minute, func() { w.env.SignalWorkflow(SignalConfirm, "not a confirm signal") })
		w.confirmAt(90*time.Minute, func() []wire.Confirmation {
			return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 1)}
		})
		in := input(id("user_id", "u-123"))
		in.Revision = RevisionNothingDropped
		if err := w.run(in); err != nil {
			t.Fatalf("workflow: %v", err)
		}
		cmds := w.commandsTo("orders")
		if len(cmds) != 2 || cmds[1].Attempt != 2 {
			t.Errorf("orders got %d commands, want its confirm_within to re-dispatch once", len(cmds))
		}
	})
	t.Run("extend", func(t *testing.T) {
		w := newWorld(t, target("orders", day, "user_id"))
		extended := testStart.Add(4 * time.Hour)
		w.at(time.Minute, func() { w.env.SignalWorkflow(SignalConfirm, "not a confirm signal") })
		w.at(2*time.Minute, func() { w.env.SignalWorkflow(SignalExtend, ExtendSignal{Deadline: extended}) })
		w.confirmAt(3*time.Hour, func() []wire.Confirmation {
			return []wire.Confirmation{w.answer("orders", wire.OutcomeErased, 1)}
		})
		in := input(id("user_id", "u-123"))
		in.Deadline = testStart.Add(2 * time.Hour)
		in.Policy.Reminders = []float64{}
		in.Revision = RevisionNothingDropped
		if err := w.run(in); err != nil {
			t.Fatalf("workflow: %v", err)
		}
		if escs := w.escalations(); len(escs) != 0 {
			t.Errorf("escalated %+v at the old deadline, want the extension applied", escs)
		}
		if e := w.query(); !e.Deadline.Equal(extended) || e.Overdue {
			t.Errorf("request deadline %v overdue %v, want %v and not overdue", e.Deadline, e.Overdue, extended)
		}
	})
}
