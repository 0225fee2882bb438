// Package resume starts a request's workflow again, in a new run under the
// same workflow ID, from the state its last run reached. Temporal keeps a
// closed workflow's history for the namespace's retention, and the carry
// query (workflows.QueryCarry) replays it on a worker to read that state, so
// a request can go on after its workflow closed without Lethe ever storing
// identifier values outside Temporal. The API uses it to retry a failed
// request, the worker's reconciler to restart one whose workflow stopped
// while the ledger had it open.
package resume

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/workflows"
)

// Carried reads, through the carry query, the input that goes on with the
// request from where its latest run stands, or ended. The input holds the
// subject's identifier values: it goes to Start and nowhere else.
func Carried(ctx context.Context, c client.Client, requestID string) (workflows.ErasureInput, error) {
	v, err := c.QueryWorkflow(ctx, workflows.ErasureWorkflowID(requestID), "", workflows.QueryCarry)
	if err != nil {
		return workflows.ErasureInput{}, err
	}
	var in workflows.ErasureInput
	if err := v.Get(&in); err != nil {
		return workflows.ErasureInput{}, fmt.Errorf("decode carried erasure input: %w", err)
	}
	if in.State == nil || in.RequestID != requestID {
		return workflows.ErasureInput{}, fmt.Errorf("the carry query of request %s answered no state of it", requestID)
	}
	return in, nil
}

// Start starts a new run of the request's closed workflow with in, at the
// current revision, with taskTimeout as its workflow task timeout (zero:
// Temporal's default). A workflow already running under the ID (another
// replica or caller got there first) is not replaced: the error is
// Temporal's *serviceerror.WorkflowExecutionAlreadyStarted.
func Start(ctx context.Context, c client.Client, in workflows.ErasureInput, taskTimeout time.Duration) error {
	in.Revision = workflows.CurrentRevision
	opts := StartOptions(in, lethe.RequestRunning)
	opts.WorkflowTaskTimeout = taskTimeout
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
	opts.WorkflowIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	_, err := c.ExecuteWorkflow(ctx, opts, workflows.ErasureWorkflowName, in)
	return err
}

// StartOptions are what every start of a request's workflow shares: the
// ID derived from the request, the task queue, and the list columns the
// Temporal UI shows (status, deadline) before the workflow writes its own.
// Callers add the ID policies of their start.
func StartOptions(in workflows.ErasureInput, status lethe.RequestStatus) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:        workflows.ErasureWorkflowID(in.RequestID),
		TaskQueue: workflows.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchStatus.ValueSet(string(status)),
			workflows.SearchDeadline.ValueSet(in.Deadline)),
	}
}

// Status is the status of the request's latest run; ok is false when
// Temporal no longer knows the workflow (never started, or past retention).
func Status(ctx context.Context, c client.Client, requestID string) (status enumspb.WorkflowExecutionStatus, ok bool, err error) {
	d, err := c.DescribeWorkflowExecution(ctx, workflows.ErasureWorkflowID(requestID), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return d.GetWorkflowExecutionInfo().GetStatus(), true, nil
}
