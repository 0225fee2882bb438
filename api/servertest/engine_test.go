// Package servertest runs the API's Temporal engine against a real
// in-process Temporal server. It is a package of its own, apart from package
// api's tests, so that those (the fuzz targets among them, which instrument
// every package they link) do not link the whole Temporal server.
package servertest_test

import (
	"context"
	"log/slog"
	"reflect"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

var createdAt = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// stubErasure stands in for the real workflow under its registered name: it
// waits until canceled or told to finish, and answers the policy it got.
func stubErasure(ctx workflow.Context, in workflows.ErasureInput) error {
	finished := false
	if err := workflow.SetQueryHandler(ctx, "policy", func() (workflows.Policy, error) { return in.Policy, nil }); err != nil {
		return err
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		workflow.GetSignalChannel(ctx, "finish").Receive(ctx, nil)
		finished = true
	})
	return workflow.Await(ctx, func() bool { return finished })
}

func quietLogger() log.Logger { return log.NewStructuredLogger(slog.New(slog.DiscardHandler)) }

// TestTemporalEngineAgainstServer runs the engine against a real in-process
// Temporal server: start is idempotent, carries the policy and the initial
// search attribute, cancel returns once the workflow has closed, a closed
// workflow is never started again, and one that completed or is unknown is
// reported as already finished.
func TestTemporalEngineAgainstServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts := temporaltest.NewServer(temporaltest.WithT(t),
		temporaltest.WithBaseClientOptions(client.Options{Logger: quietLogger()}))
	c := ts.GetDefaultClient()
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        ts.GetDefaultNamespace(),
		SearchAttributes: workflows.SearchAttributeTypes,
	}); err != nil {
		t.Fatalf("register search attributes: %v", err)
	}
	ts.NewWorker(workflows.TaskQueue, func(r worker.Registry) {
		r.RegisterWorkflowWithOptions(stubErasure, workflow.RegisterOptions{Name: workflows.ErasureWorkflowName})
	})

	policy := workflows.Policy{MaxAttempts: 2, RetryDelay: time.Minute}
	engine := api.NewTemporalEngine(c, policy)
	in := workflows.ErasureInput{
		RequestID: "6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11",
		Subject:   []wire.Identifier{{Type: "user_id", Value: "u-1"}},
		CreatedAt: createdAt,
		Deadline:  createdAt.Add(time.Hour),
	}
	wid := workflows.ErasureWorkflowID(in.RequestID)

	if err := engine.StartErasure(ctx, in); err != nil {
		t.Fatalf("start: %v", err)
	}
	first := describeWorkflow(ctx, t, c, wid)
	if err := engine.StartErasure(ctx, in); err != nil {
		t.Fatalf("second start of a running workflow: %v", err)
	}
	if again := describeWorkflow(ctx, t, c, wid); again.GetExecution().GetRunId() != first.GetExecution().GetRunId() {
		t.Errorf("second start made a new run")
	}
	var status string
	payload := first.GetSearchAttributes().GetIndexedFields()[workflows.SearchStatus.GetName()]
	if err := converter.GetDefaultDataConverter().FromPayload(payload, &status); err != nil || status != "pending" {
		t.Errorf("LetheStatus = %q (%v), want pending", status, err)
	}
	q, err := c.QueryWorkflow(ctx, wid, "", "policy")
	if err != nil {
		t.Fatalf("query policy: %v", err)
	}
	var got workflows.Policy
	if err := q.Get(&got); err != nil || !reflect.DeepEqual(got, policy) {
		t.Errorf("workflow got policy %+v (%v), want %+v", got, err, policy)
	}

	if err := engine.CancelErasure(ctx, in.RequestID); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	// Cancel returned, so the workflow must already be closed.
	if st := describeWorkflow(ctx, t, c, wid).GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Errorf("status after cancel = %v, want CANCELED", st)
	}
	// Temporal accepts a cancel of a closed workflow: a second cancel of a
	// canceled request is still a success.
	if err := engine.CancelErasure(ctx, in.RequestID); err != nil {
		t.Errorf("second cancel = %v, want nil", err)
	}
	if err := engine.StartErasure(ctx, in); err != nil {
		t.Fatalf("start of a closed workflow: %v", err)
	}
	if again := describeWorkflow(ctx, t, c, wid); again.GetExecution().GetRunId() != first.GetExecution().GetRunId() ||
		again.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Errorf("a closed request was run again: %v", again.GetStatus())
	}

	// A request that completes on its own cannot be canceled afterwards.
	done := in
	done.RequestID = "0b5c8d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e"
	if err := engine.StartErasure(ctx, done); err != nil {
		t.Fatalf("start: %v", err)
	}
	doneID := workflows.ErasureWorkflowID(done.RequestID)
	if err := c.SignalWorkflow(ctx, doneID, "", "finish", nil); err != nil {
		t.Fatalf("signal: %v", err)
	}
	if err := c.GetWorkflow(ctx, doneID, "").Get(ctx, nil); err != nil {
		t.Fatalf("wait for completion: %v", err)
	}
	err = engine.CancelErasure(ctx, done.RequestID)
	if lethe.ErrorKind(err) != lethe.KindConflict || lethe.ErrorCode(err) != "already_finished" {
		t.Errorf("cancel of a completed workflow = %v, want already_finished", err)
	}
	err = engine.CancelErasure(ctx, "11111111-2222-4333-8444-555555555555")
	if lethe.ErrorCode(err) != "already_finished" {
		t.Errorf("cancel of an unknown workflow = %v, want already_finished", err)
	}
}

func describeWorkflow(ctx context.Context, t *testing.T, c client.Client, wid string) *workflowpb.WorkflowExecutionInfo {
	t.Helper()
	resp, err := c.DescribeWorkflowExecution(ctx, wid, "")
	if err != nil {
		t.Fatalf("describe %s: %v", wid, err)
	}
	return resp.GetWorkflowExecutionInfo()
}
