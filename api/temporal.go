package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/internal/resume"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// temporalEngine runs erasure requests as Temporal workflows.
type temporalEngine struct {
	c           client.Client
	policy      workflows.Policy
	taskTimeout time.Duration
}

// EngineOption adjusts the Engine NewTemporalEngine returns.
type EngineOption func(*temporalEngine)

// WorkflowTaskTimeout sets the workflow task timeout of the workflows the
// engine starts (LETHE_WORKFLOW_TASK_TIMEOUT): how long Temporal waits for a
// worker that took a workflow task before it gives the task to another, so
// what a worker killed mid-task costs its requests. Zero leaves Temporal's
// default of 10s. The timeout travels with the workflow (continue-as-new
// keeps it) and plays no part in replay.
func WorkflowTaskTimeout(d time.Duration) EngineOption {
	return func(e *temporalEngine) { e.taskTimeout = d }
}

// NewTemporalEngine returns the Engine that starts and cancels erasure
// workflows through c. Every workflow it starts carries policy in its input,
// so a later change of configuration never alters a running request.
func NewTemporalEngine(c client.Client, policy workflows.Policy, opts ...EngineOption) Engine {
	e := &temporalEngine{c: c, policy: policy}
	for _, o := range opts {
		o(e)
	}
	return e
}

// StartErasure starts the request's workflow. The workflow ID is derived from
// the request id, and a workflow already running under it is taken as this
// one (USE_EXISTING), so a retried start never runs a request twice; a closed
// one is never run again (REJECT_DUPLICATE), which also counts as started.
func (e *temporalEngine) StartErasure(ctx context.Context, in workflows.ErasureInput) error {
	in.Policy = e.policy
	opts := resume.StartOptions(in, lethe.RequestPending)
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING
	opts.WorkflowIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	opts.WorkflowTaskTimeout = e.taskTimeout
	_, err := e.c.ExecuteWorkflow(ctx, opts, workflows.ErasureWorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &started) {
		return temporalError("start erasure workflow", err)
	}
	return nil
}

// CancelErasure requests cancellation and waits, as long as ctx allows, for
// the workflow to close. Temporal accepts a cancel request for a workflow
// that has already closed, so how it closed is what tells: canceled is
// success (also when an earlier request canceled it), anything else
// (completed, failed, terminated) or a workflow no longer known means it
// had already finished. The caller reads the outcome from the ledger in
// either case; the workflow may complete normally after recording its
// cancellation there.
func (e *temporalEngine) CancelErasure(ctx context.Context, requestID string) error {
	return e.cancelAndWait(ctx, workflows.ErasureWorkflowID(requestID), "erasure")
}

// cancelAndWait cancels the workflow of this id and waits for it to
// close, as CancelErasure says; what names the workflow in error causes.
func (e *temporalEngine) cancelAndWait(ctx context.Context, id, what string) error {
	err := e.c.CancelWorkflow(ctx, id, "")
	var again *serviceerror.CancellationAlreadyRequested
	if err != nil && !errors.As(err, &again) {
		return temporalError("cancel "+what+" workflow", err)
	}
	err = e.c.GetWorkflow(ctx, id, "").Get(ctx, nil)
	var closed *temporal.WorkflowExecutionError
	switch {
	case temporal.IsCanceledError(err):
		return nil
	case err == nil, errors.As(err, &closed):
		return lethe.Errorf(lethe.KindConflict, "already_finished",
			"the %s's workflow had already closed without being canceled", what)
	}
	return temporalError("wait for "+what+" workflow to close", err)
}

// ExtendErasure signals the new dates to the request's workflow.
func (e *temporalEngine) ExtendErasure(ctx context.Context, requestID string, ext registry.Extension) error {
	err := e.c.SignalWorkflow(ctx, workflows.ErasureWorkflowID(requestID), "", workflows.SignalExtend,
		workflows.ExtendSignal{Deadline: ext.Deadline, Target: ext.Target})
	if err != nil {
		return temporalError("signal extension", err)
	}
	return nil
}

// RetryErasure gives the request's failed systems (those of order, or all)
// a fresh attempt budget. A running workflow gets the order as a signal; a
// closed one is started again from the state its history ends with,
// carrying the order (see package resume). Should the workflow close or
// start between the look and the act, the look is taken again.
func (e *temporalEngine) RetryErasure(ctx context.Context, requestID string, order workflows.RetrySignal) error {
	id := workflows.ErasureWorkflowID(requestID)
	for range 3 {
		status, known, err := resume.Status(ctx, e.c, requestID)
		switch {
		case err != nil:
			return temporalError("describe erasure workflow", err)
		case !known:
			return lethe.Errorf(lethe.KindConflict, "workflow_gone",
				"the request's workflow is past Temporal's retention, and the subject's identifiers with it: submit the request again")
		}
		in, err := resume.Carried(ctx, e.c, requestID)
		if err != nil {
			return temporalError("read erasure workflow state", err)
		}
		if status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			if in.Revision < workflows.RevisionRetry {
				return lethe.Errorf(lethe.KindConflict, "retry_unsupported",
					"the request's workflow started before retries existed; retry it once it has ended")
			}
			err := e.c.SignalWorkflow(ctx, id, "", workflows.SignalRetry, order)
			var notFound *serviceerror.NotFound
			if errors.As(err, &notFound) {
				continue // closed meanwhile
			}
			if err != nil {
				return temporalError("signal retry", err)
			}
			return nil
		}
		in.Retry = &order
		err = resume.Start(ctx, e.c, in, e.taskTimeout)
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			continue // started meanwhile: signal it
		}
		if err != nil {
			return temporalError("start erasure workflow again", err)
		}
		return nil
	}
	return lethe.Errorf(lethe.KindUnavailable, "temporal_unavailable",
		"the request's workflow kept changing state; try again")
}

// HoldsLifted wakes the request's workflow to check its holds. A workflow
// that has closed meanwhile needs nothing.
func (e *temporalEngine) HoldsLifted(ctx context.Context, requestID string) error {
	err := e.c.SignalWorkflow(ctx, workflows.ErasureWorkflowID(requestID), "", workflows.SignalHolds, nil)
	var notFound *serviceerror.NotFound
	if err != nil && !errors.As(err, &notFound) {
		return temporalError("signal lifted hold", err)
	}
	return nil
}

// ErasureProgress runs the workflow's status query.
func (e *temporalEngine) ErasureProgress(ctx context.Context, requestID string) (lethe.Erasure, error) {
	v, err := e.c.QueryWorkflow(ctx, workflows.ErasureWorkflowID(requestID), "", workflows.QueryStatus)
	if err != nil {
		return lethe.Erasure{}, temporalError("query erasure workflow", err)
	}
	var out lethe.Erasure
	if err := v.Get(&out); err != nil {
		return lethe.Erasure{}, fmt.Errorf("decode erasure workflow status: %w", err)
	}
	return out, nil
}

// StartBatch starts the batch's workflow under BatchWorkflowID, as
// StartErasure starts a request's (a running one is taken as this one, a
// closed one never runs again), then signals it each chunk in order. A
// start retried after a partial failure signals every chunk again; the
// workflow keeps the first of each chunk number.
func (e *temporalEngine) StartBatch(ctx context.Context, in workflows.BatchInput, chunks []workflows.BatchChunk) error {
	in.Policy = e.policy
	id := workflows.BatchWorkflowID(in.BatchID)
	opts := client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowTaskTimeout:      e.taskTimeout,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchStatus.ValueSet(string(lethe.RequestPending)),
			workflows.SearchDeadline.ValueSet(in.Deadline)),
	}
	_, err := e.c.ExecuteWorkflow(ctx, opts, workflows.BatchWorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &started) {
		return temporalError("start batch workflow", err)
	}
	for _, ch := range chunks {
		if err := e.c.SignalWorkflow(ctx, id, "", workflows.SignalBatchChunk, ch); err != nil {
			return temporalError("signal batch chunk", err)
		}
	}
	return nil
}

// CancelBatch cancels the batch's workflow and waits for it to close, as
// CancelErasure does a request's; the batch's workflow cancels its chunks.
func (e *temporalEngine) CancelBatch(ctx context.Context, batchID string) error {
	return e.cancelAndWait(ctx, workflows.BatchWorkflowID(batchID), "batch")
}

// RetryBatch signals the retry order to the batch's workflow, which passes
// it to its chunks. A batch's workflow is not started again once closed:
// one that no longer runs answers "workflow_gone".
func (e *temporalEngine) RetryBatch(ctx context.Context, batchID string, order workflows.RetrySignal) error {
	err := e.c.SignalWorkflow(ctx, workflows.BatchWorkflowID(batchID), "", workflows.SignalRetry, order)
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return joinKind(lethe.Errorf(lethe.KindConflict, "workflow_gone",
			"the batch's workflow is no longer running, so it cannot take a retry: submit the failed subjects in a new batch"), err)
	case err != nil:
		return temporalError("signal batch retry", err)
	}
	return nil
}

// temporalError classifies a Temporal client error. NotFound means the
// workflow is unknown: never started, or closed and past the namespace's
// retention, so finished either way. Unreachable or overloaded servers and
// expired contexts are unavailability the client can wait out; anything
// else (a bad namespace, unregistered search attributes) is ours to fix and
// stays internal.
func temporalError(op string, err error) error {
	var (
		notFound    *serviceerror.NotFound
		unavailable *serviceerror.Unavailable
		nsDown      *serviceerror.NamespaceUnavailable
		deadline    *serviceerror.DeadlineExceeded
		exhausted   *serviceerror.ResourceExhausted
		canceled    *serviceerror.Canceled
		netErr      net.Error
	)
	switch {
	case errors.As(err, &notFound):
		return joinKind(lethe.Errorf(lethe.KindConflict, "already_finished",
			"the request's workflow has already closed"), err)
	case errors.As(err, &unavailable), errors.As(err, &nsDown), errors.As(err, &deadline),
		errors.As(err, &exhausted), errors.As(err, &canceled), errors.As(err, &netErr),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return joinKind(lethe.Errorf(lethe.KindUnavailable, "temporal_unavailable",
			"the workflow engine is unavailable; try again later"), err)
	}
	return joinKind(&lethe.Error{Kind: lethe.KindInternal, Code: "internal", Message: op}, err)
}

// OpenCommand asks the workflow of requestID (a request's, or a chunk's)
// for its open command commandID (workflows.QueryCommand). A workflow
// Temporal no longer knows has none.
func (e *temporalEngine) OpenCommand(ctx context.Context, requestID, commandID string) (wire.Command, bool, error) {
	v, err := e.c.QueryWorkflow(ctx, workflows.ErasureWorkflowID(requestID), "", workflows.QueryCommand, commandID)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return wire.Command{}, false, nil
	}
	if err != nil {
		return wire.Command{}, false, temporalError("query open command", err)
	}
	var open workflows.OpenCommand
	if err := v.Get(&open); err != nil {
		return wire.Command{}, false, temporalError("read open command", err)
	}
	if open.Command == nil {
		return wire.Command{}, false, nil
	}
	return *open.Command, true, nil
}

// SignalWorkflow hands a signal to a workflow, as the relay does with the
// confirmations of Kafka systems (relay.Signaler).
func (e *temporalEngine) SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error {
	return e.c.SignalWorkflow(ctx, workflowID, runID, signalName, arg)
}
