package faults_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/workflows"
)

// TestPostgresOutageHistoryBounded keeps PostgreSQL down for the worker's
// ledger writes and checks that the request's history does not grow with
// the attempts, then that the request completes once PostgreSQL is back.
//
// A 7-day outage makes attemptsWithin(7 days, DefaultActivityRetry) =
// 10,085 attempts at the production backoff (1+2+4+8+16+32 seconds, then
// one a minute). Its waits are longer than the workflow task timeout (a
// minute against ten seconds), which is what made each retry of a local
// activity cost a marker, a timer and a workflow task: about six events,
// some 60,000 in a week, past Temporal's history limit. The test keeps
// that ratio with a one-second task timeout and 1.1-second waits, and
// scales the outage down to 30 attempts, since a regular activity's retry
// takes the server up to a second whatever its backoff: 10,085 of them do
// not fit in a test. What it asserts holds at any length: the history
// grows by a fixed number of events through the outage, fewer than one
// per attempt, so 10,085 attempts stay as far under 2,000 events as 30.
func TestPostgresOutageHistoryBounded(t *testing.T) {
	const failures = 30
	week := attemptsWithin(7*24*time.Hour, workflows.DefaultActivityRetry)
	if week != 10085 {
		t.Errorf("a 7-day outage makes %d attempts at the production backoff, the doc comment says 10,085", week)
	}
	ledger := &outageLedger{}
	ledger.left.Store(failures)
	wait := 1100 * time.Millisecond
	var c client.Client
	s := newStack(t, stackOptions{Worker: true, Relay: true,
		Engine: func(e api.Engine) api.Engine {
			return &taskTimeoutEngine{Engine: e, client: &c, timeout: time.Second,
				policy: workflows.Policy{Retry: &workflows.ActivityRetry{Initial: wait, Maximum: wait}}}
		},
		Ledger: func(l activities.LedgerWriter) activities.LedgerWriter {
			ledger.LedgerWriter = l
			ledger.checker = l.(activities.RequestChecker)
			return ledger
		}})
	c = s.Client
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	svc := newService("outage-b", false)
	s.putSystem(svc)
	req := s.submit(subject("outage-timeout", 0))
	wid := workflows.ErasureWorkflowID(req.ID)

	var before int64
	eventually(t, ctx, "the outage begins", func() bool { return ledger.failed.Load() > 0 })
	if d, err := s.Client.DescribeWorkflowExecution(ctx, wid, ""); err == nil {
		before = d.GetWorkflowExecutionInfo().GetHistoryLength()
	} else {
		t.Fatal(err)
	}
	s.awaitFinal(ctx, req.ID)
	s.verify(ctx, expectCompleted([]lethe.Erasure{req}, svc.name)...)
	d, err := s.Client.DescribeWorkflowExecution(ctx, wid, "")
	if err != nil {
		t.Fatal(err)
	}
	after := d.GetWorkflowExecutionInfo().GetHistoryLength()
	if failed := ledger.failed.Load(); failed != failures {
		t.Errorf("%d ledger writes failed, want %d", failed, failures)
	}
	if grown := after - before; grown >= failures {
		t.Errorf("the history grew by %d events through %d failed attempts, want fewer than one per attempt "+
			"(a 7-day outage makes %d)", grown, failures, week)
	}
	if after >= 2000 {
		t.Errorf("the history holds %d events, want under 2,000", after)
	}
	t.Logf("the history grew from %d to %d events through %d failed ledger writes (a 7-day outage makes %d)",
		before, after, failures, week)
}

// attemptsWithin counts the attempts an activity makes in d at backoff r:
// the first at once, each next one a wait later that grows by
// workflows.ActivityBackoff up to r.Maximum.
func attemptsWithin(d time.Duration, r workflows.ActivityRetry) int {
	n, at, wait := 1, time.Duration(0), r.Initial
	for at+wait <= d {
		at += wait
		n++
		wait = min(time.Duration(float64(wait)*workflows.ActivityBackoff), r.Maximum)
	}
	return n
}

// outageLedger is the worker's ledger through a PostgreSQL outage: its next
// left writes fail as a refused connection does, counted in failed; then
// PostgreSQL is back.
type outageLedger struct {
	activities.LedgerWriter
	checker activities.RequestChecker
	left    atomic.Int64
	failed  atomic.Int64
}

func (l *outageLedger) ApplyLedger(ctx context.Context, requestID string, d lethe.LedgerDelta) error {
	if l.left.Add(-1) >= 0 {
		l.failed.Add(1)
		return errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	return l.LedgerWriter.ApplyLedger(ctx, requestID, d)
}

func (l *outageLedger) ErasureRecorded(ctx context.Context, requestID string) (bool, error) {
	return l.checker.ErasureRecorded(ctx, requestID)
}

// taskTimeoutEngine starts erasure workflows as the API's engine does, but
// with a workflow task timeout of its own and a policy.
type taskTimeoutEngine struct {
	api.Engine
	client  *client.Client
	timeout time.Duration
	policy  workflows.Policy
}

func (e *taskTimeoutEngine) StartErasure(ctx context.Context, in workflows.ErasureInput) error {
	in.Policy = e.policy
	_, err := (*e.client).ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.ErasureWorkflowID(in.RequestID),
		TaskQueue:                workflows.TaskQueue,
		WorkflowTaskTimeout:      e.timeout,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchStatus.ValueSet(string(lethe.RequestPending)),
			workflows.SearchDeadline.ValueSet(in.Deadline)),
	}, workflows.ErasureWorkflowName, in)
	return err
}
