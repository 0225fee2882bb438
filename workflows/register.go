package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/lethe-dev/lethe/activities"
)

// Register puts the erasure workflow and its activities on a worker (or on a
// test environment), under the names the API and the history expect.
func Register(r worker.Registry, a *activities.Activities) {
	registerWorkflow(r)
	r.RegisterActivity(a)
}

// workflowRegistry is what takes workflows: a worker, and the replayer that
// replays recorded histories against the workflow as the worker registers it.
type workflowRegistry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

func registerWorkflow(r workflowRegistry) {
	r.RegisterWorkflowWithOptions(ErasureWorkflow, workflow.RegisterOptions{Name: ErasureWorkflowName})
}

// localActivities chooses how the workflow runs its activities. Local
// activities save two history events and a task-queue round trip per wave,
// which matters for a workflow that syncs after every batch of
// confirmations; regular ones would survive a worker crash mid-call without
// repeating it. Flipping it changes the history of new runs only: running
// workflows would need workflow.GetVersion first.
const localActivities = true

// Activity timeouts. A call gets thirty seconds, and is retried with a backoff
// capped at a minute for as long as ten years allow: an outage of Kafka or
// PostgreSQL must delay a request, never lose it. Only the errors the
// activities mark non-retryable end the retries.
const (
	activityStartToClose    = 30 * time.Second
	activityScheduleToClose = 10 * 365 * 24 * time.Hour
	// escalateWithin bounds the retries of an escalation's webhook.
	escalateWithin = time.Hour
)

var activityRetry = &temporal.RetryPolicy{
	InitialInterval:    time.Second,
	BackoffCoefficient: 2,
	MaximumInterval:    time.Minute,
	MaximumAttempts:    0, // unlimited
}

// execute runs one activity and decodes its result into out. Every activity
// call of the workflow goes through here, so that local against regular is
// one constant.
func execute(ctx workflow.Context, activity, in, out any) error {
	if localActivities {
		ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout:    activityStartToClose,
			ScheduleToCloseTimeout: activityScheduleToClose,
			RetryPolicy:            activityRetry,
		})
		return workflow.ExecuteLocalActivity(ctx, activity, in).Get(ctx, out)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    activityStartToClose,
		ScheduleToCloseTimeout: activityScheduleToClose,
		RetryPolicy:            activityRetry,
	})
	return workflow.ExecuteActivity(ctx, activity, in).Get(ctx, out)
}
