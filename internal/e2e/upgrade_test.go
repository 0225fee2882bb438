package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// TestWorkerRefusesNewerRevision starts a request at a revision the worker
// does not know, as an API upgraded before its workers does, and checks
// that the worker, configured as `lethe worker` runs it, fails the workflow
// task (which Temporal retries until an upgraded worker takes it) instead
// of running the request with its own code or failing the workflow.
func TestWorkerRefusesNewerRevision(t *testing.T) {
	s := newStack(t, stackOptions{})
	requestID := uuid.NewString()
	wfID := workflows.ErasureWorkflowID(requestID)
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	_, err := s.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: wfID, TaskQueue: workflows.TaskQueue},
		workflows.ErasureWorkflowName, workflows.ErasureInput{
			RequestID: requestID,
			Subject:   []wire.Identifier{{Type: "email", Value: "newer-1@example.test"}},
			CreatedAt: time.Now().UTC(),
			Deadline:  time.Now().UTC().Add(30 * 24 * time.Hour),
			Revision:  workflows.CurrentRevision + 1,
		})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer func() { _ = s.Temporal.TerminateWorkflow(context.Background(), wfID, "", "test over") }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		var failed string
		var others []string
		it := s.Temporal.GetWorkflowHistory(ctx, wfID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatalf("history: %v", err)
			}
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
				failed = ev.GetWorkflowTaskFailedEventAttributes().GetFailure().GetMessage()
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
				enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			default:
				others = append(others, ev.GetEventType().String())
			}
		}
		if len(others) > 0 {
			t.Fatalf("the workflow went on at an unknown revision: %v", others)
		}
		if failed != "" {
			if !strings.Contains(failed, "upgrade the worker") {
				t.Errorf("workflow task failed with %q, want a message asking for a worker upgrade", failed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no workflow task failed at an unknown revision")
		}
		time.Sleep(100 * time.Millisecond)
	}
	d, err := s.Temporal.DescribeWorkflowExecution(ctx, wfID, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Errorf("workflow %s, want running, its task retried until a worker knows the revision", st)
	}
	if !strings.Contains(s.Logs.String(), "revision this worker does not know") {
		t.Error("the worker logged no line naming the unknown revision")
	}
}
