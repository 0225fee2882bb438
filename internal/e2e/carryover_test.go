package e2e_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/temporal"
	"go.temporal.io/server/temporaltest"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/internal/testtemporal"
	"github.com/lethe-dev/lethe/workflows"
)

// carryRevisions are the revisions the carry-over tests run: the last one
// before RevisionNothingDropped, which must lose the signal (it shows that
// the test reaches the hazard, so that the current revision keeping the
// signal means something), and the current one, which must keep it.
var carryRevisions = []struct {
	name     string
	revision int
	kept     bool
}{
	{name: "revision 3 loses it", revision: workflows.RevisionSettledLedger, kept: false},
	{name: "current revision keeps it", revision: workflows.CurrentRevision, kept: true},
}

// TestExtensionAtContinueAsNew extends a request's deadline in the very
// workflow task in which the request continues as new, and checks that the
// next run keeps the new deadline (issue #12, hazard 2). Before
// RevisionNothingDropped the ledger said extended while the next run
// escalated at the old deadline.
func TestExtensionAtContinueAsNew(t *testing.T) {
	for _, tc := range carryRevisions {
		t.Run(tc.name, func(t *testing.T) {
			var extended lethe.Erasure
			s, e, next := signalAtContinueAsNew(t, tc.revision, workflows.SignalExtend, func(s *stack, e lethe.Erasure) {
				r := s.do(http.MethodPost, "/v1/erasures/"+e.ID+"/extend", map[string]string{"by": "720h", "reason": "records in archives"})
				r.Decode(t, &extended)
				if r.Status != http.StatusOK || !extended.Deadline.After(e.Deadline) {
					t.Fatalf("extend = %d %s", r.Status, r.Body)
				}
			})
			r := s.do(http.MethodGet, "/v1/erasures/"+e.ID, nil)
			var ledger lethe.Erasure
			r.Decode(t, &ledger)
			if r.Status != http.StatusOK || !ledger.Deadline.Equal(extended.Deadline) {
				t.Fatalf("GET /v1/erasures/%s = %d, deadline %s; want the extended %s", e.ID, r.Status, ledger.Deadline, extended.Deadline)
			}
			view := s.queryRun(workflows.ErasureWorkflowID(e.ID), next)
			switch {
			case tc.kept && !view.Deadline.Equal(extended.Deadline):
				t.Errorf("revision %d: the continued run escalates at %s, want the extended deadline %s the ledger shows",
					tc.revision, view.Deadline, extended.Deadline)
			case !tc.kept && !view.Deadline.Equal(e.Deadline):
				t.Errorf("revision %d: the continued run has the deadline %s, want the first deadline %s: "+
					"the extension was expected to be lost, so the test no longer reaches the hazard",
					tc.revision, view.Deadline, e.Deadline)
			}
		})
	}
}

// TestHoldLiftAtContinueAsNew lifts the hold on a request's one held
// system in the very workflow task in which the request continues as new,
// and checks that the next run dispatches the system (issue #12, hazard
// 2). Before RevisionNothingDropped the lift was lost, and the system
// stayed retained until the daily check of its holds. From
// RevisionWakeCarriedHolds on, the continued run acts on the carried lift
// in its first workflow task: the history shows its Sync before any timer
// of the run fired. Before, it waited for its next step, the next
// escalation point or the daily hold check, a day away at worst.
func TestHoldLiftAtContinueAsNew(t *testing.T) {
	for _, tc := range carryRevisions {
		t.Run(tc.name, func(t *testing.T) {
			s, e, next := signalAtContinueAsNew(t, tc.revision, workflows.SignalHolds, func(s *stack, _ lethe.Erasure) {
				if r := s.do(http.MethodDelete, "/v1/holds/"+carryHold, nil); r.Status != http.StatusOK {
					t.Fatalf("DELETE hold = %d %s", r.Status, r.Body)
				}
			})
			wfID := workflows.ErasureWorkflowID(e.ID)
			s.stepAfterTimer(wfID, next)
			got := systemByName(t, s.queryRun(wfID, next), carrySystem).Status
			switch {
			case tc.kept && got != lethe.SystemDispatched:
				t.Errorf("revision %d: %s %s after the continued run's first step, want dispatched: the lift was lost",
					tc.revision, carrySystem, got)
			case !tc.kept && got != lethe.SystemRetained:
				t.Errorf("revision %d: %s %s after the continued run's first step, want still retained: "+
					"the lift was expected to be lost, so the test no longer reaches the hazard", tc.revision, carrySystem, got)
			}
			if tc.kept && tc.revision >= workflows.RevisionWakeCarriedHolds {
				for _, ev := range s.runEvents(wfID, next) {
					if ev.GetEventType() == enumspb.EVENT_TYPE_TIMER_FIRED {
						t.Fatalf("revision %d: a timer of the continued run fired before its first Sync: "+
							"the carried lift waited for the next step", tc.revision)
					}
					if ev.GetEventType() == enumspb.EVENT_TYPE_MARKER_RECORDED {
						break
					}
				}
			}
		})
	}
}

// carrySystem is the one system of the carry-over tests' requests, held
// by carryHold from before the request.
const (
	carrySystem = "carry-archive"
	carryHold   = "carry-1"
)

// signalAtContinueAsNew has a request, started at revision, take a signal
// in the workflow task in which it continues as new, and returns the
// stack, the request as submitted and the run that continues it. send
// sends the signal, named signal, through the API.
//
// The task holds two events: a timer fired (the next escalation point) and
// the signal. The SDK runs the workflow's main coroutine before the signal
// listener in each pass, so the main loop wakes on the timer, finds nothing
// to do (the request's one system is held, so the point passes quietly and
// nothing is written), sees the server's suggestion and continues as new
// before the listener has run. The signal is then only in its channel.
// Before RevisionNothingDropped the listener's Selector had already taken
// it out of the channel, and continueAsNew drained confirmations only;
// from that revision on, continueAsNew applies every queued signal.
//
// The two events land in one task by construction, not by timing: the
// worker is stopped, the history records the timer firing with no worker
// polling, the signal is sent, and only then does the server suggest
// continue-as-new and a worker start. Whatever the machine's speed, the
// next task holds both; the history is checked to say so.
func signalAtContinueAsNew(t *testing.T, revision int, signal string, send func(*stack, lethe.Erasure)) (*stack, lethe.Erasure, string) {
	t.Helper()
	dc := dynamicconfig.NewMemoryClient()
	// temporaltest sets it; a dynamic config of our own replaces its.
	dc.OverrideSetting(dynamicconfig.ForceSearchAttributesCacheRefreshOnRead, true)
	c, ns := testtemporal.Start(t, temporaltest.WithBaseServerOptions(temporal.WithDynamicConfigClient(dc)))
	// A reminder every 5% of a two-minute window: an escalation point, and
	// so a timer, every six seconds. No settling, so that a point passed
	// quietly writes nothing.
	reminders := make([]float64, 0, 19)
	for i := 1; i < 20; i++ {
		reminders = append(reminders, float64(i)/20)
	}
	s := newStack(t, stackOptions{Temporal: c, Namespace: ns, ManualWorker: true,
		Policy: workflows.Policy{Settle: -1, Reminders: reminders},
		Engine: func(e api.Engine) api.Engine { return revisionEngine{Engine: e, revision: revision} }})
	stopWorker := s.startWorker()

	s.putSystem(lethe.System{Name: carrySystem, Identifiers: []string{"email"}, Owner: "e2e",
		Description: "a system under a legal hold"})
	subject := map[string]string{"email": "carry-1@example.test"}
	hold := map[string]any{"subject": subject, "system": carrySystem, "basis": "Art. 17(3)(e): case carry-1"}
	if r := s.do(http.MethodPut, "/v1/holds/"+carryHold, hold); r.Status != http.StatusCreated {
		t.Fatalf("PUT hold = %d %s", r.Status, r.Body)
	}
	r := s.do(http.MethodPost, "/v1/erasures", map[string]any{"subject": subject, "reason": "gdpr_art17",
		"requested_by": "e2e", "deadline": time.Now().Add(2 * time.Minute).UTC()})
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures = %d %s", r.Status, r.Body)
	}
	var e lethe.Erasure
	r.Decode(t, &e)
	s.live(e.ID, "held", systemIs(carrySystem, lethe.SystemRetained))

	wfID := workflows.ErasureWorkflowID(e.ID)
	stopWorker()
	firstRun, fired := s.timerFiredUnpolled(wfID)
	send(s, e)

	// The next workflow task starts past the history's current length, so
	// the server suggests continue-as-new to it; the next run starts far
	// below it.
	restore := dc.OverrideSetting(dynamicconfig.HistoryCountSuggestContinueAsNew, len(s.runEvents(wfID, firstRun)))
	t.Cleanup(s.startWorker())
	next := s.continuedAsNew(wfID, firstRun)
	restore()

	// The run that continued as new took the timer and the signal in one
	// workflow task, its last.
	events := s.runEvents(wfID, firstRun)
	signaled, started := false, 0
	for _, ev := range events[fired:] {
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == signal {
			signaled = true
		}
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED {
			started++
		}
	}
	if !signaled {
		t.Fatalf("run %s: no %s signal after the timer fired", firstRun, signal)
	}
	if started != 1 || events[len(events)-1].GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW {
		t.Fatalf("run %s: %d workflow tasks after the timer fired, ending in %s; want one, continuing as new",
			firstRun, started, events[len(events)-1].GetEventType())
	}
	return s, e, next
}

// stepAfterTimer waits until run of the workflow has completed a workflow
// task after a timer fired: it has taken a step of its own.
func (s *stack) stepAfterTimer(workflowID, runID string) {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		fired := false
		for _, ev := range s.runEvents(workflowID, runID) {
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_TIMER_FIRED:
				fired = true
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
				if fired {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s of %s took no step on a timer within a minute", runID, workflowID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// timerFiredUnpolled waits until the current run of the workflow records a
// timer firing after its last workflow task started: with no worker
// polling, the next task will hold it. It returns the run and the number of
// events before the timer fired.
func (s *stack) timerFiredUnpolled(workflowID string) (runID string, before int) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	d, err := s.Temporal.DescribeWorkflowExecution(ctx, workflowID, "")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	runID = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	deadline := time.Now().Add(time.Minute)
	for {
		events := s.runEvents(workflowID, runID)
		fired := -1
		for i, ev := range events {
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
				fired = -1
			case enumspb.EVENT_TYPE_TIMER_FIRED:
				if fired < 0 {
					fired = i
				}
			}
		}
		if fired >= 0 {
			return runID, fired
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s of %s recorded no timer firing in a minute without a worker", runID, workflowID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queryRun asks one run of the workflow for its status, until it answers:
// a run answers once its first workflow task is done.
func (s *stack) queryRun(workflowID, runID string) lethe.Erasure {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		v, err := s.Temporal.QueryWorkflow(ctx, workflowID, runID, workflows.QueryStatus)
		cancel()
		var e lethe.Erasure
		if err == nil {
			if err = v.Get(&e); err == nil {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s of %s did not answer its status query: %v", runID, workflowID, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// continuedAsNew waits until run of the workflow has continued as new and
// returns the new run.
func (s *stack) continuedAsNew(workflowID, run string) string {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		events := s.runEvents(workflowID, run)
		last := events[len(events)-1]
		if a := last.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
			return a.GetNewExecutionRunId()
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s of %s did not continue as new within a minute; its last event is %s",
				run, workflowID, last.GetEventType())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runEvents returns the history of one run, as recorded so far.
func (s *stack) runEvents(workflowID, runID string) []*historypb.HistoryEvent {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	var events []*historypb.HistoryEvent
	it := s.Temporal.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s run %s: %v", workflowID, runID, err)
		}
		events = append(events, ev)
	}
	return events
}
