package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// TestResetAfterDispatch resets a running request, as an operator does with
// `temporal workflow reset`, after its command went out, and checks that the
// system's confirmation of that command still counts. A reset starts a new
// run that replays the history up to the reset point under a new run id; a
// command_id derived from the run id would come out different, and the
// confirmation of the command already published would be rejected as
// unknown, leaving the request open until the command timed out.
//
// The reset point is the first workflow task completed after the one that
// dispatched: that task's Sync, which published the command, stays in the
// history and is replayed, not run again, so the only command the system
// ever sees is the one published before the reset, and only ids derived the
// same way again can match its confirmation. (Resetting to the dispatching
// task itself would publish the command again, and the system would confirm
// whatever id it then got.) With Policy.Settle at a second, that later task
// is the one that writes the settled request to the ledger; the reset runs
// it again, and its ledger write, the same delta under the same batch name,
// must be recognised rather than appended twice.
func TestResetAfterDispatch(t *testing.T) {
	s := newStack(t, stackOptions{Policy: workflows.Policy{Settle: time.Second}})
	const system = "reset-crm"
	s.putSystem(lethe.System{Name: system, Identifiers: []string{"email"}, Owner: "e2e",
		Description: "a system that confirms after the reset", ConfirmWithin: lethe.Duration(time.Hour)})
	gate := make(chan struct{})
	received := make(chan string, 8)
	s.runConnector(system, connectors.HandlerFunc(func(ctx context.Context, r connectors.Request) (connectors.Result, error) {
		received <- r.CommandID
		select {
		case <-gate:
		case <-ctx.Done():
			return connectors.Result{}, ctx.Err()
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	}))
	e := s.submit(map[string]string{"email": "reset-1@example.test"})
	var commandID string
	select {
	case commandID = <-received:
	case <-time.After(time.Minute):
		t.Fatal("the command never reached the system")
	}

	wfID := workflows.ErasureWorkflowID(e.ID)
	run, point := s.taskAfterDispatch(wfID)
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	reset, err := s.Temporal.WorkflowService().ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace:                 s.Namespace,
		WorkflowExecution:         &commonpb.WorkflowExecution{WorkflowId: wfID, RunId: run},
		Reason:                    "e2e: reset after dispatch",
		WorkflowTaskFinishEventId: point,
		RequestId:                 uuid.NewString(),
	})
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	close(gate)

	// The command times out only after an hour: a request that completes
	// within 30 seconds counted the confirmation sent before the reset.
	done := s.settle(e.ID, 30*time.Second)
	ctx, cancel = context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	events, err := s.Store.Audit(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[lethe.AuditKind]int{}
	for _, ev := range events {
		kinds[ev.Kind]++
		if ev.Kind == lethe.AuditConfirmationRejected {
			t.Errorf("confirmation rejected after the reset: %s", ev.Detail)
		}
	}
	if kinds[lethe.AuditDispatched] != 1 || kinds[lethe.AuditPlanned] != 1 {
		t.Errorf("audit has %d planned and %d dispatched events, want one each: the ledger write the reset ran "+
			"again must be recognised", kinds[lethe.AuditPlanned], kinds[lethe.AuditDispatched])
	}
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("request %s 30 s after the reset, want completed: %s", done.Status, describe(done))
	}
	if p := systemByName(t, done, system); p.Status != lethe.SystemErased || p.Attempts != 1 {
		t.Errorf("%s %s after %d attempts, want erased by the first", system, p.Status, p.Attempts)
	}
	d, err := s.Temporal.DescribeWorkflowExecution(ctx, wfID, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); got != reset.GetRunId() {
		t.Errorf("the request ended in run %s, want the reset's run %s", got, reset.GetRunId())
	}
	select {
	case again := <-received:
		if again != commandID {
			t.Errorf("the system got a second command %s after %s", again, commandID)
		}
	default:
	}
}

// settle polls a request until it reaches a final status or within has
// passed, and returns what the API last answered.
func (s *stack) settle(id string, within time.Duration) lethe.Erasure {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var e lethe.Erasure
		s.do(http.MethodGet, "/v1/erasures/"+id, nil).Decode(s.t, &e)
		if e.Status.Final() || time.Now().After(deadline) {
			return e
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// taskAfterDispatch waits until the request's run has completed a workflow
// task after the one whose Sync published its first commands, and returns
// the run and that task's completed event: a reset point after the dispatch.
func (s *stack) taskAfterDispatch(workflowID string) (run string, point int64) {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		d, err := s.Temporal.DescribeWorkflowExecution(ctx, workflowID, "")
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		run = d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
		var synced bool
		it := s.Temporal.GetWorkflowHistory(ctx, workflowID, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() && point == 0 {
			ev, err := it.Next()
			if err != nil {
				cancel()
				t.Fatalf("history of %s: %v", workflowID, err)
			}
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_MARKER_RECORDED:
				// A local activity's marker names its activity type.
				for _, p := range ev.GetMarkerRecordedEventAttributes().GetDetails()["data"].GetPayloads() {
					synced = synced || strings.Contains(string(p.GetData()), `"Sync"`)
				}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
				if synced {
					point = ev.GetEventId()
				}
			}
		}
		cancel()
		if point != 0 {
			return run, point
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s completed no workflow task after its dispatch", workflowID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
