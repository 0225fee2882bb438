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

// TestExtensionAtContinueAsNew extends a request's deadline in the very
// workflow task in which the request continues as new, and checks that the
// next run keeps the new deadline (issue #12, hazard 2).
//
// The task holds two events: a timer fired (the next escalation point) and
// the extension's signal. The SDK runs the workflow's main coroutine before
// the signal listener in each pass, so the main loop wakes on the timer,
// finds nothing to do (the request's one system is held, so the point
// passes quietly and nothing is written), sees the server's suggestion and
// continues as new before the listener has run. The extension is then only
// in the signal channel. Before RevisionNothingDropped the listener's
// Selector had already taken it out of the channel, and continueAsNew
// drained confirmations only: the ledger said extended while the next run
// escalated at the old deadline. From that revision on, continueAsNew
// applies every queued signal.
//
// The two events land in one task by construction, not by timing: the
// worker is stopped, the test waits until the history records the timer
// firing with no worker polling, sends the extension through the API, and
// only then makes the server suggest continue-as-new and starts a worker.
// The revision before the fix runs the same path and must lose the
// extension: it shows that the path reaches the hazard, so that the
// current revision keeping it means something.
func TestExtensionAtContinueAsNew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		revision int
		kept     bool
	}{
		{name: "revision 3 loses it", revision: workflows.RevisionSettledLedger, kept: false},
		{name: "current revision keeps it", revision: workflows.CurrentRevision, kept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkExtensionAtContinueAsNew(t, tc.revision, tc.kept)
		})
	}
}

func checkExtensionAtContinueAsNew(t *testing.T, revision int, kept bool) {
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

	const system = "carry-archive"
	s.putSystem(lethe.System{Name: system, Identifiers: []string{"email"}, Owner: "e2e",
		Description: "a system under a legal hold for the whole test"})
	subject := map[string]string{"email": "carry-1@example.test"}
	hold := map[string]any{"subject": subject, "system": system, "basis": "Art. 17(3)(e): case carry-1"}
	if r := s.do(http.MethodPut, "/v1/holds/carry-1", hold); r.Status != http.StatusCreated {
		t.Fatalf("PUT hold = %d %s", r.Status, r.Body)
	}
	r := s.do(http.MethodPost, "/v1/erasures", map[string]any{"subject": subject, "reason": "gdpr_art17",
		"requested_by": "e2e", "deadline": time.Now().Add(2 * time.Minute).UTC()})
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures = %d %s", r.Status, r.Body)
	}
	var e lethe.Erasure
	r.Decode(t, &e)
	s.live(e.ID, "held", systemIs(system, lethe.SystemRetained))

	wfID := workflows.ErasureWorkflowID(e.ID)
	stopWorker()
	firstRun, fired := s.timerFiredUnpolled(wfID)

	r = s.do(http.MethodPost, "/v1/erasures/"+e.ID+"/extend", map[string]string{"by": "720h", "reason": "records in archives"})
	var extended lethe.Erasure
	r.Decode(t, &extended)
	if r.Status != http.StatusOK {
		t.Fatalf("extend = %d %s", r.Status, r.Body)
	}
	if !extended.Deadline.After(e.Deadline) {
		t.Fatalf("extension moved the deadline from %s to %s", e.Deadline, extended.Deadline)
	}

	// The next workflow task starts past the history's current length, so
	// the server suggests continue-as-new to it; the next run starts far
	// below it.
	pending := s.runEvents(wfID, firstRun)
	restore := dc.OverrideSetting(dynamicconfig.HistoryCountSuggestContinueAsNew, len(pending))
	stopWorker = s.startWorker()
	defer stopWorker()
	nextRun := s.continuedAsNew(wfID, firstRun)
	restore()

	// The run that continued as new took the timer and the extension in
	// one workflow task, its last.
	events := s.runEvents(wfID, firstRun)
	var signaled int64
	for _, ev := range events[fired:] {
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == workflows.SignalExtend {
			signaled = ev.GetEventId()
		}
	}
	if signaled == 0 {
		t.Fatalf("no extension signal after the timer fired (event %d) in run %s", fired, firstRun)
	}
	started := 0
	for _, ev := range events[fired:] {
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED {
			started++
		}
	}
	if started != 1 || events[len(events)-1].GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW {
		t.Fatalf("run %s: %d workflow tasks after the timer fired, ending in %s; want one, continuing as new",
			firstRun, started, events[len(events)-1].GetEventType())
	}

	r = s.do(http.MethodGet, "/v1/erasures/"+e.ID, nil)
	var ledger lethe.Erasure
	r.Decode(t, &ledger)
	if r.Status != http.StatusOK || !ledger.Deadline.Equal(extended.Deadline) {
		t.Fatalf("GET /v1/erasures/%s = %d, deadline %s; want the extended %s", e.ID, r.Status, ledger.Deadline, extended.Deadline)
	}
	view := s.queryRun(wfID, nextRun)
	switch {
	case kept && !view.Deadline.Equal(extended.Deadline):
		t.Errorf("revision %d: the continued run escalates at %s, want the extended deadline %s the ledger shows",
			revision, view.Deadline, extended.Deadline)
	case !kept && !view.Deadline.Equal(e.Deadline):
		t.Errorf("revision %d: the continued run has the deadline %s, want the first deadline %s: "+
			"the extension was expected to be lost, so the test no longer reaches the hazard",
			revision, view.Deadline, e.Deadline)
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
