package workflows

import (
	"errors"
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
	r.RegisterWorkflowWithOptions(BatchWorkflow, workflow.RegisterOptions{Name: BatchWorkflowName})
	r.RegisterWorkflowWithOptions(BatchChunkWorkflow, workflow.RegisterOptions{Name: ChunkWorkflowName})
}

// localActivities chooses how the workflow runs its activities before
// RevisionRegularRetries. Local activities save two history events and a
// task-queue round trip per wave, which matters for a workflow that syncs
// after every batch of confirmations; regular ones would survive a worker
// crash mid-call without repeating it. Flipping it changes the history of
// new runs only: running workflows would need workflow.GetVersion first.
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
	// localAttempts and localWithin bound the fast path of
	// RevisionRegularRetries: a local activity tries this often, for at
	// most this long, before its retries go to a regular activity. Its
	// backoffs stay below the workflow task timeout, so the fast path
	// retries inside one workflow task and writes no timer.
	localAttempts = 3
	localWithin   = activityStartToClose
)

// ActivityRetry is the backoff between the attempts of the workflow's
// activities. It travels in Policy so that tests can run through as many
// retries as a week-long outage makes, in seconds; production leaves
// Policy.Retry nil, which means DefaultActivityRetry.
type ActivityRetry struct {
	// Initial is the wait before the second attempt; each next wait is
	// ActivityBackoff times longer, up to Maximum.
	Initial time.Duration `json:"initial"`
	Maximum time.Duration `json:"maximum"`
}

// DefaultActivityRetry waits a second, then twice as long each time, at most
// a minute.
var DefaultActivityRetry = ActivityRetry{Initial: time.Second, Maximum: time.Minute}

// ActivityBackoff is how much longer each wait between attempts is than the
// one before.
const ActivityBackoff = 2.0

// retryPolicy is the retry policy of p, unlimited in attempts.
func (p ActivityRetry) retryPolicy() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:    p.Initial,
		BackoffCoefficient: ActivityBackoff,
		MaximumInterval:    p.Maximum,
		MaximumAttempts:    0, // unlimited
	}
}

// activityRetry is the backoff of this run's activities.
func (w *erasure) activityRetry() ActivityRetry {
	if r := w.policy.Retry; r != nil && r.Initial > 0 && r.Maximum >= r.Initial {
		return *r
	}
	return DefaultActivityRetry
}

// execute runs one activity, retried for as long as activityScheduleToClose
// allows, and decodes its result into out. Every activity call of the
// workflow's main loop goes through here.
func (w *erasure) execute(ctx workflow.Context, activity, in, out any) error {
	return w.runActivity(ctx, activityScheduleToClose, activity, in, out)
}

// runActivity runs one activity, retried for at most within. Before
// RevisionRegularRetries it is a local activity for all its retries: once
// the backoff passes the workflow task timeout, each retry writes a marker,
// a timer and a workflow task to the history, about six events a minute
// through an outage. From it on, a local activity tries a few times within
// one workflow task, and what still fails is retried by a regular activity,
// whose retries the server schedules without writing any event: a week of
// outage costs the history a handful of events.
func (w *erasure) runActivity(ctx workflow.Context, within time.Duration, activity, in, out any) error {
	retry := w.activityRetry().retryPolicy()
	if !w.features.regularRetries {
		if localActivities {
			ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
				StartToCloseTimeout:    activityStartToClose,
				ScheduleToCloseTimeout: within,
				RetryPolicy:            retry,
			})
			return workflow.ExecuteLocalActivity(ctx, activity, in).Get(ctx, out)
		}
		return w.regularActivity(ctx, within, retry, activity, in, out)
	}
	// The fast path's waits stay below the workflow task timeout, so that
	// its retries happen inside the task and write no timer.
	fast := *retry
	fast.MaximumAttempts = localAttempts
	if limit := workflow.GetInfo(ctx).WorkflowTaskTimeout / 2; limit > 0 {
		fast.MaximumInterval = min(fast.MaximumInterval, limit)
		fast.InitialInterval = min(fast.InitialInterval, limit)
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    activityStartToClose,
		ScheduleToCloseTimeout: min(localWithin, within),
		RetryPolicy:            &fast,
	})
	err := workflow.ExecuteLocalActivity(lctx, activity, in).Get(lctx, out)
	if err == nil || !retryable(ctx, err) {
		return err
	}
	workflow.GetLogger(ctx).Warn("activity still failing after its fast attempts; retrying it as a regular activity",
		"request_id", w.in.RequestID, "attempts", localAttempts, "error", err)
	return w.regularActivity(ctx, within, retry, activity, in, out)
}

// regularActivity runs activity as a regular activity, retried by the server.
func (w *erasure) regularActivity(ctx workflow.Context, within time.Duration, retry *temporal.RetryPolicy,
	activity, in, out any) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    activityStartToClose,
		ScheduleToCloseTimeout: within,
		RetryPolicy:            retry,
	})
	return workflow.ExecuteActivity(ctx, activity, in).Get(ctx, out)
}

// retryable reports whether an activity's failure may yet heal: not one the
// activity marked non-retryable, and not a cancellation of the workflow.
func retryable(ctx workflow.Context, err error) bool {
	if ctx.Err() != nil || temporal.IsCanceledError(err) {
		return false
	}
	var app *temporal.ApplicationError
	return !errors.As(err, &app) || !app.NonRetryable()
}
